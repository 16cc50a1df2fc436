package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/text"
	"rampart.dev/rampart/policy"
)

// CreateInput describes a new request.
type CreateInput struct {
	Requester string
	Role      string
	// Beneficiary defaults to the requester; it may be another subject such as a workload.
	Beneficiary string
	Reason      string
	// Duration defaults to the policy's default_duration (or break-glass maximum).
	Duration time.Duration
	// BreakGlass self-activates the grant where policy allows, pending an after-the-fact review.
	BreakGlass bool
}

// Created is the result of Create: the request, and the grant when break-glass activated one.
type Created struct {
	Request Request
	Grant   *Grant
}

// checkText applies the length limit and the one text rule (internal/text: no invalid UTF-8,
// control, bidirectional or invisible format characters) to a reason or comment (invariant 7).
func checkText(field, s string, limit int) error {
	if len(s) > limit {
		return errorf(ErrInvalid, "%s is %d bytes; the limit is %d", field, len(s), limit)
	}
	if err := text.Check(s, text.SingleLine); err != nil {
		return errorf(ErrInvalid, "%s %v", field, err)
	}
	return nil
}

// Create validates a request against the policy in force and stores it. A break-glass request
// is approved at once, its grant activated and an after-the-fact review opened. A requester who
// has reached Settings.MaxPendingRequests, or takes break-glass within
// Settings.BreakGlassCooldown of a rejected one, is refused with ErrLimited (invariant 11).
func (s *Service) Create(ctx context.Context, in CreateInput) (Created, error) {
	pol := s.Policy()
	if err := policy.ValidateSubject(in.Requester); err != nil {
		return Created{}, errorf(ErrInvalid, "requester: %v", err)
	}
	if in.Beneficiary == "" {
		in.Beneficiary = in.Requester
	}
	if err := policy.ValidateSubject(in.Beneficiary); err != nil {
		return Created{}, errorf(ErrInvalid, "beneficiary: %v", err)
	}
	if err := checkText("reason", in.Reason, MaxReasonLen); err != nil {
		return Created{}, err
	}
	if in.Role == "" {
		return Created{}, errorf(ErrInvalid, "role is required; list roles with `rampart roles`")
	}
	req, err := pol.Requirement(in.Role)
	if err != nil {
		return Created{}, &Error{Kind: ErrInvalid, Msg: err.Error(), Cause: err}
	}
	ap := req.Policy
	if in.BreakGlass && in.Beneficiary != in.Requester {
		// Checked before request_for: no rule lets anyone take break-glass for another.
		return Created{}, errorf(ErrForbidden, "break-glass access can only be taken for yourself, not for %q", in.Beneficiary)
	}
	if err := pol.MayRequestFor(req, in.Requester, in.Beneficiary); err != nil {
		return Created{}, &Error{Kind: ErrForbidden, Msg: err.Error(), Cause: err}
	}
	reason := strings.TrimSpace(in.Reason)
	if (ap.RequireReason || in.BreakGlass) && reason == "" {
		return Created{}, errorf(ErrInvalid, "approval policy %q requires a reason; say what the access is for (--reason)", ap.Name)
	}
	d := in.Duration
	maxD := ap.MaxDuration.Std()
	if in.BreakGlass {
		if !ap.BreakGlass.Allowed {
			return Created{}, errorf(ErrForbidden, "approval policy %q does not allow break-glass access to role %q; make a normal request", ap.Name, in.Role)
		}
		maxD = ap.BreakGlass.MaxDuration.Std()
		if d == 0 {
			d = maxD
		}
	} else if d == 0 {
		d = ap.DefaultDuration.Std()
	}
	if d < ap.MinDuration.Std() || d > maxD {
		what := "max_duration"
		if in.BreakGlass {
			what = "break_glass.max_duration"
		}
		return Created{}, errorf(ErrInvalid, "duration %s is outside what approval policy %q allows (%s to %s, %s)", policy.FormatDuration(d), ap.Name, policy.FormatDuration(ap.MinDuration.Std()), policy.FormatDuration(maxD), what)
	}
	facts := pol.Facts(req, in.Requester, in.Beneficiary, reason, in.BreakGlass, false)
	facts.Duration = d
	if err := ap.CheckConditions(facts); err != nil {
		return Created{}, &Error{Kind: ErrForbidden, Msg: err.Error(), Cause: err}
	}

	now := s.now()
	if err := checkLimits(ctx, s.store, pol, in, now); err != nil {
		return Created{}, limited(err)
	}
	r := Request{
		ID: NewID("req"), Role: in.Role, Requester: in.Requester, Beneficiary: in.Beneficiary,
		Reason: reason, Duration: d, State: Pending, Policy: ap.Name,
		CreatedAt: now, ExpiresAt: now.Add(ap.RequestTTL.Std()),
	}
	var out Created
	err = s.txn(ctx, "creating the request", func(t *txn) error {
		if err := checkLimits(ctx, t, pol, in, now); err != nil {
			return err
		}
		if err := t.record(ctx, requestEvent("request.create", ActivityCreateName, r, in.Requester,
			fmt.Sprintf("%s requested %s for %s (%s): %s", in.Requester, in.Role, in.Beneficiary, policy.FormatDuration(d), reason),
			map[string]any{"policy": ap.Name, "break_glass": in.BreakGlass, "policy_digest": pol.Digest})); err != nil {
			return err
		}
		if !in.BreakGlass {
			out.Request = r
			return t.saveRequest(ctx, r, true)
		}
		r.State, r.DecidedAt, r.BreakGlass, r.PostReview = Approved, now, true, PostReviewPending
		g := Grant{ID: NewID("grt"), RequestID: r.ID, Requester: r.Requester, Role: r.Role, Subject: r.Beneficiary, StartsAt: now, ExpiresAt: now.Add(d), State: GrantActive, BreakGlass: true}
		g.pin(pol.RoleDefinition(r.Role))
		r.GrantID = g.ID
		if err := t.record(ctx, grantEvent("grant.break_glass", audit.SeverityHigh, g, in.Requester,
			fmt.Sprintf("BREAK-GLASS: %s took %s until %s without approval: %s; an after-the-fact review is required", in.Requester, r.Role, g.ExpiresAt.UTC().Format(time.RFC3339), reason),
			map[string]any{"request_id": r.ID, "policy": ap.Name, "reason": reason, "role_digest": g.RoleDigest})); err != nil {
			return err
		}
		if err := t.saveRequest(ctx, r, true); err != nil {
			return err
		}
		out.Request, out.Grant = r, &g
		return t.saveGrant(ctx, g, true)
	})
	if err != nil {
		return Created{}, err
	}
	return out, nil
}

// Cancel withdraws a pending request. Only its requester may.
func (s *Service) Cancel(ctx context.Context, id, actor string) (Request, error) {
	var out Request
	err := s.txn(ctx, "cancelling the request", func(t *txn) error {
		r, err := t.Request(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrMissing, "request %q does not exist", id)
		} else if err != nil {
			return err
		}
		if r.Requester != actor {
			if !s.CanView(r, actor) { // the one policy read of a cancellation
				return errorf(ErrMissing, "request %q does not exist or is not visible to %s", id, actor)
			}
			return errorf(ErrForbidden, "only the requester (%s) can cancel request %s", r.Requester, id)
		}
		if r.State != Pending {
			return errorf(ErrConflict, "request %s is %s; only pending requests can be cancelled", id, r.State)
		}
		r.State, r.DecidedAt = Cancelled, s.now()
		if err := t.record(ctx, requestEvent("request.cancel", ActivityUpdateName, r, actor, fmt.Sprintf("%s cancelled request %s", actor, id), nil)); err != nil {
			return err
		}
		out = r
		return t.saveRequest(ctx, r, false)
	})
	return out, err
}
