package storetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/store/sqlstore"
)

const crashEnv = "RAMPART_STORETEST_CRASH_CHILD"

// Opener opens a store from a data source name.
type Opener func(ctx context.Context, dsn string) (*sqlstore.DB, error)

// RunCrashChild must be called at the start of TestMain. In the child process started by
// CrashMidTransaction it opens the store, writes a request and its ledger entry inside a
// transaction, says READY, and waits to be killed before it can commit.
func RunCrashChild(open Opener) {
	dsn := os.Getenv(crashEnv)
	if dsn == "" {
		return
	}
	ctx := context.Background()
	s, err := open(ctx, dsn)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	_ = s.Update(ctx, func(tx access.Tx) error {
		if _, err := tx.Append(ctx, event("crash.uncommitted")); err != nil {
			return err
		}
		if err := tx.InsertRequest(ctx, access.Request{ID: "req_crash", CreatedAt: Epoch, ExpiresAt: Epoch}); err != nil {
			return err
		}
		fmt.Println("READY")
		time.Sleep(time.Hour)
		return nil
	})
	os.Exit(3)
}

// CrashMidTransaction kills a process (SIGKILL) in the middle of a write transaction and checks
// that nothing of it survives, the ledger still verifies, and the store accepts writes again.
func CrashMidTransaction(t *testing.T, dsn string, open Opener) {
	ctx := context.Background()
	// Create the schema first, so the child's transaction is the only thing in flight.
	s0, err := open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	s0.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+dsn)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "READY" {
		_ = cmd.Process.Kill()
		t.Fatalf("crash child did not get into its transaction: %q %v", line, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	s, err := open(ctx, dsn)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	if _, err := s.Request(ctx, "req_crash"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("a crashed transaction's request survived: %v", err)
	}
	if n, _ := s.LedgerSize(ctx); n != 0 {
		t.Fatalf("a crashed transaction's ledger entry survived: size %d", n)
	}
	skey, _, _ := audit.GenerateKey("rampart-test")
	if _, err := audit.Open(ctx, audit.Options{Store: s, SigningKey: skey}); err != nil {
		t.Fatalf("ledger after crash: %v", err)
	}
	// The crashed writer's lock is gone: a new write goes through promptly.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = s.Update(wctx, func(tx access.Tx) error {
		_, err := tx.Append(wctx, event("after.crash"))
		return err
	})
	if err != nil {
		t.Fatalf("write after crash: %v", err)
	}
}
