package server_test

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/server"
)

// testConfig is a development control plane on SQLite, or on PostgreSQL when dsn is set.
func testConfig(t *testing.T, dsn string) server.Config {
	cfg := server.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Dev: true, Ledger: server.LedgerConfig{Origin: "rampart-test"}}
	if dsn != "" {
		cfg.Store = server.StoreConfig{Driver: "postgres", DSN: dsn}
	}
	return cfg
}

func start(t *testing.T, cfg server.Config, o server.Options, logs io.Writer) *server.Instance {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	in, err := server.Start(context.Background(), cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func stores(t *testing.T) map[string]string {
	return map[string]string{"SQLite": "", "PostgreSQL": "postgres"}
}

func dsnFor(t *testing.T, kind string) string {
	if kind == "" {
		return ""
	}
	return testenv.PostgresDSN(t)
}

// lockedWriter is a goroutine-safe log sink.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Issue 11, item 9, against a whole control plane over real HTTP (invariants 5 and 6): someone
// who can write the database replaces the approvers of a grant appended since the last
// checkpoint. Today the server signs the forgery, `audit verify` passes and a restart succeeds.
// Now the server refuses to sign, says so at error level, in /metrics and in /readyz, denies every
// decision and refuses every change, and a restart refuses to serve.
func TestUnsignedTailForgeryRaisesTheAlarm(t *testing.T) {
	for name, kind := range stores(t) {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, dsnFor(t, kind))
			var logs lockedWriter
			// No checkpoint job: the test decides when the server signs.
			in := start(t, cfg, server.Options{CheckpointInterval: time.Hour}, &logs)
			closed := false
			defer func() {
				if !closed {
					in.Close()
				}
			}()
			srv := httptest.NewServer(in.Handler())
			defer srv.Close()
			ctx := context.Background()
			login := func(user string) *api.Client {
				tok, err := api.NewClient(srv.URL, "").DevLogin(ctx, user)
				if err != nil {
					t.Fatal(err)
				}
				return api.NewClient(srv.URL, tok.Token)
			}
			alice, bob, dave := login("alice"), login("bob"), login("dave")
			if _, err := alice.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			created, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval run 4411", Duration: "1h"})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*api.Client{bob, dave} {
				if _, err := c.Review(ctx, created.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
					t.Fatal(err)
				}
			}
			q := authz.Query{Subject: "alice", Action: "read", Resource: "weights/frontier-7"}
			if d, err := alice.Check(ctx, q); err != nil || !d.Allowed {
				t.Fatalf("before the forgery: %+v %v", d, err)
			}
			// The forgery, straight in the database: bob's approval becomes carol's.
			db := in.Store
			res, err := db.SQL().ExecContext(ctx, `UPDATE ledger SET entry = replace(entry, '"bob"', '"carol"') WHERE entry LIKE '%grant.activate%'`)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := res.RowsAffected(); n != 1 {
				t.Fatalf("forged %d entries, want the one activation", n)
			}
			_, err = alice.Checkpoint(ctx)
			if !api.IsStatus(err, http.StatusInternalServerError) || !strings.Contains(err.Error(), "was changed in the database") {
				t.Fatalf("the server signed over the forgery, or said the wrong thing: %v", err)
			}
			if !strings.Contains(logs.String(), `"level":"ERROR","msg":"LEDGER TAMPER ALARM`) {
				t.Fatalf("no error-level alarm in the logs:\n%s", logs.String())
			}
			get := func(path string) (int, string) {
				resp, err := http.Get(srv.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "tamper alarm") {
				t.Fatalf("/readyz: %d %s", code, body)
			}
			if _, body := get("/metrics"); !regexp.MustCompile(`(?m)^rampart_ledger_tamper_alarm 1$`).MatchString(body) {
				t.Fatal("/metrics does not show rampart_ledger_tamper_alarm 1")
			}
			if d, err := alice.Check(ctx, q); d.Allowed || !api.IsStatus(err, http.StatusServiceUnavailable) {
				t.Fatalf("a decision was made after the alarm: %+v %v", d, err)
			}
			if _, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "again", Duration: "1h"}); !api.IsStatus(err, http.StatusServiceUnavailable) {
				t.Fatalf("a change was accepted after the alarm: %v", err)
			}
			if _, err := os.Stat(filepath.Join(cfg.DataDir, server.AlarmFile)); err != nil {
				t.Fatalf("the alarm was not kept in the data directory: %v", err)
			}
			srv.Close()
			in.Close()
			closed = true
			// A restart knows of the alarm and refuses.
			_, err = server.Start(ctx, cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), "refusing to serve") || !strings.Contains(err.Error(), "tamper alarm") {
				t.Fatalf("restart after the alarm: %v", err)
			}
		})
	}
}

// slowCheckpoints is the demo policy asking for a checkpoint a minute, as policies did before.
func slowCheckpoints(t *testing.T) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		if path == "settings.yaml" {
			b = []byte(strings.Replace(string(b), "checkpoint_interval: 1s", "checkpoint_interval: 1m", 1))
			if !strings.Contains(string(b), "checkpoint_interval: 1m") {
				t.Fatal("the demo settings no longer say checkpoint_interval: 1s")
			}
		}
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The unsigned window is short (invariant 5): while the ledger grows, the replica holding the
// jobs lease signs a checkpoint every second (a policy asking for one a minute is capped), and a
// clean shutdown signs the last entries.
func TestUnsignedWindowIsShort(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.PolicyFS = slowCheckpoints(t)
	in := start(t, cfg, server.Options{}, nil)
	ctx := context.Background()
	appendOne := func(in *server.Instance) uint64 {
		t.Helper()
		if _, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "window", Duration: time.Hour}); err != nil {
			t.Fatal(err)
		}
		n, err := in.Store.LedgerSize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return uint64(n)
	}
	size := appendOne(in)
	deadline := time.Now().Add(15 * time.Second) // generous: the bound is 1s plus the lease
	for {
		_, cp, err := in.Ledger.Latest(ctx)
		if err == nil && cp.Size >= size {
			if cp.Time.IsZero() {
				t.Fatal("the checkpoint carries no time")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers entry %d after 15s (latest %d, %v)", size-1, cp.Size, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	in.Close()
	// No checkpoint job at all: only the shutdown signs.
	in = start(t, cfg, server.Options{CheckpointInterval: time.Hour}, nil)
	size = appendOne(in)
	in.Close()
	in = start(t, cfg, server.Options{CheckpointInterval: time.Hour}, nil)
	defer in.Close()
	if _, cp, err := in.Ledger.Latest(ctx); err != nil || cp.Size < size {
		t.Fatalf("after a clean shutdown the newest checkpoint covers %d entries (%v), want %d", cp.Size, err, size)
	}
}
