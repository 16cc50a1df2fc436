package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// ReviewInput is one approver's answer.
type ReviewInput struct {
	RequestID string
	Approver  string
	Decision  Decision
	// Duration, if set, caps the grant: the shortest duration any approver gives wins.
	Duration time.Duration
	Comment  string
	// MFAAt is the approver's last multi-factor authentication, as their credential says
	// (identity.Principal.MFAAt); zero when it says none, as API tokens never do. An approval
	// under a require_step_up needs it at most that old by the service's clock, or Review
	// returns a *StepUpRequired.
	MFAAt time.Time
	// CredentialID and SessionID say which credential the approver used and which of their
	// own sign-in sessions it speaks for; they are recorded with the review and in its ledger
	// entry. The transport authenticates them (api refuses reviews from anything but a
	// person's own session or a token bound to it: invariant 8).
	CredentialID string
	SessionID    string
	// SessionRisk is the risk level the approver's session was signed in at
	// (identity.Principal.Risk), recorded in the review's ledger entry as session_risk for
	// detection; it decides nothing here.
	SessionRisk string
}

// Review records an approval or denial. When the approvals satisfy every step of the approval
// policy in force, the grant is activated in the same transaction; when deny_count eligible
// approvers have denied, the request is denied. Reviewing twice the same way changes nothing.
//
// Where an approval policy matching the role sets require_step_up, an approval (including the
// after-the-fact acceptance of a break-glass request) whose MFAAt is older than that is refused
// with a *StepUpRequired, and nothing is changed or recorded, like every other refusal. A
// denial needs no step-up: it can only take access away.
func (s *Service) Review(ctx context.Context, in ReviewInput) (Request, error) {
	if in.Decision != Approve && in.Decision != Deny {
		return Request{}, errorf(ErrInvalid, "decision must be %q or %q", Approve, Deny)
	}
	if err := checkText("comment", in.Comment, MaxCommentLen); err != nil {
		return Request{}, err
	}
	if in.Duration < 0 {
		return Request{}, errorf(ErrInvalid, "duration must be positive")
	}
	var out Request
	var lapsed error
	err := s.txn(ctx, "recording the review", func(t *txn) error {
		// One snapshot of the policy for the whole review, taken under the store's write lock:
		// eligibility, the tally and activation are all judged under the same policy.
		pol := s.Policy()
		r, err := t.Request(ctx, in.RequestID)
		if errors.Is(err, ErrNotFound) {
			return errorf(ErrMissing, "request %q does not exist", in.RequestID)
		} else if err != nil {
			return err
		}
		req, err := pol.Requirement(r.Role)
		if err != nil {
			return &Error{Kind: ErrConflict, Msg: fmt.Sprintf("request %s can no longer be reviewed: %v", r.ID, err), Cause: err}
		}
		ap := req.Policy
		if _, why := pol.EligibleSteps(ap, in.Approver, r.Requester, r.Beneficiary); why != "" {
			if !canView(pol, r, in.Approver) {
				return errorf(ErrMissing, "request %q does not exist or is not visible to %s", in.RequestID, in.Approver)
			}
			return errorf(ErrForbidden, "%s may not review request %s: %s %s under approval policy %q", in.Approver, r.ID, in.Approver, why, ap.Name)
		}
		now := s.now()
		if r.BreakGlass && r.PostReview == PostReviewPending {
			out, err = t.postReview(ctx, pol, r, req, in, now)
			return err
		}
		if r.State != Pending {
			return errorf(ErrConflict, "request %s is %s; only pending requests can be reviewed", r.ID, r.State)
		}
		if !now.Before(r.ExpiresAt) {
			lapsed = errorf(ErrConflict, "request %s expired at %s before it was approved; make a new request", r.ID, r.ExpiresAt.UTC().Format(time.RFC3339))
			out, err = t.expireRequest(ctx, r, now)
			return err
		}
		if in.Duration != 0 && (in.Duration < ap.MinDuration.Std() || in.Duration > r.Duration) {
			return errorf(ErrInvalid, "an approver may shorten the requested %s but not below %s or above it; got %s", policy.FormatDuration(r.Duration), policy.FormatDuration(ap.MinDuration.Std()), policy.FormatDuration(in.Duration))
		}
		reviews, err := t.Reviews(ctx, r.ID)
		if err != nil {
			return err
		}
		for _, old := range reviews {
			if old.Approver == in.Approver && old.Decision == in.Decision && old.Duration == in.Duration && old.RoleDigest == roleDigest(pol, r.Role) {
				out = r // the same answer again: nothing changes, nothing is recorded
				return nil
			}
		}
		if in.Decision == Approve {
			if err := checkStepUp(req, r.ID, in.MFAAt, now); err != nil {
				return err
			}
		}
		rv := Review{RequestID: r.ID, Approver: in.Approver, Decision: in.Decision, Duration: in.Duration, Comment: in.Comment, At: now,
			CredentialID: in.CredentialID, SessionID: in.SessionID, RoleDigest: roleDigest(pol, r.Role)}
		reviews = replaceReview(reviews, rv)
		details := map[string]any{"decision": string(in.Decision), "comment": in.Comment, "role_digest": rv.RoleDigest}
		addCredential(details, in)
		if in.Duration != 0 {
			details["duration"] = policy.FormatDuration(in.Duration)
		}
		addStepUp(details, req, in)
		if err := t.record(ctx, requestEvent("request."+string(in.Decision), ActivityUpdateName, r, in.Approver,
			fmt.Sprintf("%s %sd request %s for %s", in.Approver, in.Decision, r.ID, r.Role), details)); err != nil {
			return err
		}
		if err := t.PutReview(ctx, rv); err != nil {
			return err
		}
		out, err = t.settle(ctx, pol, req, r, reviews, now)
		return err
	})
	if err != nil {
		return Request{}, err
	}
	return out, lapsed
}

// addStepUp records in an approval's ledger details the step-up it was checked against: the
// evidence that the approver had just proved a second factor.
func addStepUp(details map[string]any, req *policy.Requirement, in ReviewInput) {
	if in.Decision != Approve || req.StepUp <= 0 {
		return
	}
	details["step_up"] = map[string]any{"max_age": policy.FormatDuration(req.StepUp), "policy": req.StepUpPolicy,
		"mfa_at": in.MFAAt.UTC().Format(time.RFC3339Nano)}
}

// addCredential records in a review's ledger details the credential and the approver's own
// session it came with (invariant 8: every approval says which sign-in of its approver made it).
func addCredential(details map[string]any, in ReviewInput) {
	if in.CredentialID != "" {
		details["credential_id"] = in.CredentialID
	}
	if in.SessionID != "" {
		details["session_id"] = in.SessionID
	}
	if in.SessionRisk != "" {
		details["session_risk"] = in.SessionRisk
	}
}

func replaceReview(reviews []Review, rv Review) []Review {
	for i := range reviews {
		if reviews[i].Approver == rv.Approver {
			reviews[i] = rv
			return reviews
		}
	}
	return append(reviews, rv)
}

// settle decides a pending request from its reviews, under pol and the requirement req it gives
// the request's role: denied, approved (grant activated) or still pending. It is the only place
// a normal grant is activated.
func (t *txn) settle(ctx context.Context, pol *policy.Policy, req *policy.Requirement, r Request, reviews []Review, now time.Time) (Request, error) {
	ap := req.Policy
	def := pol.RoleDefinition(r.Role)
	approvers, deniers, d, _ := countReviews(pol, ap, r, reviews, pol.RoleDigest(r.Role))
	if deniers >= ap.DenyCount {
		r.State, r.DecidedAt = Denied, now
		if err := t.record(ctx, requestEvent("request.denied", ActivityUpdateName, r, audit.SystemActor,
			fmt.Sprintf("request %s for %s denied by %d eligible approver(s)", r.ID, r.Role, deniers), nil)); err != nil {
			return r, err
		}
		return r, t.saveRequest(ctx, r, false)
	}
	tally := pol.Tally(ap, r.Requester, r.Beneficiary, approvers)
	if !tally.Satisfied {
		return r, t.saveRequest(ctx, r, false)
	}
	d = min(d, r.Duration, ap.MaxDuration.Std())
	facts := pol.Facts(req, r.Requester, r.Beneficiary, r.Reason, false, r.RenewalOf != "")
	facts.Duration = d
	err := pol.MayRequestFor(req, r.Requester, r.Beneficiary)
	if err == nil {
		err = ap.CheckConditions(facts)
	}
	if err != nil {
		// The policy changed since the request was made; it no longer allows it.
		r.State, r.DecidedAt = Denied, now
		if err := t.record(ctx, requestEvent("request.denied", ActivityUpdateName, r, audit.SystemActor,
			fmt.Sprintf("request %s for %s denied at activation: %v", r.ID, r.Role, err), nil)); err != nil {
			return r, err
		}
		return r, t.saveRequest(ctx, r, false)
	}
	g, renewed, err := t.activate(ctx, r, def, d, now)
	if err != nil {
		return r, err
	}
	code, msg := "grant.activate", fmt.Sprintf("%s granted %s until %s (approved by %s)", g.Subject, g.Role, g.ExpiresAt.UTC().Format(time.RFC3339), strings.Join(approvers, ", "))
	if renewed {
		code, msg = "grant.renew", fmt.Sprintf("%s's grant %s of %s extended until %s (approved by %s)", g.Subject, g.ID, g.Role, g.ExpiresAt.UTC().Format(time.RFC3339), strings.Join(approvers, ", "))
	}
	r.State, r.DecidedAt, r.GrantID = Approved, now, g.ID
	if err := t.record(ctx, grantEvent(code, audit.SeverityInformational, g, audit.SystemActor, msg,
		map[string]any{"request_id": r.ID, "approvers": approvers, "policy": ap.Name, "tally": tally, "role_digest": g.RoleDigest})); err != nil {
		return r, err
	}
	if err := t.saveRequest(ctx, r, false); err != nil {
		return r, err
	}
	return r, t.saveGrant(ctx, g, !renewed)
}

// activate builds the grant for an approved request, pinned to def, the definition of its role
// the approvals were for. The clock starts now, at activation. A renewal approved while the old
// grant is still active extends it without a gap (and never shortens it) and re-pins it: the
// renewal's approvers approved the role as it is now. Otherwise a new grant starts.
func (t *txn) activate(ctx context.Context, r Request, def *policy.RoleDefinition, d time.Duration, now time.Time) (Grant, bool, error) {
	if r.RenewalOf != "" {
		old, err := t.Grant(ctx, r.RenewalOf)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Grant{}, false, err
		}
		if err == nil && old.ActiveAt(now) {
			old.ExpiresAt = maxTime(old.ExpiresAt, now.Add(d))
			old.pin(def)
			return old, true, nil
		}
	}
	g := Grant{ID: NewID("grt"), RequestID: r.ID, Requester: r.Requester, Role: r.Role, Subject: r.Beneficiary, StartsAt: now, ExpiresAt: now.Add(d), State: GrantActive}
	g.pin(def)
	return g, false, nil
}

// roleDigest is the digest of role's definition under pol ("" for a role not in it).
func roleDigest(pol *policy.Policy, role string) string { return pol.RoleDigest(role) }

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// countReviews returns the eligible approvers, the number of eligible deniers, and the
// shortest duration any eligible approver set (or the requested one). When digest is set, an
// approval made for another definition of the role does not count (invariant 9: a broadened
// role needs new approvals); those approvers are returned as stale. Denials always count.
func countReviews(pol *policy.Policy, ap *policy.ApprovalPolicy, r Request, reviews []Review, digest string) (approvers []string, deniers int, d time.Duration, stale []string) {
	d = r.Duration
	for _, rv := range reviews {
		if !pol.CanApproveAny(ap, rv.Approver, r.Requester, r.Beneficiary) {
			continue
		}
		switch rv.Decision {
		case Approve:
			if digest != "" && rv.RoleDigest != "" && rv.RoleDigest != digest {
				stale = append(stale, rv.Approver)
				continue
			}
			approvers = append(approvers, rv.Approver)
			if rv.Duration > 0 {
				d = min(d, rv.Duration)
			}
		case Deny:
			deniers++
		}
	}
	return approvers, deniers, d, stale
}

// postReview handles the after-the-fact review of a break-glass request: approvals count like a
// normal request and accept it; deny_count denials reject it and revoke the grant at once.
// Accepting needs the same step-up as approving: it closes the review of access taken without
// one, which is what a thief of an approver's session would want done.
func (t *txn) postReview(ctx context.Context, pol *policy.Policy, r Request, req *policy.Requirement, in ReviewInput, now time.Time) (Request, error) {
	ap := req.Policy
	reviews, err := t.Reviews(ctx, r.ID)
	if err != nil {
		return r, err
	}
	for _, old := range reviews {
		if old.Approver == in.Approver && old.Decision == in.Decision {
			return r, nil
		}
	}
	if in.Decision == Approve {
		if err := checkStepUp(req, r.ID, in.MFAAt, now); err != nil {
			return r, err
		}
	}
	rv := Review{RequestID: r.ID, Approver: in.Approver, Decision: in.Decision, Comment: in.Comment, At: now,
		CredentialID: in.CredentialID, SessionID: in.SessionID, RoleDigest: roleDigest(pol, r.Role)}
	reviews = replaceReview(reviews, rv)
	details := map[string]any{"comment": in.Comment}
	addCredential(details, in)
	addStepUp(details, req, in)
	if err := t.record(ctx, requestEvent("request.post_review."+string(in.Decision), ActivityUpdateName, r, in.Approver,
		fmt.Sprintf("%s %sd break-glass request %s after the fact", in.Approver, in.Decision, r.ID), details)); err != nil {
		return r, err
	}
	if err := t.PutReview(ctx, rv); err != nil {
		return r, err
	}
	// The after-the-fact review judges the use of a grant already pinned at break-glass time:
	// approvals count whatever definition the role has had since.
	approvers, deniers, _, _ := countReviews(pol, ap, r, reviews, "")
	switch {
	case deniers >= ap.DenyCount:
		r.PostReview = PostReviewRejected
		if err := t.record(ctx, requestEvent("request.post_review.rejected", ActivityUpdateName, r, audit.SystemActor,
			fmt.Sprintf("break-glass request %s rejected after the fact; its grant is revoked", r.ID), nil)); err != nil {
			return r, err
		}
		if err := t.saveRequest(ctx, r, false); err != nil {
			return r, err
		}
		if err := t.recordRejection(ctx, r, now); err != nil {
			return r, err
		}
		g, err := t.Grant(ctx, r.GrantID)
		if err != nil {
			return r, err
		}
		if g.ActiveAt(now) {
			_, err = t.revoke(ctx, g, audit.SystemActor, "break-glass use rejected in after-the-fact review", now)
		}
		return r, err
	case pol.Tally(ap, r.Requester, r.Beneficiary, approvers).Satisfied:
		r.PostReview = PostReviewAccepted
		if err := t.record(ctx, requestEvent("request.post_review.accepted", ActivityUpdateName, r, audit.SystemActor,
			fmt.Sprintf("break-glass request %s accepted after the fact by %s", r.ID, strings.Join(approvers, ", ")), nil)); err != nil {
			return r, err
		}
	}
	return r, t.saveRequest(ctx, r, false)
}

func (t *txn) expireRequest(ctx context.Context, r Request, now time.Time) (Request, error) {
	r.State, r.DecidedAt = Expired, now
	if err := t.record(ctx, requestEvent("request.expire", ActivityUpdateName, r, audit.SystemActor,
		fmt.Sprintf("request %s for %s expired unapproved at %s", r.ID, r.Role, r.ExpiresAt.UTC().Format(time.RFC3339)), nil)); err != nil {
		return r, err
	}
	return r, t.saveRequest(ctx, r, false)
}
