package authz_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
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
	"rampart.dev/rampart/store/sqlstore"
)

// notices holds what the workflow's commit listener was told, for the test to deliver late:
// access.Service runs its listeners after the commit, outside the store's lock, so a notice can
// reach the index after a Sync has already read a later change of the same grant.
type notices struct {
	mu   sync.Mutex
	list [][]access.Grant
}

func (n *notices) listen(gs []access.Grant) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.list = append(n.list, slices.Clone(gs))
}

// lateRig is a workflow and an index whose listener only records notices.
func lateRig(t *testing.T, s *sqlstore.DB) (*rig, *notices) {
	t.Helper()
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(epoch)
	r := &rig{t: t, ctx: context.Background(), store: s, clock: clock,
		svc: access.New(s, pol, access.Options{Now: clock.Now}),
		ix:  authz.New(s, pol, authz.Options{Now: clock.Now, MaxStaleness: time.Hour})}
	n := &notices{}
	r.svc.OnGrantChange(n.listen)
	if err := r.ix.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	return r, n
}

// The exact race of the code review (invariant 2): the grant is activated and revoked; the
// periodic Sync reads the revocation and, its cursor past it, drops the grant's record; then the
// activation's notice arrives. It must not bring the grant back.
func lateActivation(t *testing.T, s *sqlstore.DB) {
	r, n := lateRig(t, s)
	g := r.grantAlice(time.Hour)
	if _, err := r.svc.Revoke(r.ctx, g.ID, "dave", "leaked token"); err != nil {
		t.Fatal(err)
	}
	if len(n.list) != 2 || n.list[0][0].State != access.GrantActive || n.list[1][0].State != access.GrantRevoked {
		t.Fatalf("notices: %+v", n.list)
	}
	if err := r.ix.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatalf("allowed after the sync read the revocation: %+v", d)
	}
	r.ix.Apply(n.list[0]) // the activation's notice, late
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatalf("a late notice of the activation resurrected the revoked grant %s: %+v", g.ID, d)
	}
	r.ix.Apply(n.list[1])
	if d := r.ix.Check(readWeights); d.Allowed {
		t.Fatalf("allowed after both notices: %+v", d)
	}
	// A fresh index (a restart) that loaded after the revocation ignores the late notice too.
	fresh := authz.New(s, r.ix.Policy(), authz.Options{Now: r.clock.Now})
	if err := fresh.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	fresh.Apply(n.list[0])
	if d := fresh.Check(readWeights); d.Allowed {
		t.Fatalf("a late notice resurrected the grant in a freshly loaded index: %+v", d)
	}
}

func TestLateNoticeCannotResurrectSQLite(t *testing.T) { lateActivation(t, sqliteStore(t, "")) }

func TestLateNoticeCannotResurrectPostgres(t *testing.T) {
	s, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	lateActivation(t, s)
}

// model is the reference: the committed versions of each grant, and the newest version of each
// that the index has been given (by a notice, a Sync or a Load). The index must answer exactly
// as that newest version says: never from an older one it has already moved past.
type model struct {
	committed map[string][]access.Grant // by id, in version order
	seen      map[string]int64
}

func (m *model) latest(id string) access.Grant {
	vs := m.committed[id]
	return vs[len(vs)-1]
}

func (m *model) at(id string, v int64) (access.Grant, bool) {
	var out access.Grant
	found := false
	for _, g := range m.committed[id] {
		if g.Version <= v {
			out, found = g, true
		}
	}
	return out, found
}

// expected is the (id, expiry) of every grant the index should hold active now.
func (m *model) expected(now time.Time) []string {
	var out []string
	for id, v := range m.seen {
		if g, ok := m.at(id, v); ok && g.State == access.GrantActive && !now.Before(g.StartsAt) && now.Before(g.ExpiresAt) {
			out = append(out, id+"@"+strconv.FormatInt(g.ExpiresAt.UnixNano(), 10))
		}
	}
	slices.Sort(out)
	return out
}

func actual(ix *authz.Index, t *testing.T) []string {
	gs, err := ix.ActiveGrants()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.ID + "@" + strconv.FormatInt(g.ExpiresAt.UnixNano(), 10)
	}
	slices.Sort(out)
	return out
}

// TestIndexInterleavingsAgainstModel commits random grant changes to a real store (activations,
// renewals that move the end, revocations, expiries) and delivers their notices late, out of
// order and twice, interleaved at random with Syncs and Loads; after every step the index must
// hold exactly what the model's newest seen version of each grant says. RAMPART_INDEX_RACE_SEEDS
// sets the number of random histories (default 60).
func TestIndexInterleavingsAgainstModel(t *testing.T) {
	seeds := 60
	if s, err := strconv.Atoi(os.Getenv("RAMPART_INDEX_RACE_SEEDS")); err == nil && s > 0 {
		seeds = s
	}
	for seed := range seeds {
		interleave(t, uint64(seed), 60)
		if t.Failed() {
			return
		}
	}
}

func interleave(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	s := sqliteStore(t, "")
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(epoch)
	ix := authz.New(s, pol, authz.Options{Now: clock.Now, MaxStaleness: time.Hour})
	if err := ix.Load(ctx); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x1d3))
	m := &model{committed: map[string][]access.Grant{}, seen: map[string]int64{}}
	var pending, delivered []access.Grant
	var log []string
	commit := func(what string, g access.Grant) {
		err := s.Update(ctx, func(tx access.Tx) error {
			seq, err := tx.Append(ctx, audit.Event{Code: "test." + what, Class: audit.ClassUserAccessManagement, Activity: audit.ActivityUpdate,
				ActivityName: "Update", Time: clock.Now(), Actor: "tester"})
			if err != nil {
				return err
			}
			g.Version = seq
			if what == "activate" {
				return tx.InsertGrant(ctx, g)
			}
			return tx.UpdateGrant(ctx, g)
		})
		if err != nil {
			t.Fatal(err)
		}
		gs, _ := s.ListGrants(ctx, access.GrantFilter{RequestID: g.RequestID})
		g = gs[0]
		m.committed[g.ID] = append(m.committed[g.ID], g)
		pending = append(pending, g)
		log = append(log, fmt.Sprintf("%s %s v%d", what, g.ID, g.Version))
	}
	active := func() []string {
		var ids []string
		for id := range m.committed {
			if m.latest(id).State == access.GrantActive {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		return ids
	}
	for step := 0; step < steps; step++ {
		switch op := rng.IntN(10); {
		case op < 2 || len(m.committed) == 0: // activate a new grant (its own subject)
			n := len(m.committed)
			g := access.Grant{ID: fmt.Sprintf("grt_%016d", n), RequestID: fmt.Sprintf("req_%016d", n), Role: "weights-reader-frontier-7",
				Subject: fmt.Sprintf("u%d", n), StartsAt: epoch.Add(-time.Hour), ExpiresAt: epoch.Add(time.Duration(1+rng.IntN(5)) * time.Hour), State: access.GrantActive}
			commit("activate", g)
		case op < 4: // renew, revoke or expire an active grant
			ids := active()
			if len(ids) == 0 {
				continue
			}
			g := m.latest(ids[rng.IntN(len(ids))])
			switch rng.IntN(3) {
			case 0:
				g.ExpiresAt = g.ExpiresAt.Add(time.Hour)
				commit("renew", g)
			case 1:
				g.State, g.EndedAt, g.EndedBy, g.EndReason = access.GrantRevoked, clock.Now(), "dave", "test"
				commit("revoke", g)
			default:
				g.State, g.EndedAt = access.GrantExpired, clock.Now()
				commit("expire", g)
			}
		case op < 7 && len(pending) > 0: // a notice arrives, in any order
			i := rng.IntN(len(pending))
			g := pending[i]
			pending = append(pending[:i], pending[i+1:]...)
			delivered = append(delivered, g)
			ix.Apply([]access.Grant{g})
			m.seen[g.ID] = max(m.seen[g.ID], g.Version)
			log = append(log, fmt.Sprintf("notice %s v%d", g.ID, g.Version))
		case op == 7 && len(delivered) > 0: // an old notice again
			g := delivered[rng.IntN(len(delivered))]
			ix.Apply([]access.Grant{g})
			m.seen[g.ID] = max(m.seen[g.ID], g.Version)
			log = append(log, fmt.Sprintf("notice again %s v%d", g.ID, g.Version))
		case op == 8 || op == 9:
			if op == 8 {
				if err := ix.Sync(ctx); err != nil {
					t.Fatal(err)
				}
				log = append(log, "sync")
			} else {
				if err := ix.Load(ctx); err != nil {
					t.Fatal(err)
				}
				log = append(log, "load")
			}
			for id := range m.committed {
				m.seen[id] = m.latest(id).Version
			}
		default:
			continue
		}
		if want, got := m.expected(clock.Now()), actual(ix, t); !slices.Equal(want, got) {
			t.Errorf("seed %d, after step %d: the index holds %v, the model %v\nhistory:\n%s", seed, step, got, want, fmt.Sprint(log))
			return
		}
	}
}

// hookedSource is the real store with a hook run once, right after Load has read the ledger
// size and before it lists the active grants: it commits changes in that gap, as another
// goroutine or replica could.
type hookedSource struct {
	*sqlstore.DB
	once sync.Once
	hook func()
}

func (h *hookedSource) LedgerSize(ctx context.Context) (int64, error) {
	n, err := h.DB.LedgerSize(ctx)
	h.once.Do(h.hook)
	return n, err
}

// A grant renewed and then revoked while Load reads: the renewal's notice is newer than the
// size Load read, so only Load's catch-up with the change feed (which sees the revocation)
// keeps it from resurrecting the grant.
func TestLoadCatchesUpWithChangesWhileItReads(t *testing.T) {
	ctx := context.Background()
	s := sqliteStore(t, "")
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(epoch)
	g := access.Grant{ID: "grt_aaaaaaaaaaaaaaaa", RequestID: "req_aaaaaaaaaaaaaaaa", Role: "weights-reader-frontier-7", Subject: "alice",
		StartsAt: epoch, ExpiresAt: epoch.Add(time.Hour), State: access.GrantActive}
	save := func(g access.Grant, insert bool) access.Grant {
		err := s.Update(ctx, func(tx access.Tx) error {
			seq, err := tx.Append(ctx, audit.Event{Code: "test.grant", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityUpdate,
				ActivityName: "Update", Time: epoch, Actor: "tester"})
			if err != nil {
				return err
			}
			g.Version = seq
			if insert {
				return tx.InsertGrant(ctx, g)
			}
			return tx.UpdateGrant(ctx, g)
		})
		if err != nil {
			t.Fatal(err)
		}
		gs, _ := s.ListGrants(ctx, access.GrantFilter{RequestID: g.RequestID})
		return gs[0]
	}
	g = save(g, true)
	var renewed access.Grant
	src := &hookedSource{DB: s, hook: func() {
		r := g
		r.ExpiresAt = epoch.Add(2 * time.Hour)
		renewed = save(r, false)
		rv := renewed
		rv.State, rv.EndedAt, rv.EndedBy, rv.EndReason = access.GrantRevoked, epoch, "dave", "test"
		save(rv, false)
	}}
	ix := authz.New(src, pol, authz.Options{Now: clock.Now})
	if err := ix.Load(ctx); err != nil {
		t.Fatal(err)
	}
	ix.Apply([]access.Grant{renewed}) // the renewal's notice, late
	if d := ix.Check(readWeights); d.Allowed {
		t.Fatalf("a notice of a change made while the index loaded resurrected the grant: %+v", d)
	}
}
