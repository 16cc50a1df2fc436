package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
	"rampart.dev/rampart/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.RunCrashChild(sqlite.Open)
	os.Exit(m.Run())
}

func newStore(t *testing.T) *sqlstore.DB {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: newStore,
		Shared: func(t *testing.T) func(t *testing.T) *sqlstore.DB {
			path := filepath.Join(t.TempDir(), "shared.db")
			return func(t *testing.T) *sqlstore.DB {
				s, err := sqlite.Open(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		},
		InjectLedgerFailure: func(t *testing.T, s *sqlstore.DB) {
			_, err := s.SQL().Exec(`CREATE TRIGGER inject_ledger_failure BEFORE INSERT ON ledger BEGIN SELECT RAISE(ABORT, 'injected ledger failure'); END`)
			if err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestCrashMidTransaction(t *testing.T) {
	storetest.CrashMidTransaction(t, filepath.Join(t.TempDir(), "crash.db"), sqlite.Open)
}

func TestFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "rampart.db")
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("database file mode %v is readable by others", fi.Mode().Perm())
	}
}
