package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/store/sqlstore"
)

// watchedLedger opens a ledger over s that hears of every append s makes, as the server wires
// them, and counts the alarms it raises.
func watchedLedger(t *testing.T, s *sqlstore.DB, skey string, alarms *[]*audit.TamperError) *audit.Ledger {
	t.Helper()
	var mu sync.Mutex
	l, err := audit.Open(context.Background(), audit.Options{Store: s, SigningKey: skey, OnAlarm: func(e *audit.TamperError) {
		mu.Lock()
		defer mu.Unlock()
		*alarms = append(*alarms, e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	s.WatchAppends(l)
	return l
}

func entryText(t *testing.T, s *sqlstore.DB, seq int64) string {
	t.Helper()
	var text string
	if err := s.SQL().QueryRowContext(context.Background(), s.Rebind(`SELECT entry FROM ledger WHERE seq = ?`), seq).Scan(&text); err != nil {
		t.Fatal(err)
	}
	return text
}

func setEntry(t *testing.T, s *sqlstore.DB, seq int64, text string) {
	t.Helper()
	if _, err := s.SQL().ExecContext(context.Background(), s.Rebind(`UPDATE ledger SET entry = ? WHERE seq = ?`), text, seq); err != nil {
		t.Fatal(err)
	}
}

// Issue 11, item 9 (invariant 5): someone who can write the database edits an entry appended
// since the last checkpoint (the approvers of a grant) before the server signs. The server
// compares what it would sign with the hashes of the entries it appended itself: it refuses to
// sign, raises the alarm once, and refuses every later change.
func testUnsignedTailForgery(t *testing.T, h Harness) {
	e := newEnv(t, h)
	skey, _, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	var alarms []*audit.TamperError
	l := watchedLedger(t, e.store, skey, &alarms)
	req := e.create(weightsRequest())
	e.mustReview(req.ID, "bob", access.Approve)
	_, before, err := l.Checkpoint(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	req2 := e.create(weightsRequest())
	e.mustReview(req2.ID, "bob", access.Approve)
	e.mustReview(req2.ID, "dave", access.Approve)
	activation := e.ledgerSize() - 1
	text := entryText(t, e.store, activation)
	if !strings.Contains(text, `"grant.activate"`) || !strings.Contains(text, `"bob"`) {
		t.Fatalf("entry %d is not the activation approved by bob: %s", activation, text)
	}
	// The forgery: the activation now says carol approved, not bob.
	setEntry(t, e.store, activation, strings.ReplaceAll(text, `"bob"`, `"carol"`))

	_, cp, err := l.Checkpoint(e.ctx)
	var te *audit.TamperError
	if !errors.As(err, &te) {
		t.Fatalf("the server signed a checkpoint of size %d over an entry edited in the database: %v", cp.Size, err)
	}
	if !strings.Contains(te.Reason, "was changed in the database") {
		t.Fatalf("alarm says %q", te.Reason)
	}
	if len(alarms) != 1 || l.Alarm() == nil {
		t.Fatalf("%d alarms raised, Alarm() = %v; want exactly one", len(alarms), l.Alarm())
	}
	stored, err := e.store.LatestCheckpoint(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	newest, err := audit.ParseCheckpoint(openedText(t, stored))
	if err != nil || newest.Size != before.Size {
		t.Fatalf("newest stored checkpoint has size %d (%v), want the one from before the forgery (%d)", newest.Size, err, before.Size)
	}
	// Once raised, the alarm stays: no checkpoint, no change.
	if _, _, err := l.Checkpoint(e.ctx); !errors.As(err, &te) {
		t.Fatalf("a second checkpoint was signed after the alarm: %v", err)
	}
	if _, err := e.svc.Create(e.ctx, weightsRequest()); err == nil || !strings.Contains(err.Error(), "tamper alarm") {
		t.Fatalf("a change was accepted after the tamper alarm: %v", err)
	}
	if len(alarms) != 1 {
		t.Fatalf("%d alarms, want the first one only", len(alarms))
	}
}

// openedText returns the text of a signed note without checking its signatures.
func openedText(t *testing.T, signed []byte) []byte {
	t.Helper()
	i := strings.LastIndex(string(signed), "\n\n")
	if i < 0 {
		t.Fatalf("not a signed note: %q", signed)
	}
	return signed[:i+1]
}

// The same server under ordinary load never raises a false alarm: writers append (and some roll
// back) while checkpoints are signed, and every checkpoint verifies.
func testUnsignedTailNoFalseAlarm(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	skey, vkey, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	var alarms []*audit.TamperError
	l := watchedLedger(t, s, skey, &alarms)
	const writers, each = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*each+200)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := s.Update(ctx, func(tx access.Tx) error {
					if _, err := tx.Append(ctx, event("test.load")); err != nil {
						return err
					}
					if i%5 == 4 {
						return errRolledBack
					}
					return nil
				})
				if err != nil && !errors.Is(err, errRolledBack) {
					errs <- err
				}
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	v, _ := audit.NewVerifier(vkey)
	for stop := false; !stop; {
		select {
		case <-done:
			stop = true
		default:
		}
		signed, _, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatalf("checkpoint under load: %v", err)
		}
		if _, err := audit.OpenCheckpoint(signed, v); err != nil {
			t.Fatal(err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(writers * each * 4 / 5); cp.Size != want || len(alarms) != 0 {
		t.Fatalf("final checkpoint size %d (want %d), %d alarms", cp.Size, want, len(alarms))
	}
}

var errRolledBack = errors.New("rolled back on purpose")

// A checkpoint never covers an entry of this process whose commit it has not heard of yet: the
// window between the commit and the notice is where a forgery could otherwise slip in.
func testUnsignedTailInFlight(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	skey, _, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, s, "test.one", "test.two")
	var alarms []*audit.TamperError
	l := watchedLedger(t, s, skey, &alarms)
	// Entry 2 is committed (by a handle without a watcher, standing in for the instant between
	// the commit and the notice), and this process says it is its own, still in flight.
	if err := l.Appending(2); err != nil {
		t.Fatal(err)
	}
	s.WatchAppends(nil)
	appendEvents(t, s, "test.three")
	s.WatchAppends(l)
	if _, cp, err := l.Checkpoint(ctx); err != nil || cp.Size != 2 {
		t.Fatalf("checkpoint covers %d entries (%v); want 2, stopping before the entry in flight", cp.Size, err)
	}
	// The notice arrives, with a hash that differs from the stored row: the store was changed in
	// the window.
	l.Committed(2, audit.LeafHash([]byte("what this process wrote")))
	if _, _, err := l.Checkpoint(ctx); err == nil || len(alarms) != 1 {
		t.Fatalf("checkpoint after the notice: %v, %d alarms; want the alarm", err, len(alarms))
	}
}

// Two replicas: what one replica appended is not in the other's memory. When B's entry is
// edited before A (the holder of the checkpoint job) signs, A cannot tell and signs; B finds it
// on its next read of the store and raises the alarm. Detection, not prevention: see
// docs/ledger.md.
func testUnsignedTailOtherReplica(t *testing.T, h Harness) {
	ctx := context.Background()
	open := h.Shared(t)
	a, b := open(t), open(t)
	skey, _, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	var alarmsA, alarmsB []*audit.TamperError
	la := watchedLedger(t, a, skey, &alarmsA)
	lb := watchedLedger(t, b, skey, &alarmsB)
	appendEvents(t, b, "test.by_b")
	setEntry(t, a, 0, strings.Replace(entryText(t, a, 0), "tester", "someone else", 1))
	if _, cp, err := la.Checkpoint(ctx); err != nil || cp.Size != 1 {
		t.Fatalf("replica A: checkpoint size %d, %v", cp.Size, err)
	}
	if err := lb.Sync(ctx); err == nil || len(alarmsB) != 1 || len(alarmsA) != 0 {
		t.Fatalf("replica B did not raise the alarm on its own entry: %v (alarms A %d, B %d)", err, len(alarmsA), len(alarmsB))
	}
}
