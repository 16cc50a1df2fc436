package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// CreatedSet is the answer of POST /v1/requests when the body named resources: one request per
// distinct suggested role, in the order of the resources, each with the resources it covers and
// the advice that chose it.
type CreatedSet struct {
	Requests []Created `json:"requests"`
}

// maxResources bounds the resources of one POST /v1/requests.
const maxResources = 16

// createRequestSet files one request per distinct role suggested for action on each resource.
// Every resource is suggested for before anything is filed: if one has no requestable role, or
// is not in the catalogue, nothing is filed and the error names it. Should filing fail part-way
// (a policy condition, a rate limit), the requests already filed are cancelled, so the answer is
// all or nothing either way.
func (s *Server) createRequestSet(w http.ResponseWriter, r *http.Request, c caller, b CreateRequestBody, d time.Duration) error {
	switch {
	case b.Role != "" || b.Resource != "":
		return errInvalid("name resources and an action, or a role, or a resource and an action: not several of these")
	case b.Action == "":
		return errInvalid("field \"resources\" needs field \"action\": the action you need on each of them")
	case len(b.Resources) > maxResources:
		return errInvalid("field \"resources\" holds %d resources; the limit is %d", len(b.Resources), maxResources)
	case b.BreakGlass:
		return errInvalid("break-glass takes one role at a time; request it with field \"role\"")
	}
	seen := map[string]bool{}
	for i, res := range b.Resources {
		if err := policy.ValidateResourceName(res); err != nil {
			return errInvalid("field \"resources[%d]\": %v", i, err)
		}
		if seen[res] {
			return errInvalid("field \"resources[%d]\": %s is listed twice", i, res)
		}
		seen[res] = true
	}
	// Suggest for every resource first.
	type filing struct {
		adv       suggest.Advice
		resources []string
	}
	var order []string
	byRole := map[string]*filing{}
	for i, res := range b.Resources {
		adv, err := s.advise(r.Context(), c.pol, SuggestBody{Resource: res, Actions: []string{b.Action}})
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) {
				return &Error{Status: ae.Status, Code: ae.Code, Message: fmt.Sprintf("resources[%d] %s: %s; nothing was requested", i, res, ae.Message)}
			}
			return err
		}
		role := adv.Role.Role
		if f := byRole[role]; f != nil {
			f.resources = append(f.resources, res)
			continue
		}
		byRole[role] = &filing{adv: adv, resources: []string{res}}
		order = append(order, role)
	}
	out := CreatedSet{Requests: []Created{}}
	for _, role := range order {
		f := byRole[role]
		cr, err := s.access.Create(r.Context(), access.CreateInput{Requester: c.Subject, Role: role, Beneficiary: b.Beneficiary, Reason: b.Reason, Duration: d})
		if err != nil {
			s.cancelFiled(r.Context(), c.Subject, out.Requests)
			return fmt.Errorf("requesting %s (for %s): %w%s", role, strings.Join(f.resources, ", "), err, cancelledNote(out.Requests))
		}
		adv := f.adv
		out.Requests = append(out.Requests, Created{Request: cr.Request, Grant: cr.Grant, Suggestion: &adv, Resources: f.resources})
	}
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// cancelFiled cancels requests filed earlier in a set whose filing failed. The cancellations are
// recorded in the ledger like any other; one that fails is logged and left for its expiry.
func (s *Server) cancelFiled(ctx context.Context, actor string, filed []Created) {
	for _, f := range filed {
		if _, err := s.access.Cancel(context.WithoutCancel(ctx), f.Request.ID, actor); err != nil {
			s.log.Error("cancelling a request of a set whose filing failed", "request", f.Request.ID, "err", err)
		}
	}
}

func cancelledNote(filed []Created) string {
	if len(filed) == 0 {
		return "; nothing was requested"
	}
	ids := make([]string, len(filed))
	for i, f := range filed {
		ids[i] = f.Request.ID
	}
	return "; the requests filed before it (" + strings.Join(ids, ", ") + ") were cancelled"
}
