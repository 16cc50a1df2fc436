package main_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rampart.dev/rampart/internal/testenv"
)

// copyFiles copies the named files (those that exist) from one directory to another.
func copyFiles(t *testing.T, from, to string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n))
		if os.IsNotExist(err) {
			_ = os.Remove(filepath.Join(to, n))
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// Issue 11, item 9, with the real binary and a real witness (litewitness): a server whose
// checkpoints the witness cosigned is stopped, its database and pinned checkpoint are copied,
// it runs on and is stopped again, and the copies are put back: everything the server keeps
// agrees with itself, so without a witness nothing could tell. The witness refuses the
// rolled-back history, the server raises its tamper alarm, and `rampart audit verify --witness`
// fails.
func TestWitnessCatchesRollbackEndToEnd(t *testing.T) {
	w := testenv.Litewitness(t, "witness.test/e2e")
	dir := t.TempDir()
	data, snap := filepath.Join(dir, "data"), filepath.Join(dir, "snapshot")
	for _, d := range []string{data, snap} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	key := filepath.Join(dir, "ledger.key")
	vkey := strings.TrimSpace(c.ok("admin", "ledger-key", "--out", key, "--origin", "rampart-e2e-rollback"))
	w.AddLog(t, "rampart-e2e-rollback", vkey)
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\noidc:\n  dev_provider: true\nledger:\n  signing_key_file: %s\n  witnesses:\n  - url: %s\n    key: %s\n",
		addr, data, key, w.URL, w.Key)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	token := func(user string) string {
		r := c.run(nil, "admin", "token", "--config", cfgPath, "--subject", user, "--ttl", "1h")
		if r.code != 0 {
			t.Fatalf("admin token %s: %+v", user, r)
		}
		return strings.TrimSpace(r.out)
	}
	srv := startServer(t, addr, "server", "--config", cfgPath)
	alice, erin := signInAs(t, addr, "alice"), token("erin")
	if r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "before the copy"); r.code != 0 {
		t.Fatalf("create: %+v", r)
	}
	verified := regexp.MustCompile(`checkpoint:\s+size (\d+)`)
	verify := func() (int, string) {
		t.Helper()
		r := c.as(erin, "audit", "verify", "--witness", w.Key)
		if r.code != 0 || !strings.Contains(r.out, "cosigned by witness.test/e2e") {
			t.Fatalf("verify --witness: %+v", r)
		}
		n, _ := strconv.Atoi(verified.FindStringSubmatch(r.out)[1])
		return n, r.out
	}
	first, _ := verify()
	srv.stop(t)
	ledgerFiles := []string{"rampart.db", "rampart.db-wal", "rampart.db-shm", "ledger.checkpoint"}
	copyFiles(t, data, snap, ledgerFiles...)

	srv = startServer(t, addr, "server", "--config", cfgPath)
	for i := 0; i < 3; i++ {
		if r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "after the copy"); r.code != 0 {
			t.Fatalf("create: %+v", r)
		}
	}
	second, _ := verify()
	srv.stop(t)
	if second <= first {
		t.Fatalf("verified sizes %d then %d", first, second)
	}

	// The rollback: the database and the pinned checkpoint, both from the copy.
	copyFiles(t, snap, data, ledgerFiles...)
	pinned, err := os.ReadFile(filepath.Join(data, "ledger.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "server", "--config", cfgPath)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if t.Failed() {
			t.Logf("rolled-back server output:\n%s", logs.String())
		}
	})
	// The server starts (its database and pin agree), then hears from the witness.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 503 && strings.Contains(string(b), "tamper alarm") && strings.Contains(string(b), "rolled back") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no tamper alarm 30s after starting on the rolled-back database")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The witness itself refuses the rolled-back checkpoint, and says what it saw.
	body := append([]byte(fmt.Sprintf("old %d\n\n", 0)), pinned...)
	resp, err := http.Post(w.URL+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || strings.TrimSpace(string(answer)) != strconv.Itoa(second) {
		t.Fatalf("the witness answered %d %q to the rolled-back checkpoint; want 409 and the size it cosigned, %d", resp.StatusCode, answer, second)
	}
	// An auditor who never verified before (no remembered checkpoint) is told too.
	fresh := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	r := fresh.as(erin, "audit", "verify", "--witness", w.Key)
	if r.code != 1 || !strings.Contains(r.err, "does NOT verify") || !strings.Contains(r.err, "rolled back") {
		t.Fatalf("verify --witness on the rolled-back server: %+v", r)
	}
}
