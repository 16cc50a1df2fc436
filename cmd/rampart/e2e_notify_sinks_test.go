package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSlackWebAPIEdge stands in for Slack's Web API (a SaaS) at chat.postMessage: it checks the
// bot token and the message's shape and answers as Slack does (200 with {"ok":…}).
type fakeSlackWebAPIEdge struct {
	token string
	mu    sync.Mutex
	posts []string // the text of each accepted post
	bad   []string
}

func (f *fakeSlackWebAPIEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		Channel string           `json:"channel"`
		Text    string           `json:"text"`
		Blocks  []map[string]any `json:"blocks"`
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path != "/api/chat.postMessage":
		f.bad = append(f.bad, "path "+r.URL.Path)
		http.NotFound(w, r)
	case r.Header.Get("Authorization") != "Bearer "+f.token:
		f.bad = append(f.bad, "authorization "+r.Header.Get("Authorization"))
		fmt.Fprint(w, `{"ok":false,"error":"invalid_auth"}`)
	case json.NewDecoder(r.Body).Decode(&m) != nil || m.Channel != "C0SECURITY" || len(m.Blocks) != 2:
		f.bad = append(f.bad, fmt.Sprintf("message %+v", m))
		fmt.Fprint(w, `{"ok":false,"error":"invalid_blocks"}`)
	default:
		f.posts = append(f.posts, m.Text)
		fmt.Fprint(w, `{"ok":true,"ts":"1.1"}`)
	}
}

// Issue 15, through the real binary: a Slack bot sink (chat.postMessage with a token read from a
// file) takes a notification exactly once while a second sink, a webhook that refuses every
// attempt, is retried alone; after the budget the ledger records the failure naming that sink.
func TestNotificationPerSinkSlackBot(t *testing.T) {
	dir := t.TempDir()
	slack := &fakeSlackWebAPIEdge{token: "xoxb-e2e-token"}
	slackSrv := httptest.NewServer(slack)
	defer slackSrv.Close()
	var hookMu sync.Mutex
	hookAttempts := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		hookAttempts++
		hookMu.Unlock()
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer hook.Close()
	for name, secret := range map[string]string{"hook.key": "e2e-hook-secret", "slack.token": slack.token + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
	}
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
	sinks := fmt.Sprintf("  notifications:\n    base_url: http://%s\n    sinks:\n"+
		"    - {name: hook, type: webhook, url: %q, secret_file: %q}\n"+
		"    - {name: security, type: slack, channel: C0SECURITY, url: %q, secret_file: %q}\n",
		addr, hook.URL+"/hook", filepath.Join(dir, "hook.key"), slackSrv.URL+"/api/chat.postMessage", filepath.Join(dir, "slack.token"))
	if err := os.WriteFile(settings, []byte(strings.Replace(string(b), "  auditor_group: auditors\n", "  auditor_group: auditors\n"+sinks, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\noidc:\n  dev_provider: true\nnotifications:\n  poll_interval: 100ms\n  backoff: 100ms\n  max_attempts: 3\n  timeout: 1s\n",
		addr, filepath.Join(dir, "data"), polDir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	startServer(t, addr, "server", "--config", cfgPath)
	alice := signInAs(t, addr, "alice")
	r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "prod eval", "--duration", "30m")
	id := reqID.FindString(r.out)
	if r.code != 0 || id == "" {
		t.Fatalf("create: %+v", r)
	}
	erin := strings.TrimSpace(c.ok("admin", "token", "--config", cfgPath, "--subject", "erin", "--ttl", "1h"))
	var tail string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := c.as(erin, "audit", "tail", "-n", "5")
		tail = out.out + out.err
		if strings.Contains(tail, "notification.failed") && strings.Contains(tail, id) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification.failed for %s within 30s; ledger tail:\n%s", id, tail)
		}
	}
	if !strings.Contains(tail, "not delivered to sink webhook hook after 3 attempts") || strings.Contains(tail, "sink slack security") {
		t.Fatalf("the failure entry does not name the failing sink, or names the working one:\n%s", tail)
	}
	slack.mu.Lock()
	defer slack.mu.Unlock()
	hookMu.Lock()
	defer hookMu.Unlock()
	if len(slack.posts) != 1 || !strings.Contains(slack.posts[0], "Review requested: alice asks for weights-reader-frontier-7") || len(slack.bad) != 0 {
		t.Fatalf("slack received %q (refused %v), want the review once", slack.posts, slack.bad)
	}
	if hookAttempts != 3 {
		t.Fatalf("the failing webhook was tried %d times, want max_attempts (3)", hookAttempts)
	}
}
