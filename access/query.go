package access

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"rampart.dev/rampart/policy"
)

// View is a request with its reviews, its tally under the policy in force, and its grant.
type View struct {
	Request Request       `json:"request"`
	Reviews []Review      `json:"reviews"`
	Tally   *policy.Tally `json:"tally,omitempty"`
	Grant   *Grant        `json:"grant,omitempty"`
	// RequireStepUp is how recent an approver's multi-factor authentication must be to approve
	// under the policy in force ("" when none is needed), so a client can step up first.
	RequireStepUp string `json:"require_step_up,omitempty"`
}

// CanView reports whether viewer may see the request: its requester or beneficiary, an eligible
// approver under the policy in force, an admin or an auditor.
func (s *Service) CanView(r Request, viewer string) bool { return canView(s.Policy(), r, viewer) }

// CanReview reports whether viewer is an eligible approver of the request now.
func (s *Service) CanReview(r Request, viewer string) bool { return canReview(s.Policy(), r, viewer) }

func canView(pol *policy.Policy, r Request, viewer string) bool {
	if viewer == r.Requester || viewer == r.Beneficiary || pol.IsAdmin(viewer) || pol.IsAuditor(viewer) {
		return true
	}
	return canReview(pol, r, viewer)
}

func canReview(pol *policy.Policy, r Request, viewer string) bool {
	req, err := pol.Requirement(r.Role)
	return err == nil && pol.CanApproveAny(req.Policy, viewer, r.Requester, r.Beneficiary)
}

// Get returns a request the viewer may see. A request the viewer may not see is reported as
// missing, so its existence is not disclosed.
func (s *Service) Get(ctx context.Context, id, viewer string) (View, error) {
	pol := s.Policy()
	r, err := s.store.Request(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && !canView(pol, r, viewer)) {
		return View{}, errorf(ErrMissing, "request %q does not exist or is not visible to %s", id, viewer)
	} else if err != nil {
		return View{}, unavailable("reading the request", err)
	}
	v := View{Request: r}
	if v.Reviews, err = s.store.Reviews(ctx, id); err != nil {
		return View{}, unavailable("reading reviews", err)
	}
	if req, err := pol.Requirement(r.Role); err == nil {
		approvers, _, _, stale := countReviews(pol, req.Policy, r, v.Reviews, roleDigest(pol, r.Role))
		t := pol.Tally(req.Policy, r.Requester, r.Beneficiary, approvers)
		for _, a := range stale {
			t.Ignored = append(t.Ignored, policy.Ignored{Approver: a,
				Why: fmt.Sprintf("approved an earlier definition of role %s; the role has changed since, so the approval must be given again", r.Role)})
		}
		v.Tally = &t
		if req.StepUp > 0 {
			v.RequireStepUp = policy.FormatDuration(req.StepUp)
		}
	}
	if r.GrantID != "" {
		g, err := s.store.Grant(ctx, r.GrantID)
		if err != nil {
			return View{}, unavailable("reading the grant", err)
		}
		v.Grant = &g
	}
	return v, nil
}

// ListScope says which requests a listing covers.
type ListScope string

// Scopes for List.
const (
	// ScopeMine: requests the viewer made or benefits from.
	ScopeMine ListScope = "mine"
	// ScopeReview: pending requests (and break-glass after-the-fact reviews) the viewer may review.
	ScopeReview ListScope = "review"
	// ScopeAll: every request; admins and auditors only.
	ScopeAll ListScope = "all"
)

// List returns requests visible to the viewer in the given scope, oldest first.
func (s *Service) List(ctx context.Context, viewer string, scope ListScope, f RequestFilter) ([]Request, error) {
	pol := s.Policy()
	switch scope {
	case ScopeMine, "":
		f.Party = viewer
	case ScopeAll:
		if !pol.IsAdmin(viewer) && !pol.IsAuditor(viewer) {
			return nil, errorf(ErrForbidden, "only admins and auditors may list every request; use scope mine or review")
		}
	case ScopeReview:
		// Pending requests are few; eligibility depends on the policy, so filter here, then
		// apply the state filter and the cursor as the store would.
		var out []Request
		for _, q := range []RequestFilter{{States: []State{Pending}}, {BreakGlassReview: true}} {
			rs, err := s.store.ListRequests(ctx, q)
			if err != nil {
				return nil, unavailable("listing requests", err)
			}
			for _, r := range rs {
				if canReview(pol, r, viewer) && afterCursor(r, f) && hasState(r, f.States) {
					out = append(out, r)
				}
			}
		}
		sort.Slice(out, func(i, j int) bool {
			if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
				return out[i].CreatedAt.Before(out[j].CreatedAt)
			}
			return out[i].ID < out[j].ID
		})
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
		return out, nil
	default:
		return nil, errorf(ErrInvalid, "unknown scope %q; use mine, review or all", scope)
	}
	rs, err := s.store.ListRequests(ctx, f)
	if err != nil {
		return nil, unavailable("listing requests", err)
	}
	return rs, nil
}

func afterCursor(r Request, f RequestFilter) bool {
	if f.AfterTime.IsZero() {
		return true
	}
	return r.CreatedAt.After(f.AfterTime) || (r.CreatedAt.Equal(f.AfterTime) && r.ID > f.AfterID)
}

func hasState(r Request, states []State) bool {
	if len(states) == 0 {
		return true
	}
	for _, st := range states {
		if r.State == st {
			return true
		}
	}
	return false
}

// Grants lists grants. Anyone may list their own; admins and auditors may list anyone's.
func (s *Service) Grants(ctx context.Context, viewer string, f GrantFilter) ([]Grant, error) {
	pol := s.Policy()
	if f.Subject != viewer && !pol.IsAdmin(viewer) && !pol.IsAuditor(viewer) {
		return nil, errorf(ErrForbidden, "only admins and auditors may list other subjects' grants")
	}
	gs, err := s.store.ListGrants(ctx, f)
	if err != nil {
		return nil, unavailable("listing grants", err)
	}
	return gs, nil
}

// GetGrant returns a grant visible to the viewer: its subject, admins, auditors, or whoever
// may revoke it.
func (s *Service) GetGrant(ctx context.Context, id, viewer string) (Grant, error) {
	pol := s.Policy()
	g, err := s.store.Grant(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Grant{}, errorf(ErrMissing, "grant %q does not exist", id)
	} else if err != nil {
		return Grant{}, unavailable("reading the grant", err)
	}
	orig, err := s.store.Request(ctx, g.RequestID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Grant{}, unavailable("reading the grant's request", err)
	}
	if !mayRevoke(pol, g, orig, viewer) && !pol.IsAuditor(viewer) {
		return Grant{}, errorf(ErrMissing, "grant %q does not exist or is not visible to %s", id, viewer)
	}
	return g, nil
}
