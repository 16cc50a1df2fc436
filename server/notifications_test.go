package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/notify"
	"rampart.dev/rampart/server"
)

// manualClock is the instance's injected clock; the test moves it.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *manualClock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// reminderReceiver is a local webhook receiver that verifies each delivery's signature and
// counts the reminders it is sent, by notification id, signalling each new one.
type reminderReceiver struct {
	secret []byte
	mu     sync.Mutex
	got    map[string]int
	links  map[string]string
	bad    []string
	fresh  chan notify.Payload
}

func (h *reminderReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var p notify.Payload
	if err := notify.Verify(h.secret, r.Header.Get(notify.SignatureHeader), b, time.Now(), 5*time.Minute); err != nil || json.Unmarshal(b, &p) != nil {
		h.mu.Lock()
		h.bad = append(h.bad, fmt.Sprint(err))
		h.mu.Unlock()
		http.Error(w, "bad delivery", http.StatusBadRequest)
		return
	}
	if p.Kind != access.NotifyExpiring && p.Kind != access.NotifyLapsing {
		return
	}
	h.mu.Lock()
	h.got[p.ID]++
	h.links[p.ID] = p.URL
	first := h.got[p.ID] == 1
	h.mu.Unlock()
	if first {
		h.fresh <- p
	}
}

// withNotifications is the demo policy with a signed webhook sink to url.
func withNotifications(t *testing.T, url, secretFile string) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		if path == "settings.yaml" {
			b = []byte(strings.Replace(string(b), "  admin_group: admins\n", fmt.Sprintf(
				"  admin_group: admins\n  notifications:\n    base_url: https://rampart.example.org\n    sinks:\n    - {name: hook, type: webhook, url: %q, secret_file: %q}\n", url, secretFile), 1))
		}
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Issue 15: the jobs-lease holder reminds a grant's holder before it expires, on the injected
// clock, and a restarted server does not send the reminder again (the outbox remembers it).
func TestReminderOnceAcrossRestart(t *testing.T) {
	for name, kind := range stores(t) {
		t.Run(name, func(t *testing.T) {
			recv := &reminderReceiver{secret: []byte("hook secret"), got: map[string]int{}, links: map[string]string{}, fresh: make(chan notify.Payload, 16)}
			hook := httptest.NewServer(recv)
			defer hook.Close()
			cfg := testConfig(t, dsnFor(t, kind))
			if err := os.WriteFile(filepath.Join(cfg.DataDir, "hook.key"), recv.secret, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.PolicyFS = withNotifications(t, hook.URL, "hook.key")
			cfg.Notifications.PollInterval = 50_000_000 // 50ms
			clock := &manualClock{now: time.Now()}
			opts := server.Options{Now: clock.Now, SweepInterval: 20 * time.Millisecond}
			in := start(t, cfg, opts, nil)
			ctx := context.Background()
			grant := func(in *server.Instance, role, reason string, d time.Duration, approvers ...string) access.Grant {
				t.Helper()
				c, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: role, Reason: reason, Duration: d})
				if err != nil {
					t.Fatal(err)
				}
				var r access.Request
				for _, a := range approvers {
					if r, err = in.Access.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
						t.Fatal(err)
					}
				}
				g, err := in.Store.Grant(ctx, r.GrantID)
				if err != nil {
					t.Fatal(err)
				}
				return g
			}
			wait := func(what string) notify.Payload {
				t.Helper()
				select {
				case p := <-recv.fresh:
					return p
				case <-time.After(30 * time.Second): // a failure limit, not a wait
					recv.mu.Lock()
					defer recv.mu.Unlock()
					t.Fatalf("no %s reminder reached the receiver in 30s (got %v, bad %v)", what, recv.got, recv.bad)
				}
				return notify.Payload{}
			}
			g1 := grant(in, "weights-reader-frontier-7", "eval", 2*time.Hour, "bob", "dave")
			clock.Set(g1.ExpiresAt.Add(-59 * time.Minute))
			p := wait("first")
			if p.GrantID != g1.ID || p.URL != "https://rampart.example.org/grants/"+g1.ID || len(p.Recipients) != 1 || p.Recipients[0] != "alice" {
				t.Fatalf("reminder %+v", p)
			}
			// Delivery is at least once: wait until the outbox records it sent before stopping.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				state, _, _, err := in.Store.NotificationState(ctx, p.ID)
				if err == nil && state == "sent" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("reminder %s not recorded sent in 30s: %q, %v", p.ID, state, err)
				}
			}
			in.Close()

			// Restarted: the first reminder is due still (its grant has 20 minutes left when a
			// second grant's becomes due); only the second is sent.
			in = start(t, cfg, opts, nil)
			defer in.Close()
			g2 := grant(in, "dataset-reader-eval-suite-v3", "eval suite", 90*time.Minute, "carol")
			clock.Set(g1.ExpiresAt.Add(-20 * time.Minute))
			if !clock.Now().Before(g1.ExpiresAt) || !clock.Now().After(g2.ExpiresAt.Add(-time.Hour)) {
				t.Fatal("the test's times are wrong: both grants must be within an hour of their end")
			}
			if p := wait("second"); p.GrantID != g2.ID {
				t.Fatalf("after the restart the reminder was about %s, want %s (%+v)", p.GrantID, g2.ID, p)
			}
			// The sweep that wrote the second reminder saw the first due too: the outbox has one
			// row for each grant, and a sweep now writes none.
			if n, err := in.Access.Remind(ctx); err != nil || n != 0 {
				t.Fatalf("a sweep after the restart wrote %d reminders (%v), want 0", n, err)
			}
			ns, err := in.Store.ListNotifications(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, n := range ns {
				if n.Kind == access.NotifyExpiring {
					rows++
				}
			}
			recv.mu.Lock()
			defer recv.mu.Unlock()
			if rows != 2 || len(recv.got) != 2 {
				t.Fatalf("%d reminder rows, reminders received %v; want one for each grant", rows, recv.got)
			}
			for id, n := range recv.got {
				if n != 1 {
					t.Fatalf("reminder %s delivered %d times", id, n)
				}
			}
		})
	}
}
