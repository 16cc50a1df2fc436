package main_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/demo"
	rserver "rampart.dev/rampart/server"
)

// `rampart audit tail` shows an old entry's control and bidirectional characters escaped, in
// the table and in JSON (invariant 7, defence in depth): an entry recorded before the text rule
// existed cannot make the terminal print "approved" where the entry says otherwise, or erase a
// line. The entry is appended like any other (hashed, checkpointed); only the display changes.
func TestAuditTailEscapesHostileText(t *testing.T) {
	ctx := context.Background()
	in, err := rserver.Start(ctx, rserver.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Store: rserver.StoreConfig{Driver: "sqlite"}},
		rserver.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(func() { srv.Close(); in.Close() })
	const msg = "request req_x for weights-writer-frontier-7: \u202edevorppa\u202c by dave\u2028\x1b[1A\x1b[2Kline erased"
	err = in.Store.Update(ctx, func(tx access.Tx) error {
		_, err := tx.Append(ctx, audit.Event{Code: "request.create", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
			Time: time.Now(), Actor: "mallory\x1b]0;title\x07", Message: msg})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := in.Tokens.Issue(ctx, "erin", "user", "test", "erin", time.Hour) // an auditor
	if err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: strings.TrimPrefix(srv.URL, "http://"), env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN=" + secret}}
	hostile := "\u202e\u202c\u2028\x1b\x07"
	table := c.ok("audit", "tail", "-n", "5")
	if strings.ContainsAny(table, hostile) {
		t.Fatalf("audit tail printed a raw control or bidirectional character:\n%q", table)
	}
	for _, want := range []string{`\u202edevorppa\u202c by dave\u2028\x1b[1A\x1b[2Kline erased`, `mallory\x1b]0;title\x07`} {
		if !strings.Contains(table, want) {
			t.Fatalf("audit tail does not show %q:\n%s", want, table)
		}
	}
	js := c.ok("-o", "json", "audit", "tail", "-n", "5")
	if strings.ContainsAny(js, hostile) {
		t.Fatalf("audit tail -o json printed a raw control or bidirectional character:\n%q", js)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(js), "\n") {
		var e struct {
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("audit tail -o json printed invalid JSON %q: %v", line, err)
		}
		found = found || e.Message == msg // the same value, escaped differently
	}
	if !found || !strings.Contains(js, `\u202e`) {
		t.Fatalf("the entry is missing or unescaped in:\n%s", js)
	}
}
