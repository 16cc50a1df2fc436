package access

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/text"
	"rampart.dev/rampart/policy"
)

// Limits on free text, so a request cannot carry a megabyte of "reason".
const (
	MaxReasonLen  = 1024
	MaxCommentLen = 1024
)

// GrantListener is told about grants changed by a committed transaction, in commit order.
type GrantListener func(grants []Grant)

// Service runs the workflow. It is safe for concurrent use.
type Service struct {
	store Store
	pol   atomic.Pointer[policy.Policy]
	now   func() time.Time
	log   *slog.Logger

	mu        sync.RWMutex
	listeners []GrantListener
}

// Options configure a Service.
type Options struct {
	// Now is the clock; time.Now if nil. Tests inject one so expiry never needs a sleep.
	Now    func() time.Time
	Logger *slog.Logger
}

// New returns a Service over store, governed by pol.
func New(store Store, pol *policy.Policy, o Options) *Service {
	s := &Service{store: store, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.pol.Store(pol)
	return s
}

// Policy returns the policy in force.
func (s *Service) Policy() *policy.Policy { return s.pol.Load() }

// Now returns the service clock's time.
func (s *Service) Now() time.Time { return s.now() }

// OnGrantChange registers a listener called after every commit that changed grants.
func (s *Service) OnGrantChange(l GrantListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
}

func (s *Service) notify(grants []Grant) {
	if len(grants) == 0 {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.listeners {
		l(grants)
	}
}

// txn runs fn in a store transaction and, after commit, notifies listeners of changed grants.
// Errors from fn that are not *Error are store or ledger failures: nothing was changed.
func (s *Service) txn(ctx context.Context, what string, fn func(t *txn) error) error {
	t := &txn{svc: s}
	err := s.store.Update(ctx, func(tx Tx) error {
		t.Tx, t.changed = tx, nil
		return fn(t)
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		var su *StepUpRequired
		if errors.As(err, &su) {
			return su
		}
		return unavailable(what, err)
	}
	s.notify(t.changed)
	return nil
}

// txn wraps a store transaction with the helpers every workflow step uses.
type txn struct {
	Tx
	svc     *Service
	changed []Grant
	seq     int64
}

// record appends a ledger entry; its sequence number becomes the version of what it describes.
func (t *txn) record(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = t.svc.now()
	}
	seq, err := t.Append(ctx, e)
	if err != nil {
		return fmt.Errorf("append to ledger: %w", err)
	}
	t.seq = seq
	return nil
}

func (t *txn) saveGrant(ctx context.Context, g Grant, insert bool) error {
	g.Version = t.seq
	var err error
	if insert {
		err = t.InsertGrant(ctx, g)
	} else {
		err = t.UpdateGrant(ctx, g)
	}
	if err == nil {
		t.changed = append(t.changed, g)
	}
	return err
}

func (t *txn) saveRequest(ctx context.Context, r Request, insert bool) error {
	r.Version = t.seq
	if insert {
		return t.InsertRequest(ctx, r)
	}
	return t.UpdateRequest(ctx, r)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns prefix_ followed by 80 random bits in lowercase base32.
func NewID(prefix string) string {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + "_" + idEncoding.EncodeToString(b)
}

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
		g := Grant{ID: NewID("grt"), RequestID: r.ID, Role: r.Role, Subject: r.Beneficiary, StartsAt: now, ExpiresAt: now.Add(d), State: GrantActive, BreakGlass: true}
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
	g := Grant{ID: NewID("grt"), RequestID: r.ID, Role: r.Role, Subject: r.Beneficiary, StartsAt: now, ExpiresAt: now.Add(d), State: GrantActive}
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
