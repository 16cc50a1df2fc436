package witness_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/witness"
	"rampart.dev/rampart/internal/testenv"
)

// ledgerAt is a log of n entries (fork changes entry 4 onwards) with a checkpoint signer.
type ledgerAt struct {
	tree   *audit.Tree
	signer note.Signer
}

func newLedger(t *testing.T, skey string, n int, fork bool) *ledgerAt {
	t.Helper()
	s, err := audit.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &ledgerAt{tree: audit.NewTree(), signer: s}
	for i := 0; i < n; i++ {
		e := fmt.Sprintf("entry %d", i)
		if fork && i >= 4 {
			e += " rewritten"
		}
		l.tree.Append(audit.LeafHash([]byte(e)))
	}
	return l
}

func (l *ledgerAt) checkpoint(t *testing.T, size uint64) []byte {
	t.Helper()
	root, err := l.tree.Root(size)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := audit.Sign(audit.Checkpoint{Origin: l.signer.Name(), Size: size, Root: root, Time: time.Now()}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func (l *ledgerAt) proof(ctx context.Context, old uint64, size uint64) ([][]byte, error) {
	return l.tree.ConsistencyProof(old, size)
}

// The client against a real witness (litewitness): cosignatures that verify, the old size
// learned from a 409, and the two refusals that prove lost or rewritten history.
func TestAgainstLitewitness(t *testing.T) {
	ctx := context.Background()
	w := testenv.Litewitness(t, "witness.test/w1")
	skey, vkey, err := audit.GenerateKey("rampart-witness-test")
	if err != nil {
		t.Fatal(err)
	}
	w.AddLog(t, "rampart-witness-test", vkey)
	wv, err := audit.NewWitnessVerifier(w.Key)
	if err != nil {
		t.Fatal(err)
	}
	logV, _ := audit.NewVerifier(vkey)
	l := newLedger(t, skey, 12, false)
	c := &witness.Client{URL: w.URL, Verifier: wv}
	submit := func(c *witness.Client, l *ledgerAt, size uint64) ([]byte, []byte, error) {
		signed := l.checkpoint(t, size)
		lines, err := c.AddCheckpoint(ctx, signed, size, func(ctx context.Context, old uint64) ([][]byte, error) { return l.proof(ctx, old, size) })
		return signed, lines, err
	}
	for _, size := range []uint64{5, 9, 9} { // the same size again: a fresh cosignature
		signed, lines, err := submit(c, l, size)
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		cosigned, err := audit.AddCosignatures(signed, lines, logV, wv)
		if err != nil {
			t.Fatal(err)
		}
		cp, cos, err := audit.OpenCosigned(cosigned, logV, []note.Verifier{wv})
		if err != nil || cp.Size != size || time.Since(cos[0].Time) > time.Minute {
			t.Fatalf("size %d: %+v %+v %v", size, cp, cos, err)
		}
		if c.Known() != size {
			t.Fatalf("known %d after cosigning %d", c.Known(), size)
		}
	}
	// A client that knows nothing learns the size from the witness's 409 and proves from it.
	fresh := &witness.Client{URL: w.URL, Verifier: wv}
	if _, _, err := submit(fresh, l, 11); err != nil || fresh.Known() != 11 {
		t.Fatalf("fresh client: known %d, %v", fresh.Known(), err)
	}
	// Rolled back: a ledger of 8 entries, for a witness that cosigned 11.
	rolled := &witness.Client{URL: w.URL, Verifier: wv}
	var ahead *witness.AheadError
	if _, _, err := submit(rolled, newLedger(t, skey, 8, false), 8); !errors.As(err, &ahead) || ahead.Size != 11 || ahead.Submitted != 8 {
		t.Fatalf("rolled-back checkpoint: %v", err)
	}
	// Rolled back and rewritten: 12 entries whose history differs from entry 4 on.
	var inconsistent *witness.InconsistentError
	if _, _, err := submit(rolled, newLedger(t, skey, 12, true), 12); !errors.As(err, &inconsistent) || inconsistent.Old != 11 {
		t.Fatalf("rewritten history: %v", err)
	}
	// A witness that does not know the log.
	other, _, _ := audit.GenerateKey("rampart-unknown")
	var se *witness.StatusError
	if _, _, err := submit(&witness.Client{URL: w.URL, Verifier: wv}, newLedger(t, other, 3, false), 3); !errors.As(err, &se) {
		t.Fatalf("unknown log: %v", err)
	}
}
