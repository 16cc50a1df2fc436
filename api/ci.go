package api

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
)

// CI job identity (package ci, docs/ci.md): a CI job exchanges the OpenID Connect ID token its CI
// system issued it for a short pipeline token (POST /v1/ci/exchange, unauthenticated: the ID
// token is the credential), and people who hold trigger on a pipeline start its runs
// (POST /v1/pipelines/trigger).

// CIExchangeBody is the body of POST /v1/ci/exchange.
type CIExchangeBody struct {
	IDToken string `json:"id_token"`
}

// CIExchangeResponse is a pipeline token. The secret is shown once.
type CIExchangeResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	ExpiresAt time.Time `json:"expires_at"`
	Run       ci.Run    `json:"run"`
}

// TriggerBody is the body of POST /v1/pipelines/trigger.
type TriggerBody struct {
	Pipeline string `json:"pipeline"`
	Ref      string `json:"ref"`
}

// TriggerResponse is the answer of POST /v1/pipelines/trigger.
type TriggerResponse struct {
	Pipeline string `json:"pipeline"`
	Ref      string `json:"ref"`
	// Status is "dispatched": the CI system accepted the dispatch.
	Status string `json:"status"`
}

// ciError maps the ci package's errors: a refusal is 403 (an ID token that does not verify too:
// the route takes no Rampart credential, so 401 would ask for one), a trigger's bad ref 400, an
// answer that could not be established 503. The message starts with the condition that failed.
func ciError(err error, trigger bool) error {
	var r *ci.Refusal
	switch {
	case errors.As(err, &r):
		status, code := http.StatusForbidden, CodeForbidden
		if r.Condition == ci.CondRef && trigger {
			status, code = http.StatusBadRequest, CodeInvalid
		}
		return &Error{Status: status, Code: code, Message: "refused (" + r.Condition + "): " + r.Msg}
	case errors.Is(err, ci.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "refused (unavailable): " + strings.TrimPrefix(err.Error(), ci.ErrUnavailable.Error()+": ")}
	}
	return err
}

func (s *Server) ciExchange(w http.ResponseWriter, r *http.Request) {
	if s.ci == nil {
		s.fail(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server exchanges no CI tokens"})
		return
	}
	var b CIExchangeBody
	if err := decode(w, r, &b); err != nil {
		s.fail(w, r, err)
		return
	}
	if b.IDToken == "" {
		s.fail(w, r, errInvalid("field \"id_token\" is required: the ID token your CI system issued the job"))
		return
	}
	res, err := s.ci.Exchange(r.Context(), b.IDToken, "address "+sourceOf(clientIP(r)))
	if err != nil {
		s.fail(w, r, ciError(err, false))
		return
	}
	writeJSON(w, http.StatusCreated, CIExchangeResponse{Token: res.Token, ID: res.ID, Subject: res.Run.Subject, ExpiresAt: res.ExpiresAt, Run: res.Run})
}

func (s *Server) triggerPipeline(w http.ResponseWriter, r *http.Request, c caller) error {
	if s.pipelines == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server triggers no pipelines"}
	}
	var b TriggerBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if c.Kind != identity.KindUser {
		return errForbidden("a %s credential (%s) may not trigger pipelines: a person does, with a trigger grant", c.Kind, c.Subject)
	}
	if err := s.pipelines.Trigger(r.Context(), ci.TriggerInput{Caller: c.Subject, Pipeline: b.Pipeline, Ref: b.Ref}); err != nil {
		return ciError(err, true)
	}
	writeJSON(w, http.StatusAccepted, TriggerResponse{Pipeline: b.Pipeline, Ref: b.Ref, Status: "dispatched"})
	return nil
}

// sourceOf is the network refusals from an address are aggregated under (risk.SourceOf).
func sourceOf(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return "unknown"
	}
	return risk.SourceOf(a).String()
}
