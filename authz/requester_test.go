package authz_test

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
)

// A query narrowed to one requester counts only that requester's grants (the admission webhook
// asks it so that a workload's grant is used only by what its requester deploys), after a load
// from the store as well as from the in-process notice.
func TestRequestedByCountsOnlyThatRequestersGrants(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	const evaluator = "k8s:dev/research/evaluator"
	c, err := r.svc.Create(r.ctx, access.CreateInput{Requester: "alice", Beneficiary: evaluator, Role: "weights-reader-frontier-7", Reason: "eval 4411", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "dave"} {
		if _, err := r.svc.Review(r.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
			t.Fatal(err)
		}
	}
	gs, _ := r.store.ListGrants(r.ctx, access.GrantFilter{RequestID: c.Request.ID})
	if len(gs) != 1 || gs[0].Requester != "alice" {
		t.Fatalf("the grant does not name its requester: %+v", gs)
	}
	alices := gs[0]
	q := authz.Query{Subject: evaluator, Action: "read", Resource: "weights/frontier-7"}
	check := func(by string) authz.Decision { q := q; q.RequestedBy = by; return r.ix.Check(q) }
	for _, loaded := range []bool{false, true} {
		if loaded {
			if err := r.ix.Load(r.ctx); err != nil {
				t.Fatal(err)
			}
		}
		if d := check(""); !d.Allowed || d.Requester != "alice" {
			t.Fatalf("loaded %v, unnarrowed: %+v", loaded, d)
		}
		if d := check("alice"); !d.Allowed || d.GrantID != alices.ID {
			t.Fatalf("loaded %v, alice: %+v", loaded, d)
		}
		d := check("mallory")
		if d.Allowed || !strings.Contains(d.Reason, "no active grant requested by mallory") {
			t.Fatalf("loaded %v, mallory: %+v", loaded, d)
		}
	}
	// A second grant of the same workload, requested by someone else and lasting longer, is
	// the one an unnarrowed query names; each requester still finds their own.
	other := access.Grant{ID: "grt_carolcarolcarolc", RequestID: "req_carol", Requester: "carol", Role: alices.Role, Subject: evaluator,
		StartsAt: alices.StartsAt, ExpiresAt: alices.ExpiresAt.Add(time.Hour), State: access.GrantActive, Version: alices.Version + 1,
		Definition: alices.Definition, RoleDigest: alices.RoleDigest}
	if err := r.store.Update(r.ctx, func(tx access.Tx) error { return tx.InsertGrant(r.ctx, other) }); err != nil {
		t.Fatal(err)
	}
	if err := r.ix.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	if d := check(""); d.GrantID != other.ID || d.Requester != "carol" {
		t.Fatalf("unnarrowed, two grants: %+v", d)
	}
	if d := check("alice"); d.GrantID != alices.ID || d.Requester != "alice" {
		t.Fatalf("alice, two grants: %+v", d)
	}
	if d := check("carol"); d.GrantID != other.ID {
		t.Fatalf("carol, two grants: %+v", d)
	}
	// Standing bindings count whoever asks: nobody requested them.
	if d := r.ix.Check(authz.Query{Subject: "alice", Action: "exec", Resource: "namespaces/research-sandbox", RequestedBy: "mallory"}); !d.Allowed || d.Binding == "" {
		t.Fatalf("standing binding, narrowed: %+v", d)
	}
}
