package suggest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"rampart.dev/rampart/authz"
)

// ResourceInfo is the catalogue metadata a model sees about the target. Descriptions are data
// written by people; a model must not take them as instructions, and Rampart does not rely on
// it: every answer is verified.
type ResourceInfo struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Sensitivity string   `json:"sensitivity"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Owners      []string `json:"owners"`
}

// ChoiceInput is everything a model is given: the request, the target's metadata and the
// verified candidates. Nothing else leaves the server.
type ChoiceInput struct {
	Intent     string       `json:"intent,omitempty"`
	Resource   ResourceInfo `json:"resource"`
	Actions    []string     `json:"actions"`
	Candidates []Candidate  `json:"candidates"`
}

// Choice is a model's answer.
type Choice struct {
	Role   string `json:"role"`
	Reason string `json:"reason"`
}

// Chooser picks one of the candidates. Implementations talk to a language model.
type Chooser interface {
	Choose(ctx context.Context, in ChoiceInput) (Choice, error)
}

// Sources of a piece of advice.
const (
	SourceDeterministic = "deterministic"
	SourceModel         = "model"
)

// Advice is the role to request for a target, with where the choice came from.
type Advice struct {
	Ranking
	// Role is the role to request: the model's verified choice, or the least privileged
	// candidate.
	Role   Candidate `json:"role"`
	Source string    `json:"source"`
	// Reason explains the choice: the model's words when its answer was used, otherwise the
	// ranking's explanation.
	Reason string `json:"reason"`
	// ModelNote says what happened to the model's answer when there was a model: used, or
	// refused and why.
	ModelNote string `json:"model_note,omitempty"`
	// Intent is set when the advice answers a sentence.
	Intent       *Intent  `json:"intent,omitempty"`
	Alternatives []Target `json:"alternatives,omitempty"`
	// Status is StatusSuggested, StatusNothingFits or StatusNotUnderstood. When it is not
	// suggested, Role is the zero Candidate, Roles is empty and Message says why.
	Status string `json:"status"`
	// Parts has one piece of advice per need when a sentence asks for several things; each has
	// its own Ranking, Role, Source and Reason. The Ranking and Role above are the first part's.
	Parts []Part `json:"parts,omitempty"`
	// Roles are the distinct roles to request, one per need, in need order.
	Roles []string `json:"roles"`
	// Unknown are the words of the sentence that match nothing in the catalogue.
	Unknown []string `json:"unknown,omitempty"`
	// Nearest are the resources closest to what was asked when nothing fits, best first.
	Nearest []string `json:"nearest,omitempty"`
	// Message says what was not understood or why nothing fits, and what to do.
	Message string `json:"message,omitempty"`
}

// Part is the advice for one need of a sentence that asks for several things.
type Part struct {
	Ranking
	// Role is the role to request for this need: the model's verified choice, or the least
	// privileged candidate.
	Role      Candidate `json:"role"`
	Source    string    `json:"source"`
	Reason    string    `json:"reason"`
	ModelNote string    `json:"model_note,omitempty"`
}

// AsPart is the advice for its first (or only) need.
func (a Advice) AsPart() Part {
	return Part{Ranking: a.Ranking, Role: a.Role, Source: a.Source, Reason: a.Reason, ModelNote: a.ModelNote}
}

// Advisor combines the deterministic engine with an optional model.
type Advisor struct {
	Engine *Engine
	// Model, if set, chooses among the candidates; its answer is verified.
	Model Chooser
	// Timeout bounds the model call; default 5s.
	Timeout time.Duration
	Logger  *slog.Logger
}

// DefaultModelTimeout bounds a model call when Advisor.Timeout is zero.
const DefaultModelTimeout = 5 * time.Second

// VerificationError says why a model's answer was refused.
type VerificationError struct {
	Role   string
	Reason string
}

func (e *VerificationError) Error() string {
	return fmt.Sprintf("the model chose %q, which %s", e.Role, e.Reason)
}

// Verify checks a chosen role against a ranking, which is the model check: the role must be
// one of the candidates; the decision engine must allow every wanted action on the resource to
// a holder of it; its privilege may not exceed the deterministic choice's (the first
// candidate), and on equal privilege it may not grant more pairs at the highest tier where the
// two differ (the model may break a true tie, never widen access); it may not be a break-glass
// role unless the deterministic choice is one; it may not grant an action the request
// excluded unless the deterministic choice does; and no other candidate may grant a strict
// subset of what it grants.
func (e *Engine) Verify(rk Ranking, role string) error {
	var chosen *roleInfo
	for _, c := range rk.Candidates {
		if c.Role == role {
			chosen = e.roles[role]
		}
	}
	if chosen == nil || len(rk.Candidates) == 0 {
		return &VerificationError{Role: role, Reason: "is not one of the candidates"}
	}
	for _, a := range rk.Actions {
		if !authz.RoleAllows(e.pol, role, a, rk.Resource) {
			return &VerificationError{Role: role, Reason: fmt.Sprintf("does not grant %s on %s", a, rk.Resource)}
		}
	}
	best := e.roles[rk.Candidates[0].Role]
	if best == nil {
		return &VerificationError{Role: role, Reason: "cannot be compared: the ranking's first candidate is not a requestable role"}
	}
	if chosen.privilege > best.privilege {
		return &VerificationError{Role: role, Reason: fmt.Sprintf("grants more privilege (%g over %d pairs) than %s (%g over %d), the least privileged candidate",
			chosen.privilege, len(chosen.pairs), best.name, best.privilege, len(best.pairs))}
	}
	if chosen.privilege == best.privilege {
		for i, t := range tiers {
			if chosen.byTier[i] != best.byTier[i] {
				if chosen.byTier[i] > best.byTier[i] {
					return &VerificationError{Role: role, Reason: fmt.Sprintf("grants more privilege at the %s tier (%s) than %s (%d), the least privileged candidate",
						t, plural(chosen.byTier[i], "pair"), best.name, best.byTier[i])}
				}
				break
			}
		}
	}
	if chosen.breakGlass != "" && best.breakGlass == "" {
		return &VerificationError{Role: role, Reason: "is a break-glass role (" + chosen.breakGlass + ") and the deterministic choice, " + best.name + ", is not"}
	}
	if x := chosen.grantsAny(rk.Excluded); len(x) > 0 && len(best.grantsAny(rk.Excluded)) == 0 {
		return &VerificationError{Role: role, Reason: fmt.Sprintf("grants %s, which the request said it does not want, and %s does not", joinAnd(x), best.name)}
	}
	for _, c := range rk.Candidates {
		other := e.roles[c.Role]
		if other == nil || other == chosen || len(other.pairs) >= len(chosen.pairs) {
			continue
		}
		subset := true
		for p := range other.pairs {
			if !chosen.pairs[p] {
				subset = false
				break
			}
		}
		if subset {
			return &VerificationError{Role: role, Reason: fmt.Sprintf("grants more than %s, which also suffices", other.name)}
		}
	}
	return nil
}

// Advise recommends a role for actions on a resource; break-glass roles are left out.
func (a *Advisor) Advise(ctx context.Context, resource string, actions []string) (Advice, error) {
	return a.AdviseWith(ctx, resource, actions, RankOptions{})
}

// AdviseWith is Advise with ranking options (o.Emergency admits break-glass roles).
func (a *Advisor) AdviseWith(ctx context.Context, resource string, actions []string, o RankOptions) (Advice, error) {
	rk, err := a.Engine.RankWith(resource, actions, o)
	if err != nil {
		return Advice{Status: StatusNothingFits, Roles: []string{}}, err
	}
	adv := a.choose(ctx, rk, "")
	adv.Status, adv.Roles = StatusSuggested, []string{adv.Role.Role}
	return adv, nil
}

// AdviseIntent recommends roles for a sentence: one part per need, each chosen among that
// need's candidates (by the model, if any, verified per part). A sentence for which nothing
// fits, or that is not understood, is advice with that Status and a nil error; the error is
// only for unusable input.
func (a *Advisor) AdviseIntent(ctx context.Context, text string) (Advice, error) {
	s, err := a.Engine.Suggest(text)
	if err != nil {
		return noFit(s), err
	}
	if s.Status != StatusSuggested {
		return noFit(s), nil
	}
	var parts []Part
	roles := []string{}
	var adv Advice
	for i, t := range s.Targets {
		p := a.choose(ctx, t.Ranking, text)
		if i == 0 {
			adv = p
		}
		parts = append(parts, Part{Ranking: p.Ranking, Role: p.Role, Source: p.Source, Reason: p.Reason, ModelNote: p.ModelNote})
		if !hasString(roles, p.Role.Role) {
			roles = append(roles, p.Role.Role)
		}
	}
	if len(parts) > 1 {
		adv.Parts = parts
	}
	adv.Intent, adv.Alternatives = &s.Intent, s.Alternatives
	adv.Status, adv.Roles, adv.Unknown, adv.Message = StatusSuggested, roles, s.Unknown, s.Message
	return adv, nil
}

// noFit is the advice for a sentence no role answers: no ranking, no role, and why.
func noFit(s Suggestion) Advice {
	return Advice{Ranking: Ranking{Actions: []string{}, Candidates: []Candidate{}}, Role: Candidate{Actions: []string{}, PairsByTier: map[string]int{}},
		Intent: &s.Intent, Status: s.Status, Roles: []string{}, Unknown: s.Unknown, Nearest: s.Nearest, Message: s.Message}
}

// choose asks the model, if any, and falls back to the least privileged candidate on any
// failure: an error, a timeout, a malformed or unverifiable answer.
func (a *Advisor) choose(ctx context.Context, rk Ranking, intent string) Advice {
	adv := Advice{Ranking: rk, Role: rk.Candidates[0], Source: SourceDeterministic, Reason: rk.Explanation}
	if a.Model == nil {
		return adv
	}
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = DefaultModelTimeout
	}
	mctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, _ := a.Engine.pol.Resource(rk.Resource)
	in := ChoiceInput{Intent: intent, Actions: rk.Actions, Candidates: rk.Candidates,
		Resource: ResourceInfo{Name: res.Name, Kind: res.Kind, Sensitivity: res.Sensitivity.String(), Description: res.Description, Tags: nonNil(res.Tags), Owners: nonNil(res.Owners)}}
	choice, err := a.Model.Choose(mctx, in)
	if err == nil {
		err = a.Engine.Verify(rk, choice.Role)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || mctx.Err() != nil {
			err = fmt.Errorf("no answer within %s", timeout)
		}
		adv.ModelNote = "model answer not used (" + err.Error() + "); using the deterministic ranking"
		if a.Logger != nil {
			a.Logger.Warn("suggestion model answer refused", "resource", rk.Resource, "err", err)
		}
		return adv
	}
	for _, c := range rk.Candidates {
		if c.Role == choice.Role {
			adv.Role = c
		}
	}
	adv.Source = SourceModel
	adv.Reason = strings.TrimSpace(choice.Reason)
	adv.ModelNote = "model answer verified: a candidate, grants " + joinAnd(rk.Actions) + " on " + rk.Resource + ", no more privilege than the least privileged candidate"
	return adv
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
