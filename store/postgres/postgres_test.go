package postgres_test

import (
	"context"
	"os"
	"testing"

	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlstore"
	"rampart.dev/rampart/store/storetest"
)

func TestMain(m *testing.M) {
	storetest.RunCrashChild(postgres.Open)
	os.Exit(m.Run())
}

func newStore(t *testing.T) *sqlstore.DB {
	s, err := postgres.Open(context.Background(), testenv.PostgresDSN(t))
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
			dsn := testenv.PostgresDSN(t)
			return func(t *testing.T) *sqlstore.DB {
				s, err := postgres.Open(context.Background(), dsn)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
		},
		InjectLedgerFailure: func(t *testing.T, s *sqlstore.DB) {
			for _, q := range []string{
				`CREATE FUNCTION inject_ledger_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected ledger failure'; END $$`,
				`CREATE TRIGGER inject_ledger_failure BEFORE INSERT ON ledger FOR EACH ROW EXECUTE FUNCTION inject_ledger_failure()`,
			} {
				if _, err := s.SQL().Exec(q); err != nil {
					t.Fatal(err)
				}
			}
		},
	})
}

func TestCrashMidTransaction(t *testing.T) {
	storetest.CrashMidTransaction(t, testenv.PostgresDSN(t), postgres.Open)
}

// A store that cannot reach the server fails with a clear error rather than hanging.
func TestUnreachable(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	p := testenv.NewProxy(t, testenv.PostgresHostPort(t, dsn))
	p.Cut()
	_, err := postgres.Open(context.Background(), testenv.ViaProxy(t, dsn, p))
	if err == nil {
		t.Fatal("opened a store through a cut connection")
	}
}
