package server_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

// witnessedConfig is testConfig with a ledger key made beforehand (so the witness can be told
// of it) and one witness.
func witnessedConfig(t *testing.T, dsn string, w *testenv.Witness, origin string) (server.Config, note.Verifier, note.Verifier) {
	t.Helper()
	cfg := testConfig(t, dsn)
	skey, vkey, err := audit.GenerateKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "ledger.key"), []byte(skey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.AddLog(t, origin, vkey)
	cfg.Ledger.Witnesses = []server.WitnessConfig{{URL: w.URL, Key: w.Key}}
	cfg.Ledger.WitnessTimeout = policy.Duration(10 * time.Second)
	wv, err := audit.NewWitnessVerifier(w.Key)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := audit.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, lv, wv
}

func appendRequest(t *testing.T, in *server.Instance, reason string) {
	t.Helper()
	if _, err := in.Access.Create(context.Background(), access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: reason, Duration: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

// waitCosigned waits until the newest stored checkpoint covers every entry and carries the
// witness's cosignature, and returns it.
func waitCosigned(t *testing.T, in *server.Instance, wv note.Verifier) (audit.Checkpoint, []byte) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, _ := in.Store.LedgerSize(ctx)
		signed, cp, err := in.Ledger.Latest(ctx)
		if err == nil && cp.Size == uint64(n) {
			if _, _, err := audit.OpenCosigned(signed, in.Ledger.Verifier(), []note.Verifier{wv}); err == nil {
				return cp, signed
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cosigned checkpoint of all %d entries after 20s (newest %d, %v)", n, cp.Size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rollBack puts the ledger back to its first size entries and the pin file back to pinned: what
// restoring the database and the data directory from an earlier copy does to the ledger.
func rollBack(t *testing.T, cfg server.Config, size uint64, pinned []byte) {
	t.Helper()
	in := start(t, cfg, server.Options{CheckpointInterval: time.Hour}, nil)
	db := in.Store.SQL()
	for _, q := range []string{`DELETE FROM ledger WHERE seq >= ?`, `DELETE FROM checkpoints WHERE size > ?`, `UPDATE ledger_head SET size = ?`} {
		if _, err := db.Exec(in.Store.Rebind(q), int64(size)); err != nil {
			t.Fatal(err)
		}
	}
	in.Store.Close() // not Close: that would sign a checkpoint of the rolled-back ledger
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "ledger.checkpoint"), pinned, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Issue 11, item 9 (invariant 5): checkpoints are cosigned by a real witness (litewitness) and
// the cosignatures stored; a database rolled back together with the pinned checkpoint is caught
// by the witness, which has seen the longer history: the server raises its alarm (rolled back),
// or (rolled back and rewritten) the witness refuses the new history as inconsistent.
func TestWitnessCatchesRollback(t *testing.T) {
	for name, kind := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for _, rewrite := range []bool{false, true} {
				ctx := context.Background()
				w := testenv.Litewitness(t, "witness.test/w1")
				cfg, lv, wv := witnessedConfig(t, dsnFor(t, kind), w, "rampart-rollback")
				fast := server.Options{CheckpointInterval: 100 * time.Millisecond}
				in := start(t, cfg, fast, nil)
				// Sign in first: the sign-in is an entry too, and the checkpoint read below must
				// be the newest, so nothing may be appended after waitCosigned.
				srv := httptest.NewServer(in.Handler())
				tok, err := api.NewClient(srv.URL, "").DevLogin(ctx, "alice")
				if err != nil {
					t.Fatal(err)
				}
				appendRequest(t, in, "first")
				waitCosigned(t, in, wv)
				// The API reports the cosignature.
				cr, err := api.NewClient(srv.URL, tok.Token).LatestCheckpoint(ctx)
				if err != nil || len(cr.Cosignatures) != 1 || cr.Cosignatures[0].Witness != "witness.test/w1" || cr.Time == nil {
					t.Fatalf("checkpoint response: %+v %v", cr, err)
				}
				srv.Close()
				in.Close()
				// The copy: the pinned checkpoint, signed and cosigned at shutdown.
				pinned, err := os.ReadFile(filepath.Join(cfg.DataDir, "ledger.checkpoint"))
				if err != nil {
					t.Fatal(err)
				}
				before, err := audit.OpenCheckpoint(pinned, lv)
				if err != nil {
					t.Fatal(err)
				}
				in = start(t, cfg, fast, nil)
				for i := 0; i < 4; i++ {
					appendRequest(t, in, "later")
				}
				after, _ := waitCosigned(t, in, wv)
				in.Close()
				if after.Size <= before.Size {
					t.Fatalf("sizes %d then %d", before.Size, after.Size)
				}
				// Someone restores the database and the data directory from the copy made
				// after the first checkpoint.
				rollBack(t, cfg, before.Size, pinned)
				var logs lockedWriter
				if !rewrite {
					// Rolled back only: the server starts (everything it keeps agrees) and its
					// first word with the witness shows the witness saw more.
					in = start(t, cfg, fast, &logs)
				} else {
					// Rolled back and rewritten: new entries take the place of the old ones,
					// and the witness refuses the new history when the server shuts down.
					in = start(t, cfg, server.Options{CheckpointInterval: time.Hour}, &logs)
					for i := 0; i < 6; i++ {
						appendRequest(t, in, "rewritten")
					}
				}
				if rewrite {
					in.Close()
				} else {
					deadline := time.Now().Add(20 * time.Second)
					for in.Ledger.Alarm() == nil && time.Now().Before(deadline) {
						time.Sleep(20 * time.Millisecond)
					}
				}
				a := in.Ledger.Alarm()
				want := "rolled back or truncated"
				if rewrite {
					want = "not consistent with the checkpoint"
				}
				if a == nil || !strings.Contains(a.Reason, want) {
					t.Fatalf("rewrite=%v: alarm %v; want one saying %q\n%s", rewrite, a, want, logs.String())
				}
				if err := in.Ready(); err == nil {
					t.Fatal("ready after the alarm")
				}
				if !rewrite {
					in.Close()
				}
				if _, err := server.Start(ctx, cfg, server.Options{}); err == nil || !strings.Contains(err.Error(), "tamper alarm") {
					t.Fatalf("restart after the alarm: %v", err)
				}
			}
		})
	}
}

func TestWitnessConfig(t *testing.T) {
	cvkey := testWitnessKey(t)
	_, logKey, _ := audit.GenerateKey("rampart-test")
	dir := t.TempDir()
	load := func(witnesses string) error {
		p := filepath.Join(dir, "rampart.yaml")
		cfg := "data_dir: " + dir + "\npolicy_dir: " + dir + "\nledger:\n  origin: rampart-test\n" + witnesses
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.LoadConfig(p)
		return err
	}
	if err := load("  witnesses:\n  - url: https://witness.example/w1\n    key: " + cvkey + "\n  witness_refresh: 30s\n"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ yaml, want string }{
		{"  witnesses:\n  - url: ftp://witness.example\n    key: " + cvkey + "\n", "ledger.witnesses[0].url"},
		{"  witnesses:\n  - url: https://w.example\n    key: " + logKey + "\n", "plain Ed25519 note key"},
		{"  witnesses:\n  - url: https://w.example\n    key: nonsense\n", "ledger.witnesses[0].key"},
		{"  witnesses:\n  - url: https://w.example\n    key: " + cvkey + "\n  - url: https://w2.example\n    key: " + cvkey + "\n", "listed twice"},
		{"  witness_refresh: 10ms\n", "ledger.witness_refresh"},
		{"  witness_timeout: 1ms\n", "ledger.witness_timeout"},
	} {
		if err := load(c.yaml); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v; want an error naming %q", c.yaml, err, c.want)
		}
	}
}

// testWitnessKey is a cosignature verifier key, as a witness prints it.
func testWitnessKey(t *testing.T) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(nil, "witness.example/w1")
	if err != nil {
		t.Fatal(err)
	}
	cv, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cv
}
