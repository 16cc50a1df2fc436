package authz_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

var epoch = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

type rig struct {
	t     *testing.T
	ctx   context.Context
	store *sqlstore.DB
	clock *clocktest.Clock
	svc   *access.Service
	ix    *authz.Index
}

func newRig(t *testing.T, s *sqlstore.DB) *rig {
	t.Helper()
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(epoch)
	r := &rig{t: t, ctx: context.Background(), store: s, clock: clock,
		svc: access.New(s, pol, access.Options{Now: clock.Now}),
		ix:  authz.New(s, pol, authz.Options{Now: clock.Now, MaxStaleness: 5 * time.Second})}
	r.svc.OnGrantChange(r.ix.Apply)
	if err := r.ix.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func sqliteStore(t *testing.T, path string) *sqlstore.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "r.db")
	}
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// grantAlice runs the demo's two-party approval and returns the grant.
func (r *rig) grantAlice(d time.Duration) access.Grant {
	r.t.Helper()
	c, err := r.svc.Create(r.ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "eval", Duration: d})
	if err != nil {
		r.t.Fatal(err)
	}
	for _, a := range []string{"bob", "dave"} {
		if _, err := r.svc.Review(r.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
			r.t.Fatal(err)
		}
	}
	gs, _ := r.store.ListGrants(r.ctx, access.GrantFilter{RequestID: c.Request.ID})
	if len(gs) != 1 {
		r.t.Fatalf("%d grants", len(gs))
	}
	return gs[0]
}

// advance moves the clock and syncs, as the server's sync loop would.
func (r *rig) advance(d time.Duration) {
	r.t.Helper()
	r.clock.Advance(d)
	if err := r.ix.Sync(r.ctx); err != nil {
		r.t.Fatal(err)
	}
}

var readWeights = authz.Query{Subject: "alice", Action: "read", Resource: "weights/frontier-7"}

func TestGrantLifecycleDecisions(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	d := r.ix.Check(readWeights)
	if d.Allowed || !strings.Contains(d.Reason, "request it with: rampart request create --role weights-reader-frontier-7") {
		t.Fatalf("before any grant: %+v", d)
	}
	g := r.grantAlice(time.Hour)
	// The committing process sees the grant at once, without a sync.
	d = r.ix.Check(readWeights)
	if !d.Allowed || d.GrantID != g.ID || !d.ExpiresAt.Equal(g.ExpiresAt) {
		t.Fatalf("after activation: %+v", d)
	}
	// The grant gives read, not write; and nothing to anyone else.
	if d := r.ix.Check(authz.Query{Subject: "alice", Action: "write", Resource: "weights/frontier-7"}); d.Allowed {
		t.Fatal("read grant allowed write")
	}
	if d := r.ix.Check(authz.Query{Subject: "bob", Action: "read", Resource: "weights/frontier-7"}); d.Allowed {
		t.Fatal("alice's grant allowed bob")
	}
	// Invariant 2: one nanosecond before expiry allowed, at expiry denied, with no sweep.
	r.advance(time.Hour - time.Nanosecond)
	if d := r.ix.Check(readWeights); !d.Allowed {
		t.Fatalf("just before expiry: %+v", d)
	}
	r.advance(time.Nanosecond)
	d = r.ix.Check(readWeights)
	if d.Allowed || !strings.Contains(d.Reason, "expired at") {
		t.Fatalf("at expiry: %+v", d)
	}
}

func TestRevocationIsImmediate(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	g := r.grantAlice(time.Hour)
	if _, err := r.svc.Revoke(r.ctx, g.ID, "dave", "test"); err != nil {
		t.Fatal(err)
	}
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatalf("allowed after revocation: %+v", d)
	}
}

func TestStandingBindingsAndCatalogue(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	d := r.ix.Check(authz.Query{Subject: "alice", Action: "exec", Resource: "namespaces/research-sandbox"})
	if !d.Allowed || d.Binding != "researchers-sandbox" || !d.ExpiresAt.IsZero() {
		t.Fatalf("standing binding: %+v", d)
	}
	if d := r.ix.Check(authz.Query{Subject: "bob", Action: "exec", Resource: "namespaces/research-sandbox"}); d.Allowed {
		t.Fatal("non-member allowed by a group binding")
	}
	for _, res := range []string{"weights/frontier-7/../frontier-8", "namespaces/research-sandbox/", "NAMESPACES/research-sandbox", "weights/*", ""} {
		if d := r.ix.Check(authz.Query{Subject: "alice", Action: "exec", Resource: res}); d.Allowed || !strings.Contains(d.Reason, "not a resource") {
			t.Fatalf("resource %q: %+v", res, d)
		}
	}
}

func TestBatch(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	r.grantAlice(time.Hour)
	ds := r.ix.CheckBatch([]authz.Query{readWeights, {Subject: "alice", Action: "delete", Resource: "weights/frontier-7"}, {Subject: "alice", Action: "read", Resource: "namespaces/research-sandbox"}})
	if !ds[0].Allowed || ds[1].Allowed || !ds[2].Allowed {
		t.Fatalf("batch: %+v", ds)
	}
}

func TestFailsClosedUntilLoaded(t *testing.T) {
	s := sqliteStore(t, "")
	pol, _ := policy.Load(demo.Policy())
	ix := authz.New(s, pol, authz.Options{})
	d := ix.Check(authz.Query{Subject: "alice", Action: "exec", Resource: "namespaces/research-sandbox"})
	if d.Allowed || !d.Unavailable || !strings.Contains(d.Reason, "not loaded") {
		t.Fatalf("unloaded index: %+v", d)
	}
}

// Invariant 6 with a real outage: the store goes away, decisions keep their last known state
// only until the staleness bound, then deny.
func outage(t *testing.T, s *sqlstore.DB, cut func()) {
	r := newRig(t, s)
	r.grantAlice(time.Hour)
	if err := r.ix.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	cut()
	if err := r.ix.Sync(r.ctx); err == nil {
		t.Fatal("sync succeeded against a dead store")
	}
	if d := r.ix.Check(readWeights); !d.Allowed {
		t.Fatalf("denied within the staleness bound: %+v", d)
	}
	r.clock.Advance(6 * time.Second)
	d := r.ix.Check(readWeights)
	if d.Allowed || !d.Unavailable || !strings.Contains(d.Reason, "failing closed") {
		t.Fatalf("stale index still decides: %+v", d)
	}
	// Standing bindings deny too: nothing is allowed by default.
	if d := r.ix.Check(authz.Query{Subject: "alice", Action: "exec", Resource: "namespaces/research-sandbox"}); d.Allowed {
		t.Fatal("standing binding allowed while failing closed")
	}
	if err := r.ix.Health(); err == nil {
		t.Fatal("health reports ok while stale")
	}
}

func TestOutageSQLite(t *testing.T) {
	s := sqliteStore(t, "")
	outage(t, s, func() { s.Close() })
}

func TestOutagePostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.NewProxy(t, testenv.PostgresHostPort(t, dsn))
	s, err := postgres.Open(context.Background(), testenv.ViaProxy(t, dsn, p))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	outage(t, s, p.Cut)
}

// Two replicas over one database: B learns of A's grant and revocation by syncing.
func TestOtherReplicaSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := newRig(t, sqliteStore(t, path))
	b := newRig(t, sqliteStore(t, path))
	b.clock = a.clock
	g := a.grantAlice(time.Hour)
	if d := b.ix.Check(readWeights); d.Allowed {
		t.Fatal("replica B allowed before syncing")
	}
	if err := b.ix.Sync(b.ctx); err != nil {
		t.Fatal(err)
	}
	if d := b.ix.Check(readWeights); !d.Allowed {
		t.Fatalf("replica B after sync: %+v", d)
	}
	if _, err := a.svc.Revoke(a.ctx, g.ID, "alice", "done"); err != nil {
		t.Fatal(err)
	}
	if err := b.ix.Sync(b.ctx); err != nil {
		t.Fatal(err)
	}
	if d := b.ix.Check(readWeights); d.Allowed {
		t.Fatal("replica B still allows after the revocation synced")
	}
}

// An older version of a grant never overwrites a newer one.
func TestStaleUpdateIgnored(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	g := r.grantAlice(time.Hour)
	revoked := g
	revoked.State, revoked.Version = access.GrantRevoked, g.Version+10
	r.ix.Apply([]access.Grant{revoked})
	r.ix.Apply([]access.Grant{g}) // a late, older copy
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatal("an older active copy resurrected a revoked grant")
	}
}

func TestPolicyChangeApplies(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	r.grantAlice(time.Hour)
	files, _ := policy.ReadFS(demo.Policy())
	for i := range files {
		if files[i].Name == "roles.yaml" {
			files[i].Data = []byte(strings.Replace(string(files[i].Data), "actions: [read]\n    resources: [weights/frontier-7]", "actions: [list]\n    resources: [weights/frontier-7]", 1))
		}
	}
	pol, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	r.ix.SetPolicy(pol)
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatal("a role narrowed by policy still allows the old action")
	}
}

// One transaction may change more grants than a sync page holds, all under one version; the
// sync must still see every one of them, and finish.
func TestSyncManyGrantsOneVersion(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	const n = 6000
	err := r.store.Update(r.ctx, func(tx access.Tx) error {
		seq, err := tx.Append(r.ctx, audit.Event{Code: "test.bulk", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create", Time: epoch, Actor: "tester"})
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			g := access.Grant{ID: fmt.Sprintf("grt_bulk%012d", i), RequestID: "req_bulk", Role: "weights-reader-frontier-7",
				Subject: fmt.Sprintf("u%d", i), StartsAt: epoch, ExpiresAt: epoch.Add(time.Hour), State: access.GrantActive, Version: seq}
			if err := tx.InsertGrant(r.ctx, g); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(r.ctx, 20*time.Second)
	defer cancel()
	if err := r.ix.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.ix.Stats().ActiveGrants; got != n {
		t.Fatalf("index holds %d grants after sync, want %d", got, n)
	}
	if d := r.ix.Check(authz.Query{Subject: fmt.Sprintf("u%d", n-1), Action: "read", Resource: "weights/frontier-7"}); !d.Allowed {
		t.Fatalf("last bulk grant not applied: %+v", d)
	}
}

// A halted index (the ledger behind it raised a tamper alarm) denies everything for good, saying
// why, even though it is fresh; syncing does not lift it.
func TestHaltDeniesForGood(t *testing.T) {
	r := newRig(t, sqliteStore(t, ""))
	r.grantAlice(time.Hour)
	if d := r.ix.Check(readWeights); !d.Allowed {
		t.Fatalf("before the halt: %+v", d)
	}
	r.ix.Halt(errors.New("ledger raised a tamper alarm"))
	r.ix.Halt(errors.New("a second reason is ignored"))
	if err := r.ix.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []authz.Query{readWeights, {Subject: "alice", Action: "exec", Resource: "namespaces/research-sandbox"}} {
		d := r.ix.Check(q)
		if d.Allowed || !d.Unavailable || !strings.Contains(d.Reason, "tamper alarm") {
			t.Fatalf("halted index decided %+v for %+v", d, q)
		}
	}
	if err := r.ix.Health(); err == nil || strings.Contains(err.Error(), "second") {
		t.Fatalf("health after the halt: %v", err)
	}
}
