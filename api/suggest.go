package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// advisor returns the suggestion advisor for the policy in force, building the search index
// again when the policy changes.
func (s *Server) advisor(pol *policy.Policy) *suggest.Advisor {
	s.advMu.Lock()
	defer s.advMu.Unlock()
	if s.advPol != pol {
		s.advCached = &suggest.Advisor{Engine: suggest.New(pol), Model: s.model, Timeout: s.modelTimeout, Logger: s.log}
		s.advPol = pol
	}
	return s.advCached
}

// SuggestBody is the body of POST /v1/suggest: a sentence, or a resource and actions.
type SuggestBody struct {
	Intent   string   `json:"intent,omitempty"`
	Resource string   `json:"resource,omitempty"`
	Actions  []string `json:"actions,omitempty"`
}

// maxActions bounds the actions of one suggestion.
const maxActions = 16

func (s *Server) suggest(w http.ResponseWriter, r *http.Request, c caller) error {
	var b SuggestBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	adv, err := s.advise(r.Context(), c.pol, b)
	if err != nil {
		return err
	}
	writeJSON(w, 200, adv)
	return nil
}

func (s *Server) advise(ctx context.Context, pol *policy.Policy, b SuggestBody) (suggest.Advice, error) {
	a := s.advisor(pol)
	var adv suggest.Advice
	var err error
	switch {
	case b.Intent != "" && (b.Resource != "" || len(b.Actions) > 0):
		return adv, errInvalid("give an intent, or a resource and actions, not both")
	case strings.TrimSpace(b.Intent) != "":
		adv, err = a.AdviseIntent(ctx, b.Intent)
	case b.Resource != "" && len(b.Actions) > 0:
		if len(b.Actions) > maxActions {
			return adv, errInvalid("field \"actions\" holds %d actions; the limit is %d", len(b.Actions), maxActions)
		}
		if err := policy.ValidateResourceName(b.Resource); err != nil {
			return adv, errInvalid("field \"resource\": %v", err)
		}
		adv, err = a.Advise(ctx, b.Resource, b.Actions)
	default:
		return adv, errInvalid("give an intent (a sentence), or a resource and the actions you need on it")
	}
	var nc *suggest.NoCandidateError
	switch {
	case errors.As(err, &nc):
		return adv, &Error{Status: http.StatusUnprocessableEntity, Code: CodeNoCandidate, Message: err.Error()}
	case errors.Is(err, suggest.ErrUnknownResource):
		return adv, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case err != nil:
		return adv, errInvalid("%v", err)
	}
	return adv, nil
}
