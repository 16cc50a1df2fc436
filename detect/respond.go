package detect

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Response modes of a rule (DetectionRule spec.response.mode; the policy's names).
const (
	ModeOff    = policy.ResponseOff
	ModeDryRun = policy.ResponseDryRun
	ModeOn     = policy.ResponseOn
)

// Response actions (the policy's names).
const (
	ActionRevokeGrant    = policy.ActionRevokeGrant
	ActionRevokeSessions = policy.ActionRevokeSessions
	ActionDisableUser    = policy.ActionDisableUser
	ActionCloseTunnels   = policy.ActionCloseTunnels
)

// Response states, as the store records them per firing and action.
const (
	// ResponseActing: the action was counted and recorded (detect.response) and is being taken;
	// a response found in this state after a crash is taken again (every action is idempotent)
	// without being counted or recorded twice.
	ResponseActing = "acting"
	ResponseDone   = "done"
	ResponseFailed = "failed"
	ResponseDryRun = "dry_run"
	// ResponseSkipped: a guardrail stopped it (detect.response_skipped names which).
	ResponseSkipped = "skipped"
)

// Guardrails: the names detect.response_skipped gives for why an action was not taken.
const (
	// GuardLearning: the firing came from a baseline rule still in its learning period.
	GuardLearning = "learning"
	// GuardSystemSubject: the subject is Rampart itself, a detection rule, or empty.
	GuardSystemSubject = "system_subject"
	// GuardAdmin: disable_user on an administrator. Rampart never disables an administrator
	// automatically (a stronger rule than "never the last two": an attacker who can make a rule
	// fire on administrators must not be able to lock them out one by one); their grants,
	// sessions and tunnels may still be ended.
	GuardAdmin = "admin"
	// GuardRateLimit: the hourly budget of automatic actions, shared by the replicas, is spent.
	GuardRateLimit = "rate_limit"
	// GuardUnknownAction: an action this server does not know (a newer policy).
	GuardUnknownAction = "unknown_action"
)

// DefaultMaxActionsPerHour is the hourly budget of automatic actions when the settings give none.
const DefaultMaxActionsPerHour = policy.DefaultMaxActionsPerHour

// Actions are the services a person uses to end someone's access, as the responder calls them.
// Each records its own ledger entries with actor, and is idempotent: doing it again when there
// is nothing left to end changes nothing.
type Actions interface {
	// RevokeGrants revokes every active grant of subject (the egress gateway closes tunnels
	// that relied on them, the RBAC materialiser removes their bindings).
	RevokeGrants(ctx context.Context, subject, actor, reason string) (int, error)
	// RevokeSessions revokes every session and API token of subject.
	RevokeSessions(ctx context.Context, subject, actor, reason string) (int, error)
	// DisableUser disables subject (sessions, tokens, grants, decisions: everything).
	DisableUser(ctx context.Context, subject, actor, reason string) error
	// CloseTunnels closes subject's open egress tunnels and forwarded requests.
	CloseTunnels(ctx context.Context, subject, reason string) (int, error)
}

// Claim is what the responder asks the store to record before it acts.
type Claim struct {
	// ID is the firing's id and the action (FiringID + "/" + action): the key of idempotence.
	ID                    string
	Rule, Subject, Action string
	At                    time.Time
	// Want is ResponseActing, ResponseDryRun or ResponseSkipped (then Guardrail says why).
	Want, Guardrail string
	// Event returns the ledger entry for the state the store settles on.
	Event func(state, guardrail string) audit.Event
}

// Claimed is the store's answer: the state of the response, and Prior if it had been recorded
// before (a replay), in which case nothing was written.
type Claimed struct {
	State, Guardrail string
	Prior            bool
}

// ResponseStore records responses (store/sqlstore implements it).
type ResponseStore interface {
	// ClaimResponse records c, in one transaction with c.Event's entry, unless a response with
	// c.ID exists (then it returns that one, Prior). A Want of ResponseActing is counted against
	// limit actions in the hour before c.At, over every replica's responses: past it, the
	// response is recorded as skipped (GuardRateLimit) instead.
	ClaimResponse(ctx context.Context, c Claim, limit int) (Claimed, error)
	// FinishResponse sets the state of an acting response (ResponseDone or ResponseFailed).
	FinishResponse(ctx context.Context, id, state, errText string) error
}

// Responder takes a rule's automatic response to a firing.
type Responder struct {
	Actions Actions
	Store   ResponseStore
	// IsAdmin reports whether subject is an administrator under the policy in force.
	IsAdmin func(subject string) bool
	// MaxPerHour is the hourly budget of actions (DefaultMaxActionsPerHour if 0).
	MaxPerHour func() int
	Now        func() time.Time
}

// Outcome is what became of one action of a response.
type Outcome struct {
	Action    string `json:"action"`
	State     string `json:"state"`
	Guardrail string `json:"guardrail,omitempty"`
	// Prior is set when the response had been recorded before (a replay): nothing new was
	// recorded, and an action left acting by a crash was taken again.
	Prior bool   `json:"prior,omitempty"`
	Error string `json:"error,omitempty"`
}

// Respond takes f's response according to its rule's mode: nothing when off; when dry-run, a
// detect.response entry per action with dry_run=true and no change; when on, each action
// through Actions with actor detect:<rule>, recorded as detect.response, or as
// detect.response_skipped naming the guardrail that stopped it. It is idempotent per firing
// (FiringID) and action: the runner may call it again after a crash, and nothing is done or
// recorded twice. It returns an error only when the store cannot record; an action's failure
// is its Outcome's Error.
func (r *Responder) Respond(ctx context.Context, f Firing) ([]Outcome, error) {
	if f.Mode != ModeOn && f.Mode != ModeDryRun {
		return nil, nil
	}
	id := FiringID(f)
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	limit := DefaultMaxActionsPerHour
	if r.MaxPerHour != nil && r.MaxPerHour() > 0 {
		limit = r.MaxPerHour()
	}
	actor := "detect:" + f.Rule
	reason := fmt.Sprintf("automatic response of detection rule %s to alert key %s", f.Rule, clip(f.Key, 120))
	var out []Outcome
	for _, action := range f.Actions {
		c := Claim{ID: id + "/" + action, Rule: f.Rule, Subject: f.Subject, Action: action, At: now(), Want: ResponseActing}
		if f.Mode == ModeDryRun {
			c.Want = ResponseDryRun
		}
		if g := r.guardrail(f, action); g != "" {
			c.Want, c.Guardrail = ResponseSkipped, g
		}
		c.Event = func(state, guardrail string) audit.Event {
			return responseEvent(f, id, action, actor, state, guardrail, c.At)
		}
		got, err := r.Store.ClaimResponse(ctx, c, limit)
		if err != nil {
			return out, fmt.Errorf("record the response %s of rule %s to %s: %w", action, f.Rule, f.Subject, err)
		}
		o := Outcome{Action: action, State: got.State, Guardrail: got.Guardrail, Prior: got.Prior}
		if got.State == ResponseActing {
			state, errText := ResponseDone, ""
			if err := r.act(ctx, action, f.Subject, actor, reason); err != nil {
				state, errText = ResponseFailed, err.Error()
			}
			if err := r.Store.FinishResponse(ctx, c.ID, state, errText); err != nil {
				return out, fmt.Errorf("record the end of response %s of rule %s to %s: %w", action, f.Rule, f.Subject, err)
			}
			o.State, o.Error = state, errText
		}
		out = append(out, o)
	}
	return out, nil
}

// guardrail returns the guardrail that stops action on f's subject, or "". The hourly budget is
// the store's to check (it is shared by the replicas).
func (r *Responder) guardrail(f Firing, action string) string {
	switch action {
	case ActionRevokeGrant, ActionRevokeSessions, ActionDisableUser, ActionCloseTunnels:
	default:
		return GuardUnknownAction
	}
	switch {
	case f.Learning:
		return GuardLearning
	case SystemSubject(f.Subject):
		return GuardSystemSubject
	case action == ActionDisableUser && (r.IsAdmin == nil || r.IsAdmin(f.Subject)):
		return GuardAdmin
	}
	return ""
}

// SystemSubject reports whether a response must never act on subject: empty, Rampart itself
// (audit.SystemActor), a detection rule (detect:…) or a name with control characters or spaces
// that no person's account has.
func SystemSubject(subject string) bool {
	s := strings.ToLower(strings.TrimSpace(subject))
	if s == "" || s == audit.SystemActor || strings.HasPrefix(s, audit.SystemActor+":") || strings.HasPrefix(s, "detect:") || strings.HasPrefix(s, "system:") {
		return true
	}
	return strings.IndexFunc(subject, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0
}

func (r *Responder) act(ctx context.Context, action, subject, actor, reason string) error {
	if r.Actions == nil {
		return errors.New("this server has no response actions configured")
	}
	var err error
	switch action {
	case ActionRevokeGrant:
		_, err = r.Actions.RevokeGrants(ctx, subject, actor, reason)
	case ActionRevokeSessions:
		_, err = r.Actions.RevokeSessions(ctx, subject, actor, reason)
	case ActionDisableUser:
		err = r.Actions.DisableUser(ctx, subject, actor, reason)
	case ActionCloseTunnels:
		_, err = r.Actions.CloseTunnels(ctx, subject, reason)
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	return err
}

// responseEvent is the ledger entry of one action of a response in the state the store settled
// on: detect.response (taken, or dry-run) or detect.response_skipped.
func responseEvent(f Firing, id, action, actor, state, guardrail string, at time.Time) audit.Event {
	code, sev := "detect.response", audit.SeverityHigh
	var msg string
	switch state {
	case ResponseSkipped:
		code, sev = "detect.response_skipped", audit.SeverityMedium
		msg = fmt.Sprintf("detection rule %s did not %s %s: guardrail %s", f.Rule, action, f.Subject, guardrail)
	case ResponseDryRun:
		sev = audit.SeverityInformational
		msg = fmt.Sprintf("detection rule %s would %s %s (dry run: nothing changed)", f.Rule, action, f.Subject)
	default:
		msg = fmt.Sprintf("detection rule %s takes action %s on %s", f.Rule, action, f.Subject)
	}
	ev := make([]any, len(f.Evidence))
	for i, s := range f.Evidence {
		ev[i] = s
	}
	d := map[string]any{"rule": f.Rule, "action": action, "subject": f.Subject, "firing": id, "key": f.Key,
		"dry_run": state == ResponseDryRun, "evidence": ev, "severity": f.Severity}
	if guardrail != "" {
		d["guardrail"] = guardrail
	}
	return audit.Event{Code: code, Class: audit.ClassDetectionFinding, Activity: audit.ActivityOther, ActivityName: "Other",
		Severity: sev, Time: at, Actor: actor, User: f.Subject, Message: msg, Details: d}
}

// FiringID identifies a firing by what the engine computes deterministically (rule, key, times,
// count, evidence), so that a replay of the ledger after a crash yields the same id.
func FiringID(f Firing) string {
	h := sha256.New()
	for _, s := range []string{f.Rule, f.Key, f.Subject} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var b [8]byte
	for _, v := range append([]int64{f.First.UnixNano(), f.Last.UnixNano(), int64(f.Count), int64(len(f.Evidence))}, f.Evidence...) {
		binary.BigEndian.PutUint64(b[:], uint64(v))
		h.Write(b[:])
	}
	return "fir_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// clip makes a value from an event safe to put in a reason: printable, at most n runes.
func clip(s string, n int) string {
	var b strings.Builder
	for i, r := range s {
		if i >= n*4 || b.Len() >= n {
			b.WriteString("…")
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
