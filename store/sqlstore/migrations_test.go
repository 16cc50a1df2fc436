package sqlstore

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// The migration that adds grants.requester fills it in for grants made before, from their
// requests.
func TestMigrationFillsGrantRequesters(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all := migrations
	t.Cleanup(func() { migrations = all })
	n := slices.IndexFunc(all, func(m string) bool { return strings.Contains(m, "ALTER TABLE grants ADD COLUMN requester") })
	if n < 0 {
		t.Fatal("no migration adds grants.requester")
	}
	migrations = all[:n]
	s, err := Open(ctx, db, Dialect{Name: "sqlite"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO requests (id, role, requester, beneficiary, reason, duration_ns, state, policy, created_at, expires_at, decided_at, grant_id, renewal_of, break_glass, post_review, version)
		 VALUES ('req_a', 'r', 'alice', 'k8s:dev/research/evaluator', 'x', 1, 'approved', 'p', 0, 0, 0, 'grt_a', '', false, '', 1)`,
		`INSERT INTO grants (id, request_id, role, subject, starts_at, expires_at, state, break_glass, ended_at, ended_by, end_reason, version)
		 VALUES ('grt_a', 'req_a', 'r', 'k8s:dev/research/evaluator', 0, 1, 'active', false, 0, '', '', 2)`,
		`INSERT INTO grants (id, request_id, role, subject, starts_at, expires_at, state, break_glass, ended_at, ended_by, end_reason, version)
		 VALUES ('grt_b', 'req_gone', 'r', 'bob', 0, 1, 'active', false, 0, '', '', 3)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	migrations = all
	if err := s.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"grt_a": "alice", "grt_b": ""} {
		g, err := s.Grant(ctx, id)
		if err != nil || g.Requester != want {
			t.Fatalf("%s after the migration: requester %q, want %q (%v)", id, g.Requester, want, err)
		}
	}
}
