package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waiter is a running `rampart request create --wait`.
type waiter struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	lines  chan string // stderr, line by line
	done   chan int    // its exit code
}

func startWait(t *testing.T, c *cli, token string, args ...string) *waiter {
	t.Helper()
	w := &waiter{lines: make(chan string, 100), done: make(chan int, 1)}
	w.cmd = exec.Command(binary, append([]string{"--addr", c.addr, "request", "create", "--wait"}, args...)...)
	w.cmd.Env = append(append(os.Environ(), c.env...), "RAMPART_TOKEN="+token)
	w.cmd.Stdout = &w.stdout
	pr, pw := io.Pipe()
	w.cmd.Stderr = pw
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			w.lines <- s.Text()
		}
		close(w.lines)
	}()
	go func() {
		err := w.cmd.Wait()
		pw.Close()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
		w.done <- code
	}()
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	return w
}

// expect waits (at most a generous limit, not an assumption about speed) for a stderr line
// containing want, and returns it.
func (w *waiter) expect(t *testing.T, want string) string {
	t.Helper()
	limit := time.After(30 * time.Second)
	var seen []string
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("--wait ended before printing %q; it printed:\n%s", want, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.Contains(l, want) {
				return l
			}
		case <-limit:
			t.Fatalf("no line with %q within 30s; printed:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}

func (w *waiter) exit(t *testing.T) int {
	t.Helper()
	select {
	case code := <-w.done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("--wait did not exit within 30s of the decision")
		return -1
	}
}

// Issue 15: `rampart request create --wait` blocks until the request is decided, printing
// who approved and who is still needed, then prints the grant; a denial exits 3 with the
// reason; Ctrl-C (SIGINT) stops waiting and leaves the request pending.
func TestRequestCreateWait(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\noidc:\n  dev_provider: true\n", addr, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	startServer(t, addr, "server", "--config", cfgPath)
	alice, bob, dave := signInAs(t, addr, "alice"), signInAs(t, addr, "bob"), signInAs(t, addr, "dave")
	role := "weights-reader-frontier-7"

	// Approved: progress after each approval, then the grant on stdout.
	w := startWait(t, c, alice, "--role", role, "--reason", "eval run", "--duration", "30m")
	id := reqID.FindString(w.expect(t, "created"))
	if id == "" {
		t.Fatal("no request id in the first line")
	}
	w.expect(t, "no approval yet; still needed: 1 more for step owner (from weights-owners); 1 more for step security (from security)")
	if r := c.as(bob, "request", "approve", id); r.code != 0 {
		t.Fatalf("approve: %+v", r)
	}
	w.expect(t, "approved by bob; still needed: 1 more for step security (from security)")
	if r := c.as(dave, "request", "approve", id); r.code != 0 {
		t.Fatalf("approve: %+v", r)
	}
	if code := w.exit(t); code != 0 {
		t.Fatalf("--wait after the grant: exit %d", code)
	}
	if out := w.stdout.String(); !strings.Contains(out, "Request "+id+" approved: grant grt_") || !strings.Contains(out, "is active until") {
		t.Fatalf("stdout: %q", out)
	}

	// Denied: exit 3 with who denied and why.
	w = startWait(t, c, alice, "--role", role, "--reason", "again", "--duration", "30m")
	id = reqID.FindString(w.expect(t, "created"))
	w.expect(t, "no approval yet")
	if r := c.as(dave, "request", "deny", id, "--comment", "use the eval sandbox"); r.code != 0 {
		t.Fatalf("deny: %+v", r)
	}
	w.expect(t, "request "+id+" was denied by dave: use the eval sandbox")
	if code := w.exit(t); code != 3 {
		t.Fatalf("--wait after a denial: exit %d, want 3", code)
	}

	// Ctrl-C: it stops waiting, says so, and the request stays pending.
	w = startWait(t, c, alice, "--role", role, "--reason", "third", "--duration", "30m")
	id = reqID.FindString(w.expect(t, "created"))
	w.expect(t, "no approval yet")
	_ = w.cmd.Process.Signal(os.Interrupt)
	w.expect(t, "stopped waiting; request "+id+" is still pending")
	if code := w.exit(t); code != 1 {
		t.Fatalf("--wait after Ctrl-C: exit %d, want 1", code)
	}
	if r := c.as(alice, "request", "show", id); r.code != 0 || !strings.Contains(r.out, "pending") {
		t.Fatalf("after Ctrl-C the request is not pending: %+v", r)
	}
}
