package storetest

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// stepUpPolicies add require_step_up to the demo policy through extra policies, so the step-up
// comes from a policy other than the one chosen for quorum: weights requests stay under
// critical-weights (owner AND security) yet need a second factor in the last 10m (the shortest
// of weights-step-up's 10m and critical-step-up's 1h); dataset requests stay under
// sensitive-data (break-glass allowed) and need one in the last 10m.
const stepUpPolicies = `apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: weights-step-up}
spec:
  match: {tags: [weights]}
  steps: [{from: [security], count: 1}]
  max_duration: 8h
  require_step_up: 10m
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: critical-step-up}
spec:
  match: {sensitivity: [critical]}
  steps: [{from: [security], count: 1}]
  max_duration: 8h
  require_step_up: 1h
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: evals-step-up}
spec:
  match: {tags: [evals]}
  steps: [{from: [data-stewards], count: 1}]
  max_duration: 24h
  default_duration: 4h
  request_ttl: 48h
  renewable: true
  require_reason: true
  break_glass: {allowed: true, max_duration: 1h}
  require_step_up: 10m
`

func stepUpPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(append(files, policy.File{Name: "step-up.yaml", Data: []byte(stepUpPolicies)}))
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[string]string{"weights-reader-frontier-7": "critical-weights", "dataset-reader-eval-suite-v3": "sensitive-data"} {
		req, err := pol.Requirement(role)
		if err != nil || req.Policy.Name != want || req.StepUp != 10*time.Minute {
			t.Fatalf("test policy: %s governed by %v with step-up %v (%v); the tests below assume %s and 10m", role, req.Policy.Name, req.StepUp, err, want)
		}
	}
	return pol
}

// newStepUpEnv is newEnv under the demo policy plus stepUpPolicies.
func newStepUpEnv(t *testing.T, h Harness) *env {
	t.Helper()
	e := newEnv(t, h)
	e.pol = stepUpPolicy(t)
	e.svc = access.New(e.store, e.pol, access.Options{Now: e.clock.Now})
	return e
}

// approve reviews as approver whose credential says their last second factor was at mfaAt.
func (e *env) approve(id, approver string, mfaAt time.Time) (access.Request, error) {
	return e.svc.Review(e.ctx, access.ReviewInput{RequestID: id, Approver: approver, Decision: access.Approve, MFAAt: mfaAt})
}

// stepUpRefused checks that fn is refused with a *StepUpRequired carrying the evidence, that
// the refusal also reads as ErrForbidden, and that neither the ledger nor the request changed.
func (e *env) stepUpRefused(id string, fn func() error) *access.StepUpRequired {
	e.t.Helper()
	before, err := e.store.Request(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	reviews, _ := e.store.Reviews(e.ctx, id)
	var su *access.StepUpRequired
	e.refused(access.ErrStepUpRequired, "rampart login --step-up", func() error {
		err := fn()
		if !errors.As(err, &su) || !errors.Is(err, access.ErrForbidden) {
			e.t.Fatalf("got %v (%T), want a *access.StepUpRequired that is also ErrForbidden", err, err)
		}
		for _, kind := range []error{access.ErrUnavailable, access.ErrInvalid, access.ErrMissing, access.ErrConflict} {
			if errors.Is(err, kind) {
				e.t.Fatalf("a step-up refusal also reads as %v: %v", kind, err)
			}
		}
		return err
	})
	if su.RequestID != id || su.MaxAge != 10*time.Minute || su.Policy == "" || !su.At.Equal(e.clock.Now()) {
		e.t.Fatalf("step-up evidence %+v", su)
	}
	after, _ := e.store.Request(e.ctx, id)
	if !reflect.DeepEqual(before, after) {
		e.t.Fatalf("a refused approval changed the request:\n%+v\n%+v", before, after)
	}
	if now, _ := e.store.Reviews(e.ctx, id); !reflect.DeepEqual(reviews, now) {
		e.t.Fatalf("a refused approval changed the reviews: %+v → %+v", reviews, now)
	}
	return su
}

func (e *env) grants() []access.Grant {
	e.t.Helper()
	gs, err := e.store.ListGrants(e.ctx, access.GrantFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return gs
}

// testStepUp: an approval policy's require_step_up, tried against the real store.
func testStepUp(t *testing.T, h Harness) {
	t.Run("NoSecondFactorRefused", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		su := e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "bob", time.Time{}); return err })
		if su.Policy != "weights-step-up" || !su.MFAAt.IsZero() || !strings.Contains(su.Error(), "has none") {
			t.Fatalf("evidence %+v: %v", su, su)
		}
		if len(e.grants()) != 0 {
			t.Fatal("a refused approval made a grant")
		}
	})

	t.Run("ExactlyMaxAgeCounts", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		mfa := e.clock.Now()
		e.clock.Advance(10 * time.Minute)
		if _, err := e.approve(req.ID, "bob", mfa); err != nil {
			t.Fatalf("a second factor exactly require_step_up old was refused: %v", err)
		}
	})

	t.Run("OneNanosecondOlderRefused", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		mfa := e.clock.Now()
		e.clock.Advance(10*time.Minute + time.Nanosecond)
		su := e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "bob", mfa); return err })
		if !su.MFAAt.Equal(mfa) {
			t.Fatalf("evidence %+v", su)
		}
	})

	t.Run("StrictestMatchingPolicyWins", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		// 30m old satisfies critical-step-up (1h) but not weights-step-up (10m), though neither
		// is the policy chosen for quorum.
		su := e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "bob", e.clock.Now().Add(-30*time.Minute)); return err })
		if su.Policy != "weights-step-up" || !strings.Contains(su.Error(), "yours was 30m ago") {
			t.Fatalf("refused under %q: %v", su.Policy, su)
		}
	})

	t.Run("FutureSecondFactorRefused", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "bob", e.clock.Now().Add(24*time.Hour)); return err })
		if _, err := e.approve(req.ID, "bob", e.clock.Now().Add(time.Second)); err != nil {
			t.Fatalf("a second factor a second ahead (replica clocks) was refused: %v", err)
		}
	})

	t.Run("QuorumOneFreshOneStale", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		start := e.clock.Now()
		if r, err := e.approve(req.ID, "bob", start); err != nil || r.State != access.Pending {
			t.Fatalf("fresh owner approval: %+v %v", r, err)
		}
		e.clock.Advance(11 * time.Minute)
		// dave signed in with a second factor 11 minutes ago: his approval would complete the
		// quorum, and is refused.
		e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "dave", start); return err })
		if r, _ := e.store.Request(e.ctx, req.ID); r.State != access.Pending || len(e.grants()) != 0 {
			t.Fatalf("after a stale approval: %s, %d grants", r.State, len(e.grants()))
		}
		// bob's approval was checked when he made it and still counts.
		v, err := e.svc.Get(e.ctx, req.ID, "alice")
		if err != nil || len(v.Reviews) != 1 || v.RequireStepUp != "10m" {
			t.Fatalf("view %+v %v", v, err)
		}
		// dave steps up and approves: the grant activates.
		r, err := e.approve(req.ID, "dave", e.clock.Now())
		if err != nil || r.State != access.Approved || r.GrantID == "" {
			t.Fatalf("after dave stepped up: %+v %v", r, err)
		}
		codes := e.codes()
		if want := "request.create request.approve request.approve grant.activate"; strings.Join(codes, " ") != want {
			t.Fatalf("ledger %v, want %s (a refusal writes nothing)", codes, want)
		}
		recs, err := e.store.Entries(e.ctx, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{1, 2} {
			if d := string(recs[i].Data); !strings.Contains(d, `"step_up"`) || !strings.Contains(d, `"max_age":"10m"`) || !strings.Contains(d, `"mfa_at"`) {
				t.Fatalf("approval entry %d does not record its step-up: %s", i, d)
			}
		}
	})

	t.Run("DenialNeedsNoStepUp", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		r, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "dave", Decision: access.Deny})
		if err != nil || r.State != access.Denied {
			t.Fatalf("denial without a second factor: %+v %v", r, err)
		}
	})

	t.Run("OtherRefusalsComeFirst", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		// Outsiders and ineligible people are not invited to step up for nothing.
		e.refused(access.ErrMissing, "not visible to mallory", func() error { _, err := e.approve(req.ID, "mallory", time.Time{}); return err })
		e.refused(access.ErrForbidden, "not a member of an approving group", func() error { _, err := e.approve(req.ID, "erin", time.Time{}); return err })
		for _, who := range []string{"mallory", "erin", "alice"} {
			if _, err := e.approve(req.ID, who, time.Time{}); errors.Is(err, access.ErrStepUpRequired) {
				t.Fatalf("%s was asked to step up: %v", who, err)
			}
		}
		e.refused(access.ErrInvalid, "may shorten", func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "bob", Decision: access.Approve, Duration: 9 * time.Hour})
			return err
		})
		e.mustReview(req.ID, "dave", access.Deny)
		e.refused(access.ErrConflict, "only pending", func() error { _, err := e.approve(req.ID, "bob", time.Time{}); return err })
	})

	t.Run("RepeatChangesNothingChangeNeedsStepUp", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		if _, err := e.approve(req.ID, "bob", e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		// The same approval again changes nothing, so it needs nothing.
		before := e.ledgerSize()
		if r, err := e.approve(req.ID, "bob", time.Time{}); err != nil || r.State != access.Pending || e.ledgerSize() != before {
			t.Fatalf("repeated approval: %+v %v", r, err)
		}
		// A different approval (a shorter cap) is a new approval.
		e.stepUpRefused(req.ID, func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "bob", Decision: access.Approve, Duration: 30 * time.Minute})
			return err
		})
	})

	t.Run("RealCredentials", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		// An API token never carries a second factor.
		tokens := &identity.Tokens{Store: e.store, Now: e.clock.Now, CacheTTL: -1}
		secret, _, err := tokens.Issue(e.ctx, "dave", identity.KindUser, "automation", "erin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tokens.Verify(e.ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		e.stepUpRefused(req.ID, func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: p.Subject, Decision: access.Approve, MFAAt: p.MFAAt})
			return err
		})
		// A session signed in with a password only must step up; after StepUp it may approve.
		sessions := &identity.Sessions{Store: e.store, Now: e.clock.Now, CacheTTL: -1}
		iss, err := sessions.Create(e.ctx, identity.NewSession{Subject: "dave", Method: "oidc", AuthTime: e.clock.Now(), AMR: []string{"pwd"}, Event: signInEvent("dave")})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Minute)
		p, err = sessions.Verify(e.ctx, iss.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		e.stepUpRefused(req.ID, func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: p.Subject, Decision: access.Approve, MFAAt: p.MFAAt})
			return err
		})
		if err := sessions.StepUp(e.ctx, iss.Session.ID, []string{"otp"}, true, signInEvent("dave")); err != nil {
			t.Fatal(err)
		}
		if p, err = sessions.Verify(e.ctx, iss.AccessToken); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: p.Subject, Decision: access.Approve, MFAAt: p.MFAAt}); err != nil {
			t.Fatalf("approval right after step-up: %v", err)
		}
		// A sign-in with a second factor counts as a step-up at sign-in time, for 10 minutes.
		b, err := sessions.Create(e.ctx, identity.NewSession{Subject: "bob", Method: "oidc", AuthTime: e.clock.Now(), AMR: []string{"pwd", "otp"}, MFA: true, Event: signInEvent("bob")})
		if err != nil {
			t.Fatal(err)
		}
		if p, err = sessions.Verify(e.ctx, b.AccessToken); err != nil || !p.MFAAt.Equal(e.clock.Now()) {
			t.Fatalf("principal %+v %v", p, err)
		}
		e.clock.Advance(10*time.Minute + time.Second)
		e.stepUpRefused(req.ID, func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: p.Subject, Decision: access.Approve, MFAAt: p.MFAAt})
			return err
		})
	})

	t.Run("BreakGlassAfterTheFactReview", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		bg := access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "incident 99: eval pipeline down", BreakGlass: true}
		// Taking break-glass access needs no step-up: it must work when the provider does not.
		c, err := e.svc.Create(e.ctx, bg)
		if err != nil || c.Grant == nil {
			t.Fatalf("break-glass: %+v %v", c, err)
		}
		// Accepting it after the fact is an approval: it needs the step-up.
		e.stepUpRefused(c.Request.ID, func() error { _, err := e.approve(c.Request.ID, "carol", time.Time{}); return err })
		if r, _ := e.store.Request(e.ctx, c.Request.ID); r.PostReview != access.PostReviewPending {
			t.Fatalf("post review %s after a refused acceptance", r.PostReview)
		}
		if r, err := e.approve(c.Request.ID, "carol", e.clock.Now()); err != nil || r.PostReview != access.PostReviewAccepted {
			t.Fatalf("acceptance with a fresh second factor: %+v %v", r, err)
		}
		// Rejecting it takes access away and needs none.
		c2, err := e.svc.Create(e.ctx, bg)
		if err != nil {
			t.Fatal(err)
		}
		if r := e.mustReview(c2.Request.ID, "carol", access.Deny); r.PostReview != access.PostReviewRejected {
			t.Fatalf("post review %s", r.PostReview)
		}
		if g, _ := e.store.Grant(e.ctx, c2.Grant.ID); g.State != access.GrantRevoked {
			t.Fatalf("rejected break-glass grant is %s", g.State)
		}
	})

	t.Run("RenewalNeedsStepUp", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(weightsRequest())
		if _, err := e.approve(req.ID, "bob", e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		r, err := e.approve(req.ID, "dave", e.clock.Now())
		if err != nil || r.GrantID == "" {
			t.Fatalf("%+v %v", r, err)
		}
		ren, err := e.svc.Renew(e.ctx, r.GrantID, "alice", time.Hour, "more")
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Hour)
		e.stepUpRefused(ren.ID, func() error { _, err := e.approve(ren.ID, "carol", time.Time{}); return err })
	})

	t.Run("OnlyWherePolicySaysSo", func(t *testing.T) {
		e := newStepUpEnv(t, h)
		req := e.create(access.CreateInput{Requester: "alice", Role: "egress-openai", Reason: "model comparison"})
		if r, err := e.approve(req.ID, "dave", time.Time{}); err != nil || r.State != access.Approved {
			t.Fatalf("approval under a policy without require_step_up: %+v %v", r, err)
		}
		if v, _ := e.svc.Get(e.ctx, req.ID, "alice"); v.RequireStepUp != "" {
			t.Fatalf("view asks for step-up %q", v.RequireStepUp)
		}
	})

	t.Run("PolicyTightenedWhilePending", func(t *testing.T) {
		e := newEnv(t, h) // the demo policy: no step-up
		req := e.create(weightsRequest())
		if err := e.svc.LoadPolicy(e.ctx, stepUpPolicy(t), "test", "step-up.yaml"); err != nil {
			t.Fatal(err)
		}
		e.stepUpRefused(req.ID, func() error { _, err := e.approve(req.ID, "bob", time.Time{}); return err })
	})
}
