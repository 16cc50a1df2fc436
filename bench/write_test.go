package bench

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/server"
)

// Settings of the durable write benchmark (issue 19 §1). The window per store and concurrency
// is $RAMPART_BENCH_WRITE_SECONDS (default 1 s, so that CI's -benchtime 1x run stays short);
// $RAMPART_BENCH_WRITE_CLIENTS overrides the concurrencies ("1,8,64,256").
var writeClients = []int{1, 8, 64, 256}

func writeWindow() time.Duration {
	if s := os.Getenv("RAMPART_BENCH_WRITE_SECONDS"); s != "" {
		if n, err := strconv.ParseFloat(s, 64); err == nil && n > 0 {
			return time.Duration(n * float64(time.Second))
		}
	}
	return time.Second
}

func writeConcurrencies() []int {
	s := os.Getenv("RAMPART_BENCH_WRITE_CLIENTS")
	if s == "" {
		return writeClients
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

// writeEnv is the control plane served on loopback over one store, with the approvers signed
// in and one signed-in applicant per client.
type writeEnv struct {
	in         *server.Instance
	url        string
	stop       context.CancelFunc
	served     chan error
	dir        string
	hc         *http.Client
	role       string
	owner, sec *api.Client
	applicants []*api.Client
}

// startWriteEnv starts the server on the store driver ("sqlite": WAL, synchronous=FULL, in
// a temporary directory; "postgres": dsn) with a small generated policy.
func startWriteEnv(tb testing.TB, driver, dsn string, clients int) *writeEnv {
	tb.Helper()
	ctx := context.Background()
	cfg := Config{Subjects: 100, GrantsPerSubject: 1, Resources: 20, Roles: 10, Queries: 1 << 4, AllowedPercent: 90, Seed: 2026}
	ds, err := Generate(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	env := &writeEnv{dir: tb.TempDir(), role: ds.CriticalRole,
		hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}}
	policyDir, dataDir := filepath.Join(env.dir, "policy"), filepath.Join(env.dir, "data")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for _, f := range ds.PolicyFiles {
		if err := os.WriteFile(filepath.Join(policyDir, f.Name), f.Data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	scfg := server.Config{Listen: "127.0.0.1:0", DataDir: dataDir, PolicyDir: policyDir, Store: server.StoreConfig{Driver: driver, DSN: dsn}}
	opts := server.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	if env.in, err = server.Start(ctx, scfg, opts); err != nil {
		tb.Fatalf("start the server on %s: %v", driver, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	env.url = "http://" + ln.Addr().String()
	sctx, cancel := context.WithCancel(context.Background())
	env.stop, env.served = cancel, make(chan error, 1)
	go func() { env.served <- env.in.Serve(sctx, ln) }()
	tb.Cleanup(env.close)
	if env.owner, err = env.client(ctx, OwnerApprover); err != nil {
		tb.Fatal(err)
	}
	if env.sec, err = env.client(ctx, SecurityApprover); err != nil {
		tb.Fatal(err)
	}
	for i := 0; i < clients; i++ {
		c, err := env.client(ctx, fmt.Sprintf("writer-%04d", i))
		if err != nil {
			tb.Fatal(err)
		}
		env.applicants = append(env.applicants, c)
	}
	return env
}

func (env *writeEnv) close() {
	if env.stop != nil {
		env.stop()
		<-env.served
		env.stop = nil
	}
	if env.in != nil {
		_ = env.in.Close()
		env.in = nil
	}
}

// client signs subject in (approvals need a session) and returns a client with a token bound
// to that session.
func (env *writeEnv) client(ctx context.Context, subject string) (*api.Client, error) {
	iss, err := env.in.Sessions.Create(ctx, identity.NewSession{Subject: subject, Method: "bench", AuthTime: time.Now(),
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
			Time: time.Now(), Actor: subject, User: subject, Message: subject + " signed in (benchmark)"}})
	if err != nil {
		return nil, fmt.Errorf("sign %s in: %w", subject, err)
	}
	p, err := env.in.Sessions.Verify(ctx, iss.AccessToken)
	if err != nil {
		return nil, err
	}
	tok, _, err := env.in.Tokens.Mint(ctx, identity.MintInput{Caller: p, Description: "benchmark writer"})
	if err != nil {
		return nil, fmt.Errorf("mint a token for %s: %w", subject, err)
	}
	c := api.NewClient(env.url, tok)
	c.HTTP = env.hc
	return c, nil
}

// ledgerSize counts the ledger's committed entries in the database.
func (env *writeEnv) ledgerSize(tb testing.TB) int64 {
	var n int64
	if err := env.in.Store.SQL().QueryRow(`SELECT size FROM ledger_head WHERE id = 1`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// writeResult is one window of the workflow load.
type writeResult struct {
	elapsed                   time.Duration
	create, approve, activate []time.Duration
	entries                   int64
	errs                      int
	firstErr                  error
}

// runWorkflow has clients applicants each run, until d has passed, the workflow: create a
// request, the owner approves (the first of two approvals), security approves (the second,
// which activates the grant).
func (env *writeEnv) runWorkflow(tb testing.TB, clients int, d time.Duration) writeResult {
	ctx := context.Background()
	var mu sync.Mutex
	var res writeResult
	before := env.ledgerSize(tb)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		user := env.applicants[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cr, ap, ac []time.Duration
			var errs int
			var first error
			fail := func(err error) {
				errs++
				if first == nil {
					first = err
				}
			}
			for time.Now().Before(deadline) {
				t0 := time.Now()
				c, err := user.CreateRequest(ctx, api.CreateRequestBody{Role: env.role, Reason: "benchmark: durable write throughput"})
				if err != nil {
					fail(fmt.Errorf("create: %w", err))
					continue
				}
				t1 := time.Now()
				cr = append(cr, t1.Sub(t0))
				if _, err := env.owner.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
					fail(fmt.Errorf("owner approval: %w", err))
					continue
				}
				t2 := time.Now()
				ap = append(ap, t2.Sub(t1))
				v, err := env.sec.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{})
				if err == nil && v.Request.State != access.Approved {
					err = fmt.Errorf("request %s is %s after both approvals, want approved", c.Request.ID, v.Request.State)
				}
				if err != nil {
					fail(fmt.Errorf("security approval: %w", err))
					continue
				}
				ac = append(ac, time.Since(t2))
			}
			mu.Lock()
			res.create, res.approve, res.activate = append(res.create, cr...), append(res.approve, ap...), append(res.activate, ac...)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.entries = env.ledgerSize(tb) - before
	return res
}

// bareInserts is the limit: clients goroutines each committing single-row inserts, one
// transaction each, into a table of their own on the same database, for d.
func bareInserts(tb testing.TB, db *sql.DB, numbered bool, clients int, d time.Duration) (float64, []time.Duration) {
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS bench_bare (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM bench_bare`); err != nil {
		tb.Fatal(err)
	}
	ins := `INSERT INTO bench_bare (id, payload) VALUES (?, ?)`
	if numbered {
		ins = `INSERT INTO bench_bare (id, payload) VALUES ($1, $2)`
	}
	payload := strings.Repeat("x", 600) // about a ledger entry's size
	var mu sync.Mutex
	var lat []time.Duration
	var n int
	var firstErr error
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var own []time.Duration
			var err error
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				if _, err = db.ExecContext(ctx, ins, c*100_000_000+i, payload); err != nil {
					break
				}
				own = append(own, time.Since(t0))
			}
			mu.Lock()
			lat, n = append(lat, own...), n+len(own)
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatalf("bare insert: %v", firstErr)
	}
	return float64(n) / time.Since(start).Seconds(), lat
}

// BenchmarkDurableWrites measures the ledger-backed workflow's durable write rate over HTTP
// (issue 19 §1): requests created, first approvals and grant activations (second approvals)
// per second, and ledger entries per second, with p50/p99 of each operation, at 1, 8, 64 and
// 256 concurrent clients, on SQLite (WAL, synchronous=FULL) and PostgreSQL
// ($RAMPART_TEST_POSTGRES_DSN; its server's fsync setting is printed, since a throwaway cluster
// may run with it off). Beside each, the limit: a bare loop of single-row autocommit inserts
// on the same database at the same concurrency.
func BenchmarkDurableWrites(b *testing.B) {
	maxClients := 0
	for _, c := range writeConcurrencies() {
		maxClients = max(maxClients, c)
	}
	stores := []string{"sqlite", "postgres"}
	if s := os.Getenv("RAMPART_BENCH_WRITE_STORES"); s != "" {
		stores = strings.Split(s, ",")
	}
	for _, driver := range stores {
		b.Run(driver, func(b *testing.B) {
			dsn := ""
			if driver == "postgres" {
				dsn = testenv.PostgresDSN(b)
			}
			env := startWriteEnv(b, driver, dsn, maxClients)
			db, numbered := env.in.Store.SQL(), driver == "postgres"
			if numbered {
				var fsync, sc string
				_ = db.QueryRow(`SHOW fsync`).Scan(&fsync)
				_ = db.QueryRow(`SHOW synchronous_commit`).Scan(&sc)
				fmt.Printf("durable writes: postgres server fsync=%s synchronous_commit=%s\n", fsync, sc)
			}
			for _, clients := range writeConcurrencies() {
				b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
					var r writeResult
					var bare float64
					var bareLat []time.Duration
					for i := 0; i < b.N; i++ {
						r = env.runWorkflow(b, clients, writeWindow())
						bare, bareLat = bareInserts(b, db, numbered, clients, writeWindow())
					}
					if r.firstErr != nil {
						b.Fatalf("%d of the workflow's operations failed; the first: %v", r.errs, r.firstErr)
					}
					sec := r.elapsed.Seconds()
					cr, ap, ac, bl := Summarize(r.create), Summarize(r.approve), Summarize(r.activate), Summarize(bareLat)
					b.ReportMetric(float64(len(r.create))/sec, "creates/s")
					b.ReportMetric(float64(len(r.approve))/sec, "approvals/s")
					b.ReportMetric(float64(len(r.activate))/sec, "activations/s")
					b.ReportMetric(float64(r.entries)/sec, "entries/s")
					b.ReportMetric(bare, "bare-inserts/s")
					fmt.Printf("durable writes %s clients=%d load=%s: creates %.0f/s (p50 %s p99 %s), approvals %.0f/s (p50 %s p99 %s), activations %.0f/s (p50 %s p99 %s), ledger entries %.0f/s; bare inserts %.0f/s (p50 %s p99 %s)\n",
						driver, clients, loadAvg(),
						float64(len(r.create))/sec, ms(cr.P50), ms(cr.P99),
						float64(len(r.approve))/sec, ms(ap.P50), ms(ap.P99),
						float64(len(r.activate))/sec, ms(ac.P50), ms(ac.P99),
						float64(r.entries)/sec, bare, ms(bl.P50), ms(bl.P99))
				})
			}
		})
	}
}

func ms(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

// loadAvg is the machine's 1-minute load average, printed with every figure (the machine may
// be shared).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}
