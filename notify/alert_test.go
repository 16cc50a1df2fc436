package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/notify"
	"rampart.dev/rampart/policy"
)

// alertEntry is a detect.alert entry as the detection runner appends it.
func alertEntry() audit.Event {
	return audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: 1, Severity: audit.SeverityHigh, Time: at,
		Actor: "detect:bulk-weight-reads", User: "alice", Message: "rule bulk-weight-reads fired for actor=alice: 40 matching events",
		Details: map[string]any{"rule": "bulk-weight-reads", "key": "actor=alice", "subject": "alice", "severity": "high",
			"evidence": []any{int64(12), int64(15)}, "count": 40, "mitre": []any{"T1530"}}}
}

// receiver is a webhook endpoint that verifies what it gets as a receiver should.
type receiver struct {
	mu      sync.Mutex
	secrets [][]byte
	bodies  [][]byte
	errs    []error
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	body, err := notify.VerifyRequest(r, rc.secrets, time.Now(), notify.DefaultReplayWindow)
	if err != nil {
		rc.errs = append(rc.errs, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	rc.bodies = append(rc.bodies, body)
	w.WriteHeader(204)
}

// Issue 17: an alert goes to the detection webhook (settings detection.webhook, its secret in a
// file), signed so a receiver can verify it with VerifyRequest, and to the sinks whose events
// include "alert", addressed to the administrators; a sink for reviews only does not get it.
func TestAlertDeliveredSigned(t *testing.T) {
	secret := []byte("detection-webhook-secret-0123456789")
	rc := &receiver{secrets: [][]byte{[]byte("an-older-secret"), secret}}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	chat, got := fakeChatReceiver(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "detect.key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if strings.Contains(string(f.Data), "kind: Settings") {
			files[i].Data = []byte(strings.Replace(string(f.Data), "admin_group: admins", "admin_group: admins\n  detection:\n    webhook: {url: "+hook.URL+", secret_file: detect.key}\n  notifications:\n    base_url: https://rampart.example.org\n    sinks:\n    - {name: soc, type: slack, secret_env: SLACK_URL, events: [alert]}\n    - {name: reviews, type: webhook, url: https://hooks.example.org/x, secret_env: HOOK, events: [review]}", 1))
		}
	}
	pol, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLACK_URL": chat.URL, "HOOK": "x"}
	r := &notify.Router{Policy: func() *policy.Policy { return pol }, DataDir: dir, Getenv: func(k string) string { return env[k] }}
	if err := r.Check(pol); err != nil {
		t.Fatal(err)
	}
	n, ok := access.AlertNotification(42, alertEntry())
	if !ok || n.Alert == nil || n.Alert.Count != 40 || len(n.Alert.Evidence) != 2 || n.Subject != "alice" {
		t.Fatalf("the alert's notification: %+v", n)
	}
	sinks, err := r.Sinks(n)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
		if err := s.Send(context.Background(), n); err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
	}
	if strings.Join(names, ",") != "slack soc,webhook (detection)" {
		t.Fatalf("sinks of an alert: %v", names)
	}
	if m := got(); m == nil || !strings.Contains(m["text"].(string), "ALERT (high): detection rule bulk-weight-reads fired for actor=alice") {
		t.Fatalf("slack message: %v", m)
	}
	if len(rc.bodies) != 1 || len(rc.errs) != 0 {
		t.Fatalf("webhook: %d bodies, errors %v", len(rc.bodies), rc.errs)
	}
	var p struct {
		Kind       string            `json:"kind"`
		Recipients []string          `json:"recipients"`
		Alert      *access.AlertInfo `json:"alert"`
	}
	if err := json.Unmarshal(rc.bodies[0], &p); err != nil || p.Kind != "alert" || p.Alert.Rule != "bulk-weight-reads" || p.Alert.Evidence[1] != 15 ||
		strings.Join(p.Recipients, ",") != "erin" {
		t.Fatalf("payload %s: %v", rc.bodies[0], err)
	}
	if link := notify.Link("https://rampart.example.org/", n); link != "https://rampart.example.org/alerts" {
		t.Errorf("an alert links to %s", link)
	}
	if sinks, err := r.Sinks(review()); err != nil || len(sinks) != 1 || sinks[0].Name() != "webhook reviews" {
		t.Fatalf("a review's sinks: %v %v", sinks, err)
	}
}

// A receiver refuses what was not signed with its key, what was altered, and what is replayed
// outside the window.
func TestVerifyRequestRefuses(t *testing.T) {
	secret := []byte("k1")
	body := []byte(`{"kind":"alert"}`)
	req := func(b []byte, sig, id string) *http.Request {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(b))
		r.Header.Set(notify.SignatureHeader, sig)
		if id != "" {
			r.Header.Set(notify.KeyIDHeader, id)
		}
		return r
	}
	now := at
	good := notify.Sign(secret, now, body)
	if b, err := notify.VerifyRequest(req(body, good, notify.KeyID(secret)), [][]byte{secret}, now, notify.DefaultReplayWindow); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("good: %v", err)
	}
	for name, tc := range map[string]struct {
		r    *http.Request
		keys [][]byte
		want error
	}{
		"another key":   {req(body, good, notify.KeyID(secret)), [][]byte{[]byte("k2")}, notify.ErrUnknownKey},
		"named wrongly": {req(body, good, notify.KeyID([]byte("k2"))), [][]byte{secret}, notify.ErrUnknownKey},
		"altered":       {req([]byte(`{"kind":"review"}`), good, ""), [][]byte{secret}, notify.ErrBadSignature},
		"replayed":      {req(body, notify.Sign(secret, now.Add(-notify.DefaultReplayWindow-time.Second), body), ""), [][]byte{secret}, notify.ErrStale},
		"unsigned":      {req(body, "", ""), [][]byte{secret}, notify.ErrMalformed},
	} {
		if _, err := notify.VerifyRequest(tc.r, tc.keys, now, notify.DefaultReplayWindow); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	big := bytes.Repeat([]byte("a"), notify.MaxWebhookBody+1)
	if _, err := notify.VerifyRequest(req(big, notify.Sign(secret, now, big), ""), [][]byte{secret}, now, notify.DefaultReplayWindow); err == nil {
		t.Error("an oversized body was accepted")
	}
}
