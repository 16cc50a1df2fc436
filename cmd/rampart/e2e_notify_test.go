package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/notify"
)

// hookReceiver is a local webhook receiver that checks every body's signature, as a real
// receiver would, and can be told to hold or refuse deliveries.
type hookReceiver struct {
	secret []byte
	mu     sync.Mutex
	// hold: the first delivery blocks until release is closed (the server is killed meanwhile).
	hold     bool
	held     chan struct{} // closed when a delivery is being held
	release  chan struct{}
	refuse   map[string]bool // roles whose notifications are refused (503)
	got      map[string][]string
	attempts map[string]int
	bad      []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if err := notify.Verify(h.secret, r.Header.Get(notify.SignatureHeader), b, time.Now(), 5*time.Minute); err != nil {
		h.mu.Lock()
		h.bad = append(h.bad, err.Error())
		h.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var p notify.Payload
	if err := json.Unmarshal(b, &p); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.attempts[p.RequestID]++
	if h.hold {
		h.hold = false
		h.mu.Unlock()
		close(h.held)
		<-h.release
		http.Error(w, "gone", http.StatusServiceUnavailable)
		return
	}
	if h.refuse[p.Role] {
		h.mu.Unlock()
		http.Error(w, "refused", http.StatusServiceUnavailable)
		return
	}
	h.got[p.RequestID] = append(h.got[p.RequestID], p.Kind+" "+strings.Join(p.Recipients, ",")+" "+p.URL)
	h.mu.Unlock()
}

func (h *hookReceiver) delivered(id string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got[id]...)
}

// Issue 15: a notification is written with the ledger entry, so killing the server (kill -9)
// after the commit and during the delivery loses nothing: the restarted server sends it (at
// least once). A receiver that keeps refusing gets notification.failed in the ledger after the
// retry budget. Every body is signed and verified by the receiver.
func TestNotificationSurvivesKill(t *testing.T) {
	dir := t.TempDir()
	h := &hookReceiver{secret: []byte("e2e-hook-secret"), hold: true, held: make(chan struct{}), release: make(chan struct{}),
		refuse: map[string]bool{}, got: map[string][]string{}, attempts: map[string]int{}}
	recv := httptest.NewServer(h)
	defer recv.Close()
	defer func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	}()
	secretFile := filepath.Join(dir, "hook.key")
	if err := os.WriteFile(secretFile, h.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	// The demo policy, with a webhook sink whose secret is in a file the policy only names.
	polDir := filepath.Join(dir, "policy")
	if err := os.CopyFS(polDir, os.DirFS("../../internal/demo/policy")); err != nil {
		t.Fatal(err)
	}
	settings := filepath.Join(polDir, "settings.yaml")
	b, err := os.ReadFile(settings)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	sink := fmt.Sprintf("  notifications:\n    base_url: http://%s\n    sinks:\n    - {name: hook, type: webhook, url: %q, secret_file: %q}\n", addr, recv.URL+"/hook", secretFile)
	if err := os.WriteFile(settings, []byte(strings.Replace(string(b), "  auditor_group: auditors\n", "  auditor_group: auditors\n"+sink, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\noidc:\n  dev_provider: true\nnotifications:\n  poll_interval: 100ms\n  backoff: 100ms\n  max_attempts: 3\n  timeout: 1s\n",
		addr, filepath.Join(dir, "data"), polDir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	srv := startServer(t, addr, "server", "--config", cfgPath)
	alice := signInAs(t, addr, "alice")
	r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "prod eval", "--duration", "30m")
	id := reqID.FindString(r.out)
	if r.code != 0 || id == "" {
		t.Fatalf("create: %+v", r)
	}
	// The request committed; its notification is being delivered and the receiver holds it.
	select {
	case <-h.held:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery began within 30s of the request")
	}
	_ = srv.cmd.Process.Kill() // kill -9, mid-delivery
	<-srv.done
	srv.closeTap()
	close(h.release)
	if got := h.delivered(id); len(got) != 0 {
		t.Fatalf("delivered before the kill: %v", got)
	}

	startServer(t, addr, "server", "--config", cfgPath)
	deadline := time.Now().Add(30 * time.Second)
	for len(h.delivered(id)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the notification of %s never arrived after the restart", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := "review bob,carol,dave http://" + addr + "/requests/" + id
	if got := h.delivered(id); got[0] != want {
		t.Fatalf("delivered %q, want %q", got[0], want)
	}

	// A receiver that refuses every attempt: after max_attempts the ledger records the failure.
	h.mu.Lock()
	h.refuse["dataset-reader-eval-suite-v3"] = true
	h.mu.Unlock()
	r = c.as(alice, "request", "create", "--role", "dataset-reader-eval-suite-v3", "--reason", "eval", "--duration", "30m")
	id2 := reqID.FindString(r.out)
	if r.code != 0 || id2 == "" {
		t.Fatalf("create: %+v", r)
	}
	erin := strings.TrimSpace(c.ok("admin", "token", "--config", cfgPath, "--subject", "erin", "--ttl", "1h"))
	deadline = time.Now().Add(30 * time.Second)
	for {
		out := c.as(erin, "audit", "tail", "-n", "5")
		if strings.Contains(out.out, "notification.failed") && strings.Contains(out.out, id2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification.failed for %s within 30s; ledger tail:\n%s%s", id2, out.out, out.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.attempts[id2] != 3 || len(h.got[id2]) != 0 || len(h.bad) != 0 {
		t.Fatalf("refused request: %d attempts, delivered %v, bad signatures %v", h.attempts[id2], h.got[id2], h.bad)
	}
}
