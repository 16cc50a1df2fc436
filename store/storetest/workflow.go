package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
)

// refused runs fn and checks it fails with the given kind, a message containing want, and
// leaves the ledger (so every state) untouched.
func (e *env) refused(kind error, want string, fn func() error) {
	e.t.Helper()
	before := e.ledgerSize()
	err := fn()
	if !errors.Is(err, kind) {
		e.t.Fatalf("got %v, want %v", err, kind)
	}
	if !strings.Contains(err.Error(), want) {
		e.t.Fatalf("error %q does not say %q", err, want)
	}
	if after := e.ledgerSize(); after != before {
		e.t.Fatalf("a refused operation changed the ledger (%d → %d entries)", before, after)
	}
}

func testWorkflow(t *testing.T, h Harness) {
	t.Run("StepUp", func(t *testing.T) { testStepUp(t, h) })
	t.Run("OnBehalf", func(t *testing.T) { testOnBehalf(t, h) })
	t.Run("QuorumProperty", func(t *testing.T) { testQuorumProperty(t, h) })
	t.Run("Pinning", func(t *testing.T) { testPinning(t, h) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, h) })

	t.Run("QuorumOwnerAndSecurity", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.clock.Advance(10 * time.Minute) // the grant's clock must start at activation, not here
		r := e.mustReview(req.ID, "bob", access.Approve)
		if r.State != access.Pending {
			t.Fatalf("one approval of two activated the request: %s", r.State)
		}
		r = e.mustReview(req.ID, "dave", access.Approve)
		if r.State != access.Approved || r.GrantID == "" {
			t.Fatalf("after owner+security: %+v", r)
		}
		g, err := e.store.Grant(e.ctx, r.GrantID)
		if err != nil {
			t.Fatal(err)
		}
		if !g.StartsAt.Equal(Epoch.Add(10*time.Minute)) || g.ExpiresAt.Sub(g.StartsAt) != 2*time.Hour || g.Subject != "alice" {
			t.Fatalf("grant %+v: must start at activation and last the requested 2h", g)
		}
		if !g.ActiveAt(e.clock.Now()) || g.ActiveAt(g.ExpiresAt) {
			t.Fatal("ActiveAt wrong at activation or at expiry")
		}
		codes := e.codes()
		want := []string{"request.create", "request.approve", "request.approve", "grant.activate"}
		if strings.Join(codes, " ") != strings.Join(want, " ") {
			t.Fatalf("ledger %v, want %v", codes, want)
		}
		v, err := e.svc.Get(e.ctx, req.ID, "alice")
		if err != nil || !v.Tally.Satisfied || v.Grant == nil || len(v.Reviews) != 2 {
			t.Fatalf("view %+v %v", v, err)
		}
	})

	t.Run("TwoOwnersAreNotOwnerAndSecurity", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		if r := e.mustReview(req.ID, "carol", access.Approve); r.State != access.Pending {
			t.Fatalf("two owners activated a grant that needs security too: %s", r.State)
		}
	})

	t.Run("SelfApprovalRefused", func(t *testing.T) {
		e := newEnv(t, h)
		// dave (security) asks for himself; he can never count.
		req := e.create(access.CreateInput{Requester: "dave", Role: "weights-reader-frontier-7", Reason: "incident 7", Duration: time.Hour})
		e.refused(access.ErrForbidden, "is the requester", func() error { _, err := e.review(req.ID, "dave", access.Approve); return err })
		// A beneficiary approving their own access: see OnBehalf.
	})

	t.Run("SameGroupApproverExcluded", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(access.CreateInput{Requester: "carol", Role: "weights-reader-frontier-7", Reason: "audit", Duration: time.Hour})
		// bob shares carol's group, so he is not an eligible approver and cannot even see it.
		e.refused(access.ErrMissing, "not visible to bob", func() error { _, err := e.review(req.ID, "bob", access.Approve); return err })
		// dave (security) is eligible; erin (admin) sees it but is told why she cannot count.
		if _, err := e.review(req.ID, "dave", access.Approve); err != nil {
			t.Fatal(err)
		}
		v, err := e.svc.Get(e.ctx, req.ID, "erin")
		if err != nil || v.Tally.Satisfied {
			t.Fatalf("after security only: %+v %v", v.Tally, err)
		}
	})

	t.Run("OutsiderRefused", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.refused(access.ErrForbidden, "not a member of an approving group", func() error { _, err := e.review(req.ID, "erin", access.Approve); return err })
		e.refused(access.ErrMissing, "not visible to mallory", func() error { _, err := e.review(req.ID, "mallory", access.Approve); return err })
	})

	t.Run("RepeatedApprovalCountsOnce", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		before := e.ledgerSize()
		for i := 0; i < 3; i++ {
			if r := e.mustReview(req.ID, "bob", access.Approve); r.State != access.Pending {
				t.Fatal("repeated approval by one person activated the grant")
			}
		}
		if e.ledgerSize() != before {
			t.Fatal("an identical repeated approval was recorded again")
		}
	})

	t.Run("DenialEndsRequest", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		if r := e.mustReview(req.ID, "dave", access.Deny); r.State != access.Denied {
			t.Fatalf("deny_count=1 denial left the request %s", r.State)
		}
		e.refused(access.ErrConflict, "only pending requests", func() error { _, err := e.review(req.ID, "carol", access.Approve); return err })
		if gs, _ := e.store.ListGrants(e.ctx, access.GrantFilter{}); len(gs) != 0 {
			t.Fatal("a denied request has a grant")
		}
	})

	t.Run("ApproverShortensDuration", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		if _, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "bob", Decision: access.Approve, Duration: 30 * time.Minute}); err != nil {
			t.Fatal(err)
		}
		e.refused(access.ErrInvalid, "may shorten", func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "dave", Decision: access.Approve, Duration: 3 * time.Hour})
			return err
		})
		r := e.mustReview(req.ID, "dave", access.Approve)
		g, _ := e.store.Grant(e.ctx, r.GrantID)
		if d := g.ExpiresAt.Sub(g.StartsAt); d != 30*time.Minute {
			t.Fatalf("grant lasts %s, want the shortest approved 30m", d)
		}
	})

	t.Run("DurationsBoundedByPolicy", func(t *testing.T) {
		e := newEnv(t, h)
		e.refused(access.ErrInvalid, "outside what approval policy", func() error {
			in := weightsRequest()
			in.Duration = 9 * time.Hour
			_, err := e.svc.Create(e.ctx, in)
			return err
		})
		e.refused(access.ErrInvalid, "outside", func() error {
			in := weightsRequest()
			in.Duration = 500 * time.Millisecond
			_, err := e.svc.Create(e.ctx, in)
			return err
		})
		// No duration: the policy's default.
		in := weightsRequest()
		in.Duration = 0
		if r := e.create(in); r.Duration != time.Hour {
			t.Fatalf("default duration %s, want 1h", r.Duration)
		}
	})

	t.Run("PendingRequestExpires", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		e.clock.Advance(24 * time.Hour)
		_, err := e.review(req.ID, "dave", access.Approve)
		if !errors.Is(err, access.ErrConflict) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("approval after request_ttl: %v", err)
		}
		got, _ := e.store.Request(e.ctx, req.ID)
		if got.State != access.Expired {
			t.Fatalf("request %s after ttl", got.State)
		}
		if gs, _ := e.store.ListGrants(e.ctx, access.GrantFilter{}); len(gs) != 0 {
			t.Fatal("an expired request activated a grant")
		}
	})

	t.Run("SweepRecordsExpiry", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		r := e.mustReview(req.ID, "dave", access.Approve)
		pending := e.create(weightsRequest())
		if n, err := e.svc.Sweep(e.ctx); err != nil || n != 0 {
			t.Fatalf("early sweep expired %d (%v)", n, err)
		}
		e.clock.Advance(24 * time.Hour)
		n, err := e.svc.Sweep(e.ctx)
		if err != nil || n != 2 {
			t.Fatalf("sweep expired %d (%v), want the grant and the pending request", n, err)
		}
		g, _ := e.store.Grant(e.ctx, r.GrantID)
		p, _ := e.store.Request(e.ctx, pending.ID)
		if g.State != access.GrantExpired || p.State != access.Expired {
			t.Fatalf("after sweep: grant %s, request %s", g.State, p.State)
		}
		if !g.EndedAt.Equal(g.ExpiresAt) {
			t.Fatalf("expired grant ended at %v, want its expiry %v", g.EndedAt, g.ExpiresAt)
		}
		codes := e.codes()
		if count(codes, "grant.expire") != 1 || count(codes, "request.expire") != 1 {
			t.Fatalf("ledger %v", codes)
		}
		if n, _ := e.svc.Sweep(e.ctx); n != 0 {
			t.Fatalf("second sweep expired %d again", n)
		}
	})

	t.Run("CancelOnlyByRequester", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.refused(access.ErrForbidden, "only the requester", func() error { _, err := e.svc.Cancel(e.ctx, req.ID, "bob"); return err })
		if r, err := e.svc.Cancel(e.ctx, req.ID, "alice"); err != nil || r.State != access.Cancelled {
			t.Fatalf("cancel: %+v %v", r, err)
		}
		e.refused(access.ErrConflict, "only pending", func() error { _, err := e.review(req.ID, "bob", access.Approve); return err })
	})

	grant := func(e *env) access.Grant {
		e.t.Helper()
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		r := e.mustReview(req.ID, "dave", access.Approve)
		g, err := e.store.Grant(e.ctx, r.GrantID)
		if err != nil {
			e.t.Fatal(err)
		}
		return g
	}

	t.Run("RenewalExtendsSeamlessly", func(t *testing.T) {
		e := newEnv(t, h)
		g := grant(e)
		e.clock.Advance(90 * time.Minute) // 30 minutes left
		ren, err := e.svc.Renew(e.ctx, g.ID, "alice", 2*time.Hour, "eval run 4411 continues")
		if err != nil {
			t.Fatal(err)
		}
		if ren.RenewalOf != g.ID || ren.State != access.Pending {
			t.Fatalf("renewal %+v", ren)
		}
		e.mustReview(ren.ID, "carol", access.Approve)
		r := e.mustReview(ren.ID, "dave", access.Approve)
		if r.GrantID != g.ID {
			t.Fatalf("renewal made grant %s instead of extending %s", r.GrantID, g.ID)
		}
		ng, _ := e.store.Grant(e.ctx, g.ID)
		if want := e.clock.Now().Add(2 * time.Hour); !ng.ExpiresAt.Equal(want) || !ng.StartsAt.Equal(g.StartsAt) {
			t.Fatalf("renewed grant %v–%v, want start kept and expiry %v", ng.StartsAt, ng.ExpiresAt, want)
		}
		if count(e.codes(), "grant.renew") != 1 {
			t.Fatal("no grant.renew entry")
		}
	})

	t.Run("RenewalAfterExpiryStartsNewGrant", func(t *testing.T) {
		e := newEnv(t, h)
		g := grant(e)
		e.clock.Advance(3 * time.Hour)
		ren, err := e.svc.Renew(e.ctx, g.ID, "alice", time.Hour, "")
		if err != nil {
			t.Fatal(err)
		}
		e.mustReview(ren.ID, "bob", access.Approve)
		r := e.mustReview(ren.ID, "dave", access.Approve)
		if r.GrantID == g.ID {
			t.Fatal("an expired grant was revived instead of a new one starting")
		}
		ng, _ := e.store.Grant(e.ctx, r.GrantID)
		if !ng.StartsAt.Equal(e.clock.Now()) {
			t.Fatalf("new grant starts %v, want now", ng.StartsAt)
		}
	})

	t.Run("RevokeImmediateAndCancelsRenewal", func(t *testing.T) {
		e := newEnv(t, h)
		g := grant(e)
		ren, err := e.svc.Renew(e.ctx, g.ID, "alice", time.Hour, "more")
		if err != nil {
			t.Fatal(err)
		}
		e.refused(access.ErrMissing, "not visible to mallory", func() error { _, err := e.svc.Revoke(e.ctx, g.ID, "mallory", "x"); return err })
		rg, err := e.svc.Revoke(e.ctx, g.ID, "dave", "suspicious download volume")
		if err != nil {
			t.Fatal(err)
		}
		if rg.State != access.GrantRevoked || rg.ActiveAt(e.clock.Now()) || rg.EndedBy != "dave" {
			t.Fatalf("revoked grant %+v", rg)
		}
		if r, _ := e.store.Request(e.ctx, ren.ID); r.State != access.Cancelled {
			t.Fatalf("pending renewal of a revoked grant is %s", r.State)
		}
		// Revoking again changes nothing; renewing a revoked grant is refused.
		before := e.ledgerSize()
		if _, err := e.svc.Revoke(e.ctx, g.ID, "alice", "again"); err != nil || e.ledgerSize() != before {
			t.Fatalf("second revoke: %v", err)
		}
		e.refused(access.ErrConflict, "revoked", func() error { _, err := e.svc.Renew(e.ctx, g.ID, "alice", time.Hour, "x"); return err })
		// The beneficiary and an admin may revoke.
		g2 := grant(e)
		if _, err := e.svc.Revoke(e.ctx, g2.ID, "alice", "done early"); err != nil {
			t.Fatal(err)
		}
		g3 := grant(e)
		if _, err := e.svc.Revoke(e.ctx, g3.ID, "erin", "offboarding"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("BreakGlass", func(t *testing.T) {
		e := newEnv(t, h)
		e.refused(access.ErrForbidden, "does not allow break-glass", func() error {
			in := weightsRequest()
			in.BreakGlass = true
			_, err := e.svc.Create(e.ctx, in)
			return err
		})
		bg := access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "incident 99: eval pipeline down", BreakGlass: true}
		e.refused(access.ErrInvalid, "break_glass.max_duration", func() error {
			in := bg
			in.Duration = 2 * time.Hour
			_, err := e.svc.Create(e.ctx, in)
			return err
		})
		c, err := e.svc.Create(e.ctx, bg)
		if err != nil {
			t.Fatal(err)
		}
		if c.Grant == nil || !c.Grant.ActiveAt(e.clock.Now()) || c.Grant.ExpiresAt.Sub(c.Grant.StartsAt) != time.Hour || !c.Grant.BreakGlass {
			t.Fatalf("break-glass grant %+v", c.Grant)
		}
		if c.Request.PostReview != access.PostReviewPending {
			t.Fatalf("no after-the-fact review: %+v", c.Request)
		}
		// Approvers see it in their review queue.
		queue, err := e.svc.List(e.ctx, "carol", access.ScopeReview, access.RequestFilter{})
		if err != nil || len(queue) != 1 || queue[0].ID != c.Request.ID {
			t.Fatalf("carol's review queue: %+v %v", queue, err)
		}
		// The steward rejects it after the fact: the grant ends at once.
		if r := e.mustReview(c.Request.ID, "carol", access.Deny); r.PostReview != access.PostReviewRejected {
			t.Fatalf("post review %s", r.PostReview)
		}
		g, _ := e.store.Grant(e.ctx, c.Grant.ID)
		if g.State != access.GrantRevoked {
			t.Fatalf("rejected break-glass grant is %s", g.State)
		}
		codes := e.codes()
		if count(codes, "grant.break_glass") != 1 || count(codes, "request.post_review.rejected") != 1 || count(codes, "grant.revoke") != 1 {
			t.Fatalf("ledger %v", codes)
		}
		// An accepted one keeps its grant. (After the cooldown that the rejection started: see
		// Limits.)
		e.clock.Advance(e.pol.Settings().BreakGlassCooldown.Std())
		c2, err := e.svc.Create(e.ctx, bg)
		if err != nil {
			t.Fatal(err)
		}
		if r := e.mustReview(c2.Request.ID, "carol", access.Approve); r.PostReview != access.PostReviewAccepted {
			t.Fatalf("post review %s", r.PostReview)
		}
	})

	t.Run("ConditionsRefuse", func(t *testing.T) {
		e := newEnv(t, h)
		e.refused(access.ErrForbidden, "only researchers and security", func() error {
			_, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "bob", Role: "dataset-reader-eval-suite-v3", Reason: "curious"})
			return err
		})
	})

	t.Run("HostileInputRefused", func(t *testing.T) {
		e := newEnv(t, h)
		cases := []struct {
			in   access.CreateInput
			kind error
			want string
		}{
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: ""}, access.ErrInvalid, "requires a reason"},
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: strings.Repeat("x", 2000)}, access.ErrInvalid, "limit is 1024"},
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "a\x1b[2Jb"}, access.ErrInvalid, "control character"},
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "bad \xff utf8"}, access.ErrInvalid, "UTF-8"},
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-8", Reason: "x"}, access.ErrInvalid, `did you mean "weights-reader-frontier-7"`},
			{access.CreateInput{Requester: "alice", Role: "", Reason: "x"}, access.ErrInvalid, "role is required"},
			{access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Beneficiary: "../root", Reason: "x"}, access.ErrInvalid, "beneficiary"},
			{access.CreateInput{Requester: "Alice", Role: "weights-reader-frontier-7", Reason: "x"}, access.ErrInvalid, "requester"},
		}
		for _, c := range cases {
			e.refused(c.kind, c.want, func() error { _, err := e.svc.Create(e.ctx, c.in); return err })
		}
		e.refused(access.ErrMissing, "does not exist", func() error { _, err := e.review("req_nope", "bob", access.Approve); return err })
		e.refused(access.ErrInvalid, "decision", func() error { _, err := e.review("req_nope", "bob", "maybe"); return err })
	})

	t.Run("Visibility", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		for _, who := range []string{"alice", "bob", "carol", "dave", "erin"} {
			if _, err := e.svc.Get(e.ctx, req.ID, who); err != nil {
				t.Errorf("%s cannot see the request: %v", who, err)
			}
		}
		if _, err := e.svc.Get(e.ctx, req.ID, "mallory"); !errors.Is(err, access.ErrMissing) {
			t.Fatalf("an outsider sees the request: %v", err)
		}
		if _, err := e.svc.List(e.ctx, "alice", access.ScopeAll, access.RequestFilter{}); !errors.Is(err, access.ErrForbidden) {
			t.Fatalf("a researcher listed every request: %v", err)
		}
		if rs, err := e.svc.List(e.ctx, "erin", access.ScopeAll, access.RequestFilter{}); err != nil || len(rs) != 1 {
			t.Fatalf("auditor list: %v %v", rs, err)
		}
	})
}
