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
	// Status is StatusSuggested, StatusNothingFits or StatusNotUnderstood.
	Status string `json:"status"`
	// Parts: one per need when there are several.
	Parts []Advice `json:"parts,omitempty"`
	// Roles are the distinct roles to request, in need order; empty when nothing fits.
	Roles   []string `json:"roles"`
	Unknown []string `json:"unknown,omitempty"`
	Nearest []string `json:"nearest,omitempty"`
	Message string   `json:"message,omitempty"`
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

// Verify checks a chosen role against a ranking: it must be one of the candidates, the decision
// engine must allow every wanted action on the resource to a holder of it, its privilege may not
// exceed the deterministic choice's (the first candidate: the model may break a tie, never widen
// access), and no other candidate may grant a strict subset of what it grants.
func (e *Engine) Verify(rk Ranking, role string) error {
	var chosen *roleInfo
	var cand Candidate
	for _, c := range rk.Candidates {
		if c.Role == role {
			chosen, cand = e.roles[role], c
		}
	}
	if chosen == nil {
		return &VerificationError{Role: role, Reason: "is not one of the candidates"}
	}
	for _, a := range rk.Actions {
		if !authz.RoleAllows(e.pol, role, a, rk.Resource) {
			return &VerificationError{Role: role, Reason: fmt.Sprintf("does not grant %s on %s", a, rk.Resource)}
		}
	}
	if best := rk.Candidates[0]; cand.Privilege > best.Privilege || (cand.Privilege == best.Privilege && cand.Pairs > best.Pairs) {
		return &VerificationError{Role: role, Reason: fmt.Sprintf("grants more privilege (%g over %d pairs) than %s (%g over %d), the least privileged candidate",
			cand.Privilege, cand.Pairs, best.Role, best.Privilege, best.Pairs)}
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

// Advise recommends a role for actions on a resource.
func (a *Advisor) Advise(ctx context.Context, resource string, actions []string) (Advice, error) {
	rk, err := a.Engine.Rank(resource, actions)
	if err != nil {
		return Advice{}, err
	}
	return a.choose(ctx, rk, ""), nil
}

// AdviseIntent recommends a role for a sentence.
func (a *Advisor) AdviseIntent(ctx context.Context, text string) (Advice, error) {
	s, err := a.Engine.Suggest(text)
	if err != nil {
		return Advice{Intent: &s.Intent}, err
	}
	adv := a.choose(ctx, s.Target.Ranking, text)
	adv.Intent, adv.Alternatives = &s.Intent, s.Alternatives
	return adv, nil
}

// choose asks the model, if any, and falls back to the least privileged candidate on any
// failure: an error, a timeout, a malformed or unverifiable answer.
func (a *Advisor) choose(ctx context.Context, rk Ranking, intent string) Advice {
	adv := Advice{Ranking: rk, Role: rk.Candidates[0], Source: SourceDeterministic, Reason: rk.Explanation, Status: StatusSuggested, Roles: []string{rk.Candidates[0].Role}}
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
	adv.Source, adv.Roles = SourceModel, []string{adv.Role.Role}
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
