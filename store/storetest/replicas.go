package storetest

import (
	"context"
	"sync"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/store/sqlstore"
)

// hookedStore is a replica's real store with a hook run before it reads the newest checkpoint:
// the place where another replica's work lands between two steps of Ledger.Checkpoint.
type hookedStore struct {
	*sqlstore.DB
	mu           sync.Mutex
	beforeLatest func()
}

func (s *hookedStore) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	hook := s.beforeLatest
	s.beforeLatest = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return s.DB.LatestCheckpoint(ctx)
}

func appendEvents(t *testing.T, s *sqlstore.DB, codes ...string) {
	t.Helper()
	ctx := context.Background()
	for _, c := range codes {
		if err := s.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, event(c)); return err }); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 11, item 10 (invariant 5): replica A syncs its tree, then replica B appends and issues a
// checkpoint, then A reads that checkpoint, which covers entries A has not read yet. A must read
// up to it and check it, not report tampering (a 500 to whoever asked for the checkpoint).
func testCheckpointAcrossReplicas(t *testing.T, h Harness) {
	if h.Shared == nil {
		t.Fatal("the harness has no Shared: the two-replica tests need two handles on one database")
	}
	ctx := context.Background()
	open := h.Shared(t)
	a := &hookedStore{DB: open(t)}
	b := open(t)
	skey, _, err := audit.GenerateKey("rampart-replicas")
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, a.DB, "test.a1", "test.a2")
	la, err := audit.Open(ctx, audit.Options{Store: a, SigningKey: skey})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := audit.Open(ctx, audit.Options{Store: b, SigningKey: skey})
	if err != nil {
		t.Fatal(err)
	}
	if _, cp, err := la.Checkpoint(ctx); err != nil || cp.Size != 2 {
		t.Fatalf("first checkpoint: size %d, %v", cp.Size, err)
	}
	appendEvents(t, a.DB, "test.a3")
	a.mu.Lock()
	a.beforeLatest = func() {
		appendEvents(t, b, "test.b1", "test.b2")
		if _, cp, err := lb.Checkpoint(ctx); err != nil || cp.Size != 5 {
			t.Errorf("replica B's checkpoint: size %d, %v", cp.Size, err)
		}
	}
	a.mu.Unlock()
	signed, cp, err := la.Checkpoint(ctx)
	if err != nil {
		t.Fatalf("replica A reports a false alarm when replica B checkpointed in between: %v", err)
	}
	if cp.Size != 5 || len(signed) == 0 {
		t.Fatalf("replica A's checkpoint covers %d entries, want the 5 both replicas wrote", cp.Size)
	}
	// A replica that starts while another appends and checkpoints: the same race in Open, which
	// would refuse to start.
	c := &hookedStore{DB: open(t), beforeLatest: func() {
		appendEvents(t, b, "test.b3")
		if _, cp, err := lb.Checkpoint(ctx); err != nil || cp.Size != 6 {
			t.Errorf("replica B's checkpoint: size %d, %v", cp.Size, err)
		}
	}}
	if _, err := audit.Open(ctx, audit.Options{Store: c, SigningKey: skey}); err != nil {
		t.Fatalf("a replica starting while another checkpoints refuses to start: %v", err)
	}
	// All agree on the newest checkpoint, and all verify it.
	for name, l := range map[string]*audit.Ledger{"A": la, "B": lb} {
		_, latest, err := l.Latest(ctx)
		if err != nil || latest.Size != 6 {
			t.Fatalf("replica %s: newest checkpoint size %d, %v", name, latest.Size, err)
		}
	}
}

// A stored checkpoint gains its witnesses' cosignatures in place; there is nothing to update
// for a size never stored.
func testUpdateCheckpoint(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	if err := s.PutCheckpoint(ctx, 3, []byte("signed\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateCheckpoint(ctx, 3, []byte("signed\n— witness\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LatestCheckpoint(ctx); err != nil || string(got) != "signed\n— witness\n" {
		t.Fatalf("latest after update: %q %v", got, err)
	}
	if err := s.UpdateCheckpoint(ctx, 4, []byte("x\n")); err == nil {
		t.Fatal("updated a checkpoint that was never stored")
	}
}
