package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/server"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// entriesOf decodes the ledger entries of one code from a store.
func entriesOf(t *testing.T, all [][]byte, code string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, data := range all {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		if m["metadata"].(map[string]any)["event_code"] == code {
			out = append(out, m)
		}
	}
	return out
}

// Any user can ask for weights they have no grant for, as often as they like (invariant 11):
// the first denial of a window is recorded at once, the rest are counted, and the summary is
// written by the background job when the window ends even though no denial comes after it (the
// server's clock is injected and moved), and by a clean shutdown for a window still open.
func TestDeniedWeightsAggregatedSQLite(t *testing.T) {
	dir := t.TempDir()
	deniedWeightsAggregated(t, dir, server.StoreConfig{Driver: "sqlite"}, func() *sqlstore.DB {
		st, err := sqlite.Open(context.Background(), filepath.Join(dir, "rampart.db"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestDeniedWeightsAggregatedPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	deniedWeightsAggregated(t, t.TempDir(), server.StoreConfig{Driver: "postgres", DSN: dsn}, func() *sqlstore.DB {
		st, err := postgres.Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func deniedWeightsAggregated(t *testing.T, dir string, store server.StoreConfig, reopen func() *sqlstore.DB) {
	ctx := context.Background()
	clock := clocktest.New(time.Now().Truncate(time.Second))
	in, err := server.Start(ctx, server.Config{DataDir: dir, PolicyFS: demo.Policy(), Dev: true, Store: store},
		server.Options{Now: clock.Now, Logger: slog.New(slog.DiscardHandler), SyncInterval: 10 * time.Millisecond, RefusalFlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	closed := false
	defer func() {
		if !closed {
			in.Close()
		}
	}()
	secret, _, err := in.Tokens.Issue(ctx, "alice", "user", "test", "alice", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	size := func() uint64 {
		t.Helper()
		if err := in.Ledger.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		return in.Ledger.Size()
	}
	deny := func(n int) {
		t.Helper()
		for range n {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/weights/frontier-7", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("a download without a grant answered %d %s", resp.StatusCode, body)
			}
		}
	}
	before := size()
	deny(1000)
	if grown := size() - before; grown != 1 {
		t.Fatalf("1000 denials added %d entries during the window, want 1", grown)
	}
	// The window ends; nothing else happens; the background job writes the summary.
	clock.Advance(time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for size()-before != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary 30 s after the window ended (ledger grew by %d)", size()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for in.Index.Health() != nil { // the index syncs on the moved clock
		if time.Now().After(deadline) {
			t.Fatal(in.Index.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A window still open at shutdown is summarised by Close.
	deny(500)
	in.Close()
	closed = true
	st := reopen()
	defer st.Close()
	recs, err := st.Entries(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for _, r := range recs {
		all = append(all, r.Data)
	}
	got := entriesOf(t, all, "weights.denied")
	if len(got) != 4 {
		t.Fatalf("%d weights.denied entries for 1500 denials in two windows, want 4", len(got))
	}
	counts := []any{nil, float64(999), nil, float64(499)}
	for i, e := range got {
		if e["count"] != counts[i] || e["status"] != "Failure" || e["actor"].(map[string]any)["user"].(map[string]any)["name"] != "alice" {
			t.Fatalf("entry %d: count %v, want %v: %v", i, e["count"], counts[i], e)
		}
	}
}
