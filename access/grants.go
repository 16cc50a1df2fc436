package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Renew asks to extend a grant. It is a new request under the policy in force now, which must
// allow renewal; approved before the grant expires, it extends the grant without a gap.
func (s *Service) Renew(ctx context.Context, grantID, actor string, d time.Duration, reason string) (Request, error) {
	pol := s.Policy()
	g, err := s.store.Grant(ctx, grantID)
	if errors.Is(err, ErrNotFound) {
		return Request{}, errorf(ErrMissing, "grant %q does not exist", grantID)
	} else if err != nil {
		return Request{}, unavailable("reading the grant", err)
	}
	orig, err := s.store.Request(ctx, g.RequestID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Request{}, unavailable("reading the grant's request", err)
	}
	if actor != g.Subject && actor != orig.Requester {
		if !mayRevoke(pol, g, orig, actor) && !pol.IsAuditor(actor) {
			return Request{}, errorf(ErrMissing, "grant %q does not exist or is not visible to %s", grantID, actor)
		}
		return Request{}, errorf(ErrForbidden, "only the grant's subject (%s) or its requester can renew grant %s", g.Subject, grantID)
	}
	if g.State == GrantRevoked {
		return Request{}, errorf(ErrConflict, "grant %s was revoked; it cannot be renewed, make a new request", grantID)
	}
	req, err := pol.Requirement(g.Role)
	if err != nil {
		return Request{}, &Error{Kind: ErrConflict, Msg: err.Error(), Cause: err}
	}
	if !req.Policy.Renewable {
		return Request{}, errorf(ErrConflict, "approval policy %q does not allow renewal of %s; make a new request", req.Policy.Name, g.Role)
	}
	if reason == "" {
		reason = orig.Reason
	}
	return s.createRenewal(ctx, pol, req, CreateInput{Requester: actor, Role: g.Role, Beneficiary: g.Subject, Reason: reason, Duration: d}, grantID)
}

// createRenewal files the renewal request in, under pol and the requirement req it gives the
// role (both from the caller's one snapshot).
func (s *Service) createRenewal(ctx context.Context, pol *policy.Policy, req *policy.Requirement, in CreateInput, grantID string) (Request, error) {
	if err := checkText("reason", in.Reason, MaxReasonLen); err != nil {
		return Request{}, err
	}
	// A renewal is a new request by actor for the grant's subject, under the policy in force:
	// the original requester may renew for someone else only while request_for still allows.
	if err := pol.MayRequestFor(req, in.Requester, in.Beneficiary); err != nil {
		return Request{}, &Error{Kind: ErrForbidden, Msg: err.Error(), Cause: err}
	}
	ap := req.Policy
	d := in.Duration
	if d == 0 {
		d = ap.DefaultDuration.Std()
	}
	if d < ap.MinDuration.Std() || d > ap.MaxDuration.Std() {
		return Request{}, errorf(ErrInvalid, "duration %s is outside what approval policy %q allows (%s to %s)", policy.FormatDuration(d), ap.Name, policy.FormatDuration(ap.MinDuration.Std()), policy.FormatDuration(ap.MaxDuration.Std()))
	}
	facts := pol.Facts(req, in.Requester, in.Beneficiary, in.Reason, false, true)
	facts.Duration = d
	if err := ap.CheckConditions(facts); err != nil {
		return Request{}, &Error{Kind: ErrForbidden, Msg: err.Error(), Cause: err}
	}
	now := s.now()
	if err := checkPending(ctx, s.store, pol, in.Requester, now); err != nil {
		return Request{}, limited(err)
	}
	r := Request{ID: NewID("req"), Role: in.Role, Requester: in.Requester, Beneficiary: in.Beneficiary, Reason: in.Reason,
		Duration: d, State: Pending, Policy: ap.Name, CreatedAt: now, ExpiresAt: now.Add(ap.RequestTTL.Std()), RenewalOf: grantID}
	err := s.txn(ctx, "creating the renewal request", func(t *txn) error {
		if err := checkPending(ctx, t, pol, in.Requester, now); err != nil {
			return err
		}
		// The grant may have been revoked since Renew read it; check again under the lock.
		if g, err := t.Grant(ctx, grantID); err != nil {
			return err
		} else if g.State == GrantRevoked {
			return errorf(ErrConflict, "grant %s was revoked; it cannot be renewed, make a new request", grantID)
		}
		if err := t.record(ctx, requestEvent("request.create", ActivityCreateName, r, in.Requester,
			fmt.Sprintf("%s asked to renew grant %s of %s for %s (%s)", in.Requester, grantID, in.Role, in.Beneficiary, policy.FormatDuration(d)),
			map[string]any{"policy": ap.Name, "renewal_of": grantID, "policy_digest": pol.Digest})); err != nil {
			return err
		}
		return t.saveRequest(ctx, r, true)
	})
	return r, err
}

// Revoke ends a grant now. The grant's subject, its requester, an eligible approver of its role
// or an admin may revoke. Pending renewals of the grant are cancelled with it. Revoking an
// already revoked grant changes nothing.
func (s *Service) Revoke(ctx context.Context, grantID, actor, reason string) (Grant, error) {
	if err := checkText("reason", reason, MaxReasonLen); err != nil {
		return Grant{}, err
	}
	var out Grant
	err := s.txn(ctx, "revoking the grant", func(t *txn) error {
		pol := s.Policy()
		g, err := t.Grant(ctx, grantID)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrMissing, "grant %q does not exist", grantID)
		} else if err != nil {
			return err
		}
		orig, err := t.Request(ctx, g.RequestID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if !mayRevoke(pol, g, orig, actor) {
			if !pol.IsAuditor(actor) {
				return errorf(ErrMissing, "grant %q does not exist or is not visible to %s", grantID, actor)
			}
			return errorf(ErrForbidden, "%s may not revoke grant %s: only its subject, its requester, an eligible approver of %s or an admin may", actor, grantID, g.Role)
		}
		now := s.now()
		switch {
		case g.State == GrantRevoked:
			out = g
			return nil
		case !g.ActiveAt(now):
			return errorf(ErrConflict, "grant %s already ended at %s", grantID, g.ExpiresAt.UTC().Format(time.RFC3339))
		}
		out, err = t.revoke(ctx, g, actor, reason, now)
		return err
	})
	return out, err
}

// mayRevoke reports whether actor may revoke g (requested by orig) under pol.
func mayRevoke(pol *policy.Policy, g Grant, orig Request, actor string) bool {
	if actor == g.Subject || actor == orig.Requester || pol.IsAdmin(actor) {
		return true
	}
	req, err := pol.Requirement(g.Role)
	return err == nil && pol.CanApproveAny(req.Policy, actor, orig.Requester, g.Subject)
}

func (t *txn) revoke(ctx context.Context, g Grant, actor, reason string, now time.Time) (Grant, error) {
	g.State, g.EndedAt, g.EndedBy, g.EndReason = GrantRevoked, now, actor, reason
	if err := t.record(ctx, grantEvent("grant.revoke", audit.SeverityMedium, g, actor,
		fmt.Sprintf("%s revoked grant %s (%s for %s): %s", actor, g.ID, g.Role, g.Subject, reason), map[string]any{"reason": reason})); err != nil {
		return g, err
	}
	if err := t.saveGrant(ctx, g, false); err != nil {
		return g, err
	}
	pending, err := t.ListRequests(ctx, RequestFilter{States: []State{Pending}, Party: g.Subject})
	if err != nil {
		return g, err
	}
	for _, r := range pending {
		if r.RenewalOf != g.ID {
			continue
		}
		r.State, r.DecidedAt = Cancelled, now
		if err := t.record(ctx, requestEvent("request.cancel", ActivityUpdateName, r, audit.SystemActor,
			fmt.Sprintf("renewal request %s cancelled because grant %s was revoked", r.ID, g.ID), nil)); err != nil {
			return g, err
		}
		if err := t.saveRequest(ctx, r, false); err != nil {
			return g, err
		}
	}
	return g, nil
}

// Sweep records the expiry of grants and pending requests whose time has passed. Decisions
// never wait for it (they compare expiry with the clock); it makes the stored state, the ledger
// and materialised side effects catch up. It returns how many objects it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	now := s.now()
	n := 0
	grants, err := s.store.ListGrants(ctx, GrantFilter{States: []GrantState{GrantActive}, EndedBy: now})
	if err != nil {
		return 0, unavailable("listing grants to expire", err)
	}
	for _, g := range grants {
		if now.Before(g.ExpiresAt) {
			continue
		}
		err := s.txn(ctx, "expiring a grant", func(t *txn) error {
			cur, err := t.Grant(ctx, g.ID)
			if err != nil || cur.State != GrantActive || now.Before(cur.ExpiresAt) {
				return err // changed since listed: renewed or revoked
			}
			cur.State, cur.EndedAt, cur.EndedBy, cur.EndReason = GrantExpired, cur.ExpiresAt, audit.SystemActor, "expired"
			if err := t.record(ctx, grantEvent("grant.expire", audit.SeverityInformational, cur, audit.SystemActor,
				fmt.Sprintf("%s's grant %s of %s expired at %s", cur.Subject, cur.ID, cur.Role, cur.ExpiresAt.UTC().Format(time.RFC3339)), nil)); err != nil {
				return err
			}
			n++
			return t.saveGrant(ctx, cur, false)
		})
		if err != nil {
			return n, err
		}
	}
	pending, err := s.store.ListRequests(ctx, RequestFilter{States: []State{Pending}, LapsedBy: now})
	if err != nil {
		return n, unavailable("listing requests to expire", err)
	}
	for _, r := range pending {
		if now.Before(r.ExpiresAt) {
			continue
		}
		err := s.txn(ctx, "expiring a request", func(t *txn) error {
			cur, err := t.Request(ctx, r.ID)
			if err != nil || cur.State != Pending {
				return err
			}
			n++
			_, err = t.expireRequest(ctx, cur, now)
			return err
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
