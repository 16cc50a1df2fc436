package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
)

// testDisable: disabling a person ends everything of theirs at once and enabling revives
// nothing (invariant 8, issue 11 item 5), on the real store: before the fix, re-enabling restored
// every session, refresh token and API token from before, and a disabled person's grants and
// standing bindings still allowed. Two decision indexes over one store stand for two replicas.
func testDisable(t *testing.T, h Harness) {
	e := newEnv(t, h)
	tokens := &identity.Tokens{Store: e.store, Now: e.clock.Now, CacheTTL: -1, Users: e.store}
	ss := &identity.Sessions{Store: e.store, Now: e.clock.Now, CacheTTL: -1, Tokens: tokens}
	here := authz.New(e.store, e.pol, authz.Options{Now: e.clock.Now})
	other := authz.New(e.store, e.pol, authz.Options{Now: e.clock.Now})
	e.svc.OnGrantChange(here.Apply)
	for _, ix := range []*authz.Index{here, other} {
		if err := ix.Load(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	// alice: a session, a token bound to it, an unbound token (as the bootstrap issues), an
	// active grant, a pending request of hers and an approval of someone else's request.
	iss, err := ss.Create(e.ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: e.clock.Now(), Event: signInEvent("alice")})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ss.Verify(e.ctx, iss.AccessToken)
	bound, _, err := tokens.Mint(e.ctx, identity.MintInput{Caller: p})
	if err != nil {
		t.Fatal(err)
	}
	unbound, _, err := tokens.Issue(e.ctx, "alice", identity.KindUser, "", "operator", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	granted := e.create(weightsRequest())
	e.mustReview(granted.ID, "bob", access.Approve)
	g := e.mustReview(granted.ID, "dave", access.Approve)
	pending := e.create(access.CreateInput{Requester: "alice", Role: "weights-writer-frontier-7", Reason: "checkpoint", Duration: time.Hour})
	q := func(res, act string) authz.Query { return authz.Query{Subject: "alice", Action: act, Resource: res} }
	for _, ix := range []*authz.Index{here, other} {
		if err := ix.Sync(e.ctx); err != nil {
			t.Fatal(err)
		}
		if d := ix.Check(q("weights/frontier-7", "read")); !d.Allowed || d.GrantID != g.GrantID {
			t.Fatalf("before: %+v", d)
		}
		if d := ix.Check(q("namespaces/research-sandbox", "read")); !d.Allowed {
			t.Fatalf("standing binding before: %+v", d)
		}
	}

	// Disable alice: her credentials go in one transaction with the entry...
	before := e.ledgerSize()
	d, err := ss.Disable(e.ctx, "alice", "erin", "left the company")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Sessions) != 1 || d.Sessions[0] != iss.Session.ID || d.Tokens != 2 || d.Already {
		t.Fatalf("disable ended %+v; want 1 session and 2 tokens", d)
	}
	if n := e.ledgerSize() - before; n != 1 {
		t.Fatalf("disabling wrote %d entries, want 1 (user.disable)", n)
	}
	// ...the other replica denies her at its next sync, before any grant is revoked...
	if err := other.Sync(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, qq := range []authz.Query{q("weights/frontier-7", "read"), q("namespaces/research-sandbox", "read")} {
		if d := other.Check(qq); d.Allowed || !strings.Contains(d.Reason, "disabled") {
			t.Fatalf("another replica after its sync: %+v", d)
		}
	}
	if gs, err := other.ActiveGrants(); err != nil || len(gs) != 0 {
		t.Fatalf("another replica still materialises %+v %v", gs, err)
	}
	// ...and her grants, requests and approvals go in one transaction with their entries.
	before = e.ledgerSize()
	rev, err := e.svc.RevokeSubject(e.ctx, "alice", "erin", "alice was disabled")
	if err != nil {
		t.Fatal(err)
	}
	if len(rev.Grants) != 1 || rev.Grants[0].ID != g.GrantID || len(rev.Requests) != 1 || rev.Requests[0] != pending.ID || len(rev.Approvals) != 0 {
		t.Fatalf("RevokeSubject: %s %+v", rev, rev)
	}
	codes := e.codes()[before:]
	if count(codes, "grant.revoke") != 1 || count(codes, "request.cancel") != 1 || len(codes) != 2 {
		t.Fatalf("entries of the revocation: %v", codes)
	}
	if again, err := e.svc.RevokeSubject(e.ctx, "alice", "erin", "again"); err != nil || len(again.Grants)+len(again.Requests)+len(again.Approvals) != 0 {
		t.Fatalf("a second RevokeSubject: %+v %v", again, err)
	}
	if err := here.Sync(e.ctx); err != nil {
		t.Fatal(err)
	}

	// Enabling lets her sign in again, and nothing more.
	if err := ss.Enable(e.ctx, "alice", "erin"); err != nil {
		t.Fatal(err)
	}
	for _, ix := range []*authz.Index{here, other} {
		if err := ix.Sync(e.ctx); err != nil {
			t.Fatal(err)
		}
		if d := ix.Check(q("weights/frontier-7", "read")); d.Allowed {
			t.Fatalf("her grant came back with her: %+v", d)
		}
		if d := ix.Check(q("namespaces/research-sandbox", "read")); !d.Allowed {
			t.Fatalf("enabled, her standing binding (policy, not a credential) applies again: %+v", d)
		}
	}
	if _, err := ss.Verify(e.ctx, iss.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("her session came back: %v", err)
	}
	if _, err := ss.Refresh(e.ctx, iss.RefreshToken, "192.0.2.10", "fp", nil); err == nil {
		t.Fatal("her refresh token came back")
	}
	for _, sec := range []string{bound, unbound} {
		if _, err := tokens.Verify(e.ctx, sec); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("a token came back: %v", err)
		}
	}
	if _, err := ss.Create(e.ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: e.clock.Now(), Event: signInEvent("alice")}); err != nil {
		t.Fatalf("enabled, she may sign in: %v", err)
	}
	// Enabling someone who is not disabled is refused, and records nothing.
	if err := ss.Enable(e.ctx, "bob", "erin"); !errors.Is(err, identity.ErrSessionNotFound) {
		t.Fatalf("enable bob: %v", err)
	}

	// A person disabled by an older server (flag only) revives nothing either: Enable revokes
	// what is left.
	c, _ := ss.Create(e.ctx, identity.NewSession{Subject: "carol", Method: "oidc", AuthTime: e.clock.Now(), Event: signInEvent("carol")})
	if _, err := e.store.SQL().ExecContext(e.ctx, e.store.Rebind(`UPDATE users SET disabled_at = ?, disabled_by = 'erin' WHERE subject = 'carol'`), e.clock.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := ss.Enable(e.ctx, "carol", "erin"); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Verify(e.ctx, c.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("a session from before an old-style disable came back: %v", err)
	}

	// An approver disabled: bob's approval of a pending request no longer counts, so dave's
	// alone does not activate it; carol's, the owner step again, does.
	r := e.create(weightsRequest())
	e.mustReview(r.ID, "bob", access.Approve)
	if _, err := ss.Disable(e.ctx, "bob", "erin", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	rev, err = e.svc.RevokeSubject(e.ctx, "bob", "erin", "bob was disabled")
	if err != nil || len(rev.Approvals) != 1 || rev.Approvals[0] != r.ID {
		t.Fatalf("bob's approvals: %+v %v", rev, err)
	}
	if got := e.mustReview(r.ID, "dave", access.Approve); got.State != access.Pending {
		t.Fatalf("a disabled approver's approval still counted: %+v", got)
	}
	if got := e.mustReview(r.ID, "carol", access.Approve); got.State != access.Approved {
		t.Fatalf("after carol: %+v", got)
	}
}
