package server_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/server"
)

// A start refused over the ledger cannot write to it; the next start that serves records
// every refused one (ledger.start_refused, with the reasons), which detection pages on, and
// forgets them. Here the refusal is a standing tamper alarm, and the operator removes it.
func TestRefusedStartRecordedAtNextStart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	in := start(t, cfg, server.Options{}, nil)
	in.Close()
	alarm := filepath.Join(cfg.DataDir, server.AlarmFile)
	if err := os.WriteFile(alarm, []byte(`{"at":"2026-12-07T10:00:00Z","reason":"entry 3 was changed in the database"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := server.Start(ctx, cfg, server.Options{Logger: slog.New(slog.DiscardHandler)}); err == nil || !strings.Contains(err.Error(), "tamper alarm") {
			t.Fatalf("start %d with the alarm standing: %v", i, err)
		}
	}
	if err := os.Remove(alarm); err != nil {
		t.Fatal(err)
	}
	in = start(t, cfg, server.Options{}, nil)
	defer in.Close()
	recs, err := in.Store.Entries(ctx, 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, r := range recs {
		var e struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
			StatusID int            `json:"status_id"`
			Unmapped map[string]any `json:"unmapped"`
		}
		if err := json.Unmarshal(r.Data, &e); err != nil {
			t.Fatal(err)
		}
		if e.Metadata.EventCode != "ledger.start_refused" {
			continue
		}
		found++
		reasons, _ := e.Unmapped["reasons"].([]any)
		if e.Unmapped["refused_starts"] != 2.0 || e.StatusID != 2 || len(reasons) != 1 || !strings.Contains(reasons[0].(string), "entry 3 was changed") {
			t.Fatalf("ledger.start_refused: %s", r.Data)
		}
	}
	if found != 1 {
		t.Fatalf("%d ledger.start_refused entries, want 1", found)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, server.RefusedStartsFile)); !os.IsNotExist(err) {
		t.Fatalf("the note of refused starts is still there: %v", err)
	}
}
