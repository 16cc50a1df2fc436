package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/store/sqlstore"
)

// alertEvent is a detect.alert entry as the detection runner writes it (enough of it for the
// store).
func alertEvent(rule, key string, at time.Time) audit.Event {
	return audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: 1, ActivityName: "Create", Severity: audit.SeverityHigh,
		Time: at, Actor: "detect:" + rule, Message: rule + " fired for " + key,
		Details: map[string]any{"rule": rule, "key": key, "evidence": []any{int64(0)}}}
}

func recordAlert(t *testing.T, s *sqlstore.DB, rule, key, severity string, at time.Time) detect.Alert {
	t.Helper()
	a, err := s.RecordAlert(context.Background(), sqlstore.AlertFiring{Rule: rule, Key: key, Severity: severity, At: at}, alertEvent(rule, key, at))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testAlerts: an alert's lifecycle on the real store: firings of one rule and key join the
// alert until it is resolved, lists filter and page, and every acknowledgement and resolution is
// a ledger entry in the transaction of the change (invariant 4); a change the state does not
// allow writes nothing.
func testAlerts(t *testing.T, h Harness) {
	e := newEnv(t, h)
	s := e.store
	a1 := recordAlert(t, s, "bulk-weight-reads", "alice", "high", Epoch)
	again := recordAlert(t, s, "bulk-weight-reads", "alice", "high", Epoch.Add(time.Minute))
	if again.ID != a1.ID || again.Count != 2 || again.FirstSeq != a1.FirstSeq || again.LastSeq <= a1.LastSeq {
		t.Fatalf("a second firing of the same rule and key: %+v after %+v", again, a1)
	}
	recordAlert(t, s, "bulk-weight-reads", "bob", "high", Epoch.Add(2*time.Minute))
	recordAlert(t, s, "egress-probe", "carol", "medium", Epoch.Add(3*time.Minute))

	list := func(f detect.AlertFilter) []int64 {
		t.Helper()
		as, err := s.Alerts(e.ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, a := range as {
			ids = append(ids, a.ID)
		}
		return ids
	}
	for _, tc := range []struct {
		f    detect.AlertFilter
		want string
	}{
		{detect.AlertFilter{}, "[3 2 1]"},
		{detect.AlertFilter{Rule: "bulk-weight-reads"}, "[2 1]"},
		{detect.AlertFilter{Severity: "medium"}, "[3]"},
		{detect.AlertFilter{Since: Epoch.Add(90 * time.Second)}, "[3 2]"},
		{detect.AlertFilter{Limit: 2}, "[3 2]"},
		{detect.AlertFilter{Limit: 2, Before: 2}, "[1]"},
	} {
		if got := fmt.Sprint(list(tc.f)); got != tc.want {
			t.Errorf("Alerts(%+v) = %s, want %s", tc.f, got, tc.want)
		}
	}
	if _, err := s.Alerts(e.ctx, detect.AlertFilter{State: "closed"}); err == nil || !strings.Contains(err.Error(), "open, acked or resolved") {
		t.Errorf("a bad state filter: %v", err)
	}

	size := e.ledgerSize()
	a, seq, err := s.TransitionAlert(e.ctx, a1.ID, detect.Transition{To: detect.StateAcked, Actor: "erin", Note: "looking", At: Epoch.Add(time.Hour)})
	if err != nil || a.State != detect.StateAcked || a.AckedBy != "erin" || seq != size {
		t.Fatalf("ack: %+v seq %d (ledger was %d): %v", a, seq, size, err)
	}
	if got := fmt.Sprint(list(detect.AlertFilter{State: detect.StateAcked})); got != "[1]" {
		t.Errorf("acked alerts: %s", got)
	}
	// An acked alert still gathers firings of its rule and key.
	if b := recordAlert(t, s, "bulk-weight-reads", "alice", "critical", Epoch.Add(2*time.Hour)); b.ID != a1.ID || b.Count != 3 || b.Severity != "critical" {
		t.Fatalf("a firing on an acked alert: %+v", b)
	}
	for _, tc := range []struct {
		id   int64
		tr   detect.Transition
		want error
	}{
		{a1.ID, detect.Transition{To: detect.StateAcked, Actor: "erin"}, detect.ErrAlertState},
		{99, detect.Transition{To: detect.StateResolved, Actor: "erin"}, detect.ErrAlertNotFound},
		{a1.ID, detect.Transition{To: detect.StateResolved, Actor: "erin", Note: "bad\x1b[2Jnote"}, detect.ErrBadNote},
		{a1.ID, detect.Transition{To: detect.StateResolved, Actor: "erin", Note: strings.Repeat("x", detect.MaxNoteLen+1)}, detect.ErrBadNote},
	} {
		before := e.ledgerSize()
		if _, _, err := s.TransitionAlert(e.ctx, tc.id, tc.tr); !errors.Is(err, tc.want) {
			t.Errorf("%d %+v: %v, want %v", tc.id, tc.tr, err, tc.want)
		}
		if e.ledgerSize() != before {
			t.Errorf("a refused transition wrote to the ledger")
		}
	}
	if _, _, err := s.TransitionAlert(e.ctx, a1.ID, detect.Transition{To: detect.StateResolved, Actor: "erin", Note: "training job, expected", At: Epoch.Add(3 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TransitionAlert(e.ctx, a1.ID, detect.Transition{To: detect.StateResolved, Actor: "erin"}); !errors.Is(err, detect.ErrAlertState) {
		t.Errorf("resolving twice: %v", err)
	}
	// After resolution, a new firing opens a new alert.
	if n := recordAlert(t, s, "bulk-weight-reads", "alice", "high", Epoch.Add(4*time.Hour)); n.ID == a1.ID || n.State != detect.StateOpen || n.Count != 1 {
		t.Fatalf("a firing after resolution: %+v", n)
	}
	got, err := s.Alert(e.ctx, a1.ID)
	if err != nil || got.State != detect.StateResolved || got.ResolvedBy != "erin" || got.Note != "training job, expected" {
		t.Fatalf("resolved alert: %+v %v", got, err)
	}
	codes := e.codes()
	if count(codes, "alert.ack") != 1 || count(codes, "alert.resolve") != 1 {
		t.Errorf("ledger codes: %v", codes)
	}
	d := e.details("alert.resolve")[0]
	if d["alert_id"] != "1" || d["from"] != "acked" || d["note"] != "training job, expected" {
		t.Errorf("alert.resolve details: %v", d)
	}
}

// serviceActions are the response's actions through the real services over the store under
// test: the access workflow and the identity sessions. This suite runs no egress gateway:
// closing tunnels finds none (server's Actions close them on the real gateway).
type serviceActions struct {
	svc *access.Service
	ses *identity.Sessions
}

func (a serviceActions) RevokeGrants(ctx context.Context, subject, actor, reason string) (int, error) {
	gs, err := a.svc.RevokeGrantsOf(ctx, subject, actor, reason)
	return len(gs), err
}

func (a serviceActions) RevokeSessions(ctx context.Context, subject, actor, reason string) (int, error) {
	d, err := a.ses.RevokeAll(ctx, subject, actor, reason)
	return len(d.Sessions) + d.Tokens, err
}

func (a serviceActions) DisableUser(ctx context.Context, subject, actor, reason string) error {
	if _, err := a.ses.Disable(ctx, subject, actor, reason); err != nil {
		return err
	}
	_, err := a.svc.RevokeSubject(ctx, subject, actor, reason)
	return err
}

func (serviceActions) CloseTunnels(context.Context, string, string) (int, error) { return 0, nil }

type responseEnv struct {
	*env
	ses   *identity.Sessions
	limit int
}

func (e *responseEnv) responder(s *sqlstore.DB) *detect.Responder {
	svc := access.New(s, e.pol, access.Options{Now: e.clock.Now})
	return &detect.Responder{Actions: serviceActions{svc: svc, ses: e.ses}, Store: s, IsAdmin: e.pol.IsAdmin,
		MaxPerHour: func() int { return e.limit }, Now: e.clock.Now}
}

func (e *responseEnv) activeGrants(subject string) int {
	e.t.Helper()
	gs, err := e.store.ListGrants(e.ctx, access.GrantFilter{Subject: subject, States: []access.GrantState{access.GrantActive}})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(gs)
}

func (e *responseEnv) signIn(subject string) {
	e.t.Helper()
	if _, err := e.ses.Create(e.ctx, identity.NewSession{Subject: subject, Method: "oidc", AuthTime: e.clock.Now(), Event: signInEvent(subject)}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *responseEnv) disabled(subject string) bool {
	e.t.Helper()
	u, err := e.store.UserRecord(e.ctx, subject)
	if err != nil && !errors.Is(err, identity.ErrSessionNotFound) {
		e.t.Fatal(err)
	}
	return !u.DisabledAt.IsZero()
}

func (e *responseEnv) respond(r *detect.Responder, f detect.Firing) []detect.Outcome {
	e.t.Helper()
	out, err := r.Respond(e.ctx, f)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func firing(rule, subject, mode string, actions ...string) detect.Firing {
	return detect.Firing{Rule: rule, Key: subject, Subject: subject, Severity: "high", Evidence: []int64{1, 2}, Count: 2,
		First: Epoch, Last: Epoch.Add(time.Minute), Mode: mode, Actions: actions}
}

func outcomes(os []detect.Outcome) string {
	var b []string
	for _, o := range os {
		s := o.Action + ":" + o.State
		if o.Guardrail != "" {
			s += "(" + o.Guardrail + ")"
		}
		if o.Prior {
			s += "[prior]"
		}
		b = append(b, s)
	}
	return strings.Join(b, " ")
}

// testResponses: the guarded automatic response, tried as an attacker would abuse it, on the
// real store with the real workflow and sessions: an attacker who can make a rule fire on someone
// (their own reads, say) must not be able to make Rampart disable the administrators, act on
// Rampart itself, act during a baseline's learning period, act more than the hourly budget
// (across replicas, and across a restart), or act twice on one firing replayed after a crash.
func testResponses(t *testing.T, h Harness) {
	open := h.Shared(t)
	e := &responseEnv{env: newEnv(t, h), limit: 3}
	e.store = open(t)
	e.svc = access.New(e.store, e.pol, access.Options{Now: e.clock.Now})
	e.ses = &identity.Sessions{Store: e.store, Now: e.clock.Now, CacheTTL: -1}
	r := e.responder(e.store)

	g := e.grantFor(access.CreateInput{Requester: "alice", Role: "secret-deploy-registry", Reason: "release 7.1", Duration: time.Hour}, "bob", "dave")
	e.signIn("alice")
	e.signIn("erin")

	// Off: nothing at all.
	size := e.ledgerSize()
	if out := e.respond(r, firing("r-off", "alice", detect.ModeOff, detect.ActionRevokeGrant)); len(out) != 0 || e.ledgerSize() != size {
		t.Fatalf("mode off: %v, ledger %d → %d", out, size, e.ledgerSize())
	}
	// Dry run: recorded, nothing changed, nothing counted.
	if got := outcomes(e.respond(r, firing("r-dry", "alice", detect.ModeDryRun, detect.ActionRevokeGrant, detect.ActionDisableUser))); got != "revoke_grant:dry_run disable_user:dry_run" {
		t.Fatalf("dry run: %s", got)
	}
	if e.activeGrants("alice") != 1 || e.disabled("alice") {
		t.Fatal("a dry run changed something")
	}
	if d := e.details("detect.response"); len(d) != 2 || d[0]["dry_run"] != true {
		t.Fatalf("dry-run entries: %v", d)
	}
	// Learning: never acted on.
	f := firing("r-baseline", "alice", detect.ModeOn, detect.ActionRevokeGrant, detect.ActionDisableUser)
	f.Learning = true
	if got := outcomes(e.respond(r, f)); got != "revoke_grant:skipped(learning) disable_user:skipped(learning)" {
		t.Fatalf("learning: %s", got)
	}
	// Rampart itself, a rule, an empty or forged subject.
	for _, sub := range []string{"rampart", "Rampart", "rampart:sweeper", "detect:other-rule", "", "system:kube-controller", "alice\nerin"} {
		if got := outcomes(e.respond(r, firing("r-system", sub, detect.ModeOn, detect.ActionRevokeSessions))); got != "revoke_sessions:skipped(system_subject)" {
			t.Errorf("subject %q: %s", sub, got)
		}
	}
	// An administrator is never disabled automatically (so never the last two either); their
	// sessions may still be revoked.
	if got := outcomes(e.respond(r, firing("r-admin", "erin", detect.ModeOn, detect.ActionDisableUser, detect.ActionRevokeSessions))); got != "disable_user:skipped(admin) revoke_sessions:done" {
		t.Fatalf("admin: %s", got)
	}
	if e.disabled("erin") {
		t.Fatal("an administrator was disabled automatically")
	}
	// A real response, then the same firing again (a replay after the runner restarted): the
	// second does and records nothing.
	on := firing("bulk-weight-reads", "alice", detect.ModeOn, detect.ActionRevokeGrant)
	if got := outcomes(e.respond(r, on)); got != "revoke_grant:done" {
		t.Fatalf("revoke: %s", got)
	}
	if e.activeGrants("alice") != 0 {
		t.Fatal("the grant is still active")
	}
	size = e.ledgerSize()
	if got := outcomes(e.respond(e.responder(open(t)), on)); got != "revoke_grant:done[prior]" || e.ledgerSize() != size {
		t.Fatalf("replay on another handle: %s, ledger %d → %d", got, size, e.ledgerSize())
	}
	rev, err := e.store.Grant(e.ctx, g.ID)
	if err != nil || rev.EndedBy != "detect:bulk-weight-reads" {
		t.Fatalf("the revocation names %q, not the rule: %v", rev.EndedBy, err)
	}

	// A crash between recording an action and taking it: the replay takes it, once, without
	// counting or recording it again.
	crash := firing("r-crash", "alice", detect.ModeOn, detect.ActionDisableUser)
	id := detect.FiringID(crash) + "/" + detect.ActionDisableUser
	if _, err := e.store.ClaimResponse(e.ctx, detect.Claim{ID: id, Rule: crash.Rule, Subject: "alice", Action: detect.ActionDisableUser, At: e.clock.Now(),
		Want: detect.ResponseActing, Event: func(state, g string) audit.Event {
			return audit.Event{Code: "detect.response", Class: audit.ClassDetectionFinding, Activity: audit.ActivityOther, Time: e.clock.Now(), Actor: "detect:r-crash", Message: "crash"}
		}}, 10); err != nil {
		t.Fatal(err)
	}
	size = e.ledgerSize()
	if got := outcomes(e.respond(r, crash)); got != "disable_user:done[prior]" || !e.disabled("alice") {
		t.Fatalf("replay after a crash: %s (disabled %v)", got, e.disabled("alice"))
	}
	if c := e.codes()[size:]; count(c, "detect.response") != 0 || count(c, "user.disable") != 1 {
		t.Fatalf("the replay wrote %v", c)
	}

	// The budget: 3 actions in the hour have been counted (erin's sessions, alice's grant, the
	// crashed disable). A fourth, from another replica with a fresh responder (a restart), is
	// refused; an hour later it is allowed.
	other := e.responder(open(t))
	if got := outcomes(e.respond(other, firing("r-flood", "carol", detect.ModeOn, detect.ActionRevokeSessions))); got != "revoke_sessions:skipped(rate_limit)" {
		t.Fatalf("past the budget: %s", got)
	}
	if d := e.details("detect.response_skipped"); d[len(d)-1]["guardrail"] != detect.GuardRateLimit {
		t.Fatalf("skipped entry: %v", d[len(d)-1])
	}
	e.clock.Advance(time.Hour)
	if got := outcomes(e.respond(other, firing("r-flood-2", "carol", detect.ModeOn, detect.ActionRevokeSessions))); got != "revoke_sessions:done" {
		t.Fatalf("an hour later: %s", got)
	}
}

// testResponseBudgetRace: replicas responding at once share the hourly budget; none acts past it.
func testResponseBudgetRace(t *testing.T, h Harness) {
	open := h.Shared(t)
	e := &responseEnv{env: newEnv(t, h), limit: 5}
	e.store = open(t)
	e.ses = &identity.Sessions{Store: e.store, Now: e.clock.Now, CacheTTL: -1}
	rs := []*detect.Responder{e.responder(e.store), e.responder(open(t)), e.responder(open(t))}
	done := make(chan []detect.Outcome)
	for i := 0; i < 12; i++ {
		go func(i int) {
			out, err := rs[i%len(rs)].Respond(e.ctx, firing(fmt.Sprintf("r-%d", i), fmt.Sprintf("user%d", i), detect.ModeOn, detect.ActionRevokeSessions))
			if err != nil {
				t.Error(err)
			}
			done <- out
		}(i)
	}
	acted := 0
	for i := 0; i < 12; i++ {
		for _, o := range <-done {
			if o.State == detect.ResponseDone {
				acted++
			}
		}
	}
	if acted != 5 {
		t.Fatalf("%d actions taken by 3 replicas at once; the budget is 5", acted)
	}
}
