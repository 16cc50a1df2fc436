package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// latencySamples is how many individually timed calls each p99 is computed from.
const latencySamples = 100_000

// inProcess is the in-process comparison: Rampart's index loaded from a SQLite store, and OPA
// over the same grants.
type inProcess struct {
	ds    *Dataset
	dir   string
	store *sqlstore.DB
	index *authz.Index
	opa   *OPA
	setup []string // how long each step took, for the summary
}

var (
	inProcOnce sync.Once
	inProcEnv  *inProcess
	inProcErr  error
	// inProcInfo describes the data set and the setup steps, for the summary.
	inProcInfo []string
)

// inProc builds the in-process environment once per test binary.
func inProc(tb testing.TB) *inProcess {
	tb.Helper()
	inProcOnce.Do(func() { inProcEnv, inProcErr = newInProcess(context.Background()) })
	if inProcErr != nil {
		tb.Fatal(inProcErr)
	}
	return inProcEnv
}

// newInProcess generates the data set, fills a SQLite store with it, loads the decision index
// from the store and loads OPA's store from the same grants.
func newInProcess(ctx context.Context) (_ *inProcess, err error) {
	env := &inProcess{}
	step := func(name string, t0 time.Time) {
		env.setup = append(env.setup, fmt.Sprintf("%s %s", name, time.Since(t0).Round(time.Millisecond)))
	}
	t0 := time.Now()
	if env.ds, err = Generate(DefaultConfig()); err != nil {
		return nil, err
	}
	step("generate+parse policy", t0)
	if env.dir, err = os.MkdirTemp("", "rampart-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	if env.store, err = sqlite.Open(ctx, filepath.Join(env.dir, "rampart.db")); err != nil {
		return nil, err
	}
	t0 = time.Now()
	if err := env.ds.Fill(ctx, env.store, 10_000); err != nil {
		return nil, err
	}
	step(fmt.Sprintf("insert %d grants into SQLite", len(env.ds.Grants)), t0)
	t0 = time.Now()
	env.index = authz.New(env.store, env.ds.Policy, authz.Options{MaxStaleness: time.Hour})
	if err := env.index.Load(ctx); err != nil {
		return nil, err
	}
	step("load the decision index", t0)
	if st := env.index.Stats(); st.ActiveGrants != len(env.ds.Grants) {
		return nil, fmt.Errorf("the index holds %d grants; the store was given %d", st.ActiveGrants, len(env.ds.Grants))
	}
	t0 = time.Now()
	if env.opa, err = NewOPA(ctx, env.ds.OPAData(), true); err != nil {
		return nil, err
	}
	step("load OPA's store and prepare the query", t0)
	ds := env.ds
	inProcInfo = append([]string{fmt.Sprintf("data set: %d subjects, %d grants (%d‰ lapsed), %d resources, %d roles; %d queries, %.1f%% allowed",
		ds.Subjects, len(ds.Grants), ds.LapsedPerMille, ds.Resources, ds.Roles, len(ds.Queries), 100*ds.AllowedFraction())}, env.setup...)
	return env, nil
}

// close releases the store and its files.
func (env *inProcess) close() {
	if env.store != nil {
		env.store.Close()
	}
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
}

// releaseInProcess frees the in-process environment (the HTTP benchmarks want the memory and
// a quiet garbage collector).
func releaseInProcess() {
	if inProcEnv != nil {
		inProcEnv.close()
	}
	inProcEnv, inProcErr, inProcOnce = nil, nil, sync.Once{}
}

// TestAgreement proves that Rampart, OPA and the brute-force reference give the same answer to
// the benchmark's queries, so the benchmarks compare engines that do the same work.
func TestAgreement(t *testing.T) {
	env := inProc(t)
	ctx := context.Background()
	const n = 5000
	allowed := 0
	for i, q := range env.ds.Queries[:n] {
		now := time.Now()
		ref := env.ds.Reference(q.Query, now)
		d := env.index.Check(q.Query)
		o, err := env.opa.Allowed(ctx, q.Query)
		if err != nil {
			t.Fatalf("query %d %+v: OPA: %v", i, q.Query, err)
		}
		if d.Unavailable {
			t.Fatalf("query %d: Rampart failed closed: %s", i, d.Reason)
		}
		if ref != q.Want || d.Allowed != ref || o != ref {
			t.Errorf("query %d %+v: generated %v, reference %v, Rampart %v (%s), OPA %v", i, q.Query, q.Want, ref, d.Allowed, d.Reason, o)
		}
		if d.Allowed {
			allowed++
			if d.GrantID == "" || d.Role == "" {
				t.Errorf("query %d: allowed without naming the grant and role: %+v", i, d)
			}
		}
	}
	if frac := float64(allowed) / n; frac < 0.85 || frac > 0.95 {
		t.Errorf("%.1f%% of the queries were allowed; the mix should allow about %d%%", 100*frac, env.ds.AllowedPercent)
	}
	t.Logf("%d queries, %d allowed: Rampart, OPA and the reference agree on every one", n, allowed)
}

// TestLapsedGrantsDeny checks that both engines deny what only an expired or not yet started
// grant would allow (invariant 2), for every such grant in the data set.
func TestLapsedGrantsDeny(t *testing.T) {
	env := inProc(t)
	ctx := context.Background()
	checked := 0
	now := time.Now()
	for _, g := range env.ds.Grants {
		if g.ActiveAt(now) {
			continue
		}
		for _, res := range env.ds.Policy.RoleResources(g.Role) {
			q := authz.Query{Subject: g.Subject, Action: env.ds.Policy.RoleActions(g.Role, res.Name)[0], Resource: res.Name}
			if env.ds.Reference(q, now) {
				continue // another grant gives it
			}
			checked++
			if d := env.index.Check(q); d.Allowed {
				t.Errorf("Rampart allowed %+v through lapsed grant %s: %s", q, g.ID, d.Reason)
			}
			if o, err := env.opa.Allowed(ctx, q); err != nil || o {
				t.Errorf("OPA allowed %+v through lapsed grant %s (err %v)", q, g.ID, err)
			}
		}
	}
	if checked < 100 {
		t.Fatalf("only %d queries reach lapsed grants; the data set should have about %d lapsed grants", checked, len(env.ds.Grants)*env.ds.LapsedPerMille/1000)
	}
	t.Logf("%d queries that only lapsed grants would allow: both engines deny", checked)
}

// BenchmarkCheck measures one decision, in process: Rampart's authz.Index.Check against OPA's
// PreparedEvalQuery.Eval, over the same data and query mix. Each sub-benchmark also reports
// the p99 of latencySamples individually timed calls.
func BenchmarkCheck(b *testing.B) {
	env := inProc(b)
	ctx := context.Background()
	qs := env.ds.Queries
	b.Run("rampart", func(b *testing.B) {
		check := func(q Query) {
			if d := env.index.Check(q.Query); d.Allowed != q.Want {
				b.Fatalf("Rampart answered %v to %+v: %s", d.Allowed, q.Query, d.Reason)
			}
		}
		runCheck(b, "check/rampart", qs, check)
	})
	b.Run("opa", func(b *testing.B) {
		check := func(q Query) {
			if ok, err := env.opa.Allowed(ctx, q.Query); err != nil || ok != q.Want {
				b.Fatalf("OPA answered %v (err %v) to %+v", ok, err, q.Query)
			}
		}
		runCheck(b, "check/opa", qs, check)
	})
}

// runCheck runs check in the benchmark loop, then (once per key) times latencySamples calls
// one by one for the p99, and records both for the summary.
func runCheck(b *testing.B, key string, qs []Query, check func(Query)) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		check(qs[i%len(qs)])
		i++
	}
	nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	lat := sampledLatency(key, func() Latencies { return Summarize(TimeEach(latencySamples, qs, check)) })
	b.ReportMetric(float64(lat.P99.Nanoseconds()), "p99-ns")
	record(key, nsPerOp, lat)
}

// BenchmarkCheckParallel is BenchmarkCheck with every core asking at once (b.RunParallel).
func BenchmarkCheckParallel(b *testing.B) {
	env := inProc(b)
	ctx := context.Background()
	qs := env.ds.Queries
	run := func(key string, check func(Query) bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			var mu sync.Mutex
			next := 0
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				i := next * 7919
				next++
				mu.Unlock()
				for pb.Next() {
					q := qs[i%len(qs)]
					if !check(q) {
						b.Errorf("%s gave the wrong answer to %+v", key, q.Query)
						return
					}
					i++
				}
			})
			record(key, float64(b.Elapsed().Nanoseconds())/float64(b.N), Latencies{})
		}
	}
	b.Run("rampart", run("parallel/rampart", func(q Query) bool { return env.index.Check(q.Query).Allowed == q.Want }))
	b.Run("opa", run("parallel/opa", func(q Query) bool {
		ok, err := env.opa.Allowed(ctx, q.Query)
		return err == nil && ok == q.Want
	}))
}

// Results recorded by the benchmarks, printed by TestMain after they have all run.
var (
	resultsMu sync.Mutex
	results   = map[string]result{}
	latCache  = map[string]Latencies{}
)

type result struct {
	nsPerOp float64
	lat     Latencies
}

// record keeps the latest numbers for key; the benchmark framework's last, longest run wins.
func record(key string, nsPerOp float64, lat Latencies) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[key] = result{nsPerOp: nsPerOp, lat: lat}
}

// sampledLatency measures latencies for key once per test binary: the framework calls a
// benchmark several times while it sizes b.N, and the samples need not be taken each time.
func sampledLatency(key string, measure func() Latencies) Latencies {
	resultsMu.Lock()
	l, ok := latCache[key]
	resultsMu.Unlock()
	if ok {
		return l
	}
	l = measure()
	resultsMu.Lock()
	latCache[key] = l
	resultsMu.Unlock()
	return l
}

// TestMain runs the tests and benchmarks, then prints the comparison: the ratios and p99s of
// the in-process benchmarks, and the HTTP and approval-to-allow results if they ran.
func TestMain(m *testing.M) {
	mach0, own0 := machineCPU(), ownCPU()
	code := m.Run()
	printSummary()
	resultsMu.Lock()
	printEgressSummary()
	resultsMu.Unlock()
	if len(suggestSummary) > 1 {
		fmt.Println("\n=== Suggestions (10k resources, 2k roles) ===")
		for _, l := range suggestSummary {
			fmt.Println(l)
		}
	}
	closeHTTPEnv()   // waits for OPA, so its CPU time counts as this process's children's
	closeEgressEnv() // and for smokescreen
	releaseInProcess()
	closeAdmissionEnv()
	if mach1, own1 := machineCPU(), ownCPU(); mach1.total > mach0.total && len(results)+len(httpResults)+len(egressResults) > 0 {
		total, busy, own := float64(mach1.total-mach0.total), mach1.busy-mach0.busy, own1-own0
		fmt.Printf("machine CPU during the run: %.0f%% busy, of which this benchmark (and OPA, smokescreen) %.0f%% and other processes %.0f%%; %.1f%% stolen by the hypervisor\n",
			100*float64(busy)/total, 100*float64(own)/total, 100*float64(max(0, busy-own))/total, 100*float64(mach1.steal-mach0.steal)/total)
	}
	os.Exit(code)
}

// printSummary prints whatever the benchmarks recorded.
func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 && len(httpResults) == 0 && len(approvalLat) == 0 {
		return
	}
	fmt.Println("\n=== Rampart vs OPA ===")
	for _, s := range inProcInfo {
		fmt.Println("in-process", s)
	}
	targets := map[string]string{"p99": "< 20µs", "ratio": ">= 10x"}
	if r, o := results["check/rampart"], results["check/opa"]; r.nsPerOp > 0 && o.nsPerOp > 0 {
		ratio := o.nsPerOp / r.nsPerOp
		fmt.Printf("in-process check: Rampart %.0f ns/op, OPA %.0f ns/op: OPA/Rampart = %.1fx (target %s: %s)\n",
			r.nsPerOp, o.nsPerOp, ratio, targets["ratio"], verdict(ratio >= 10))
		fmt.Printf("in-process p99 (%d timed calls each): Rampart %s (target %s: %s), OPA %s; p50 Rampart %s, OPA %s\n",
			r.lat.N, r.lat.P99, targets["p99"], verdict(r.lat.P99 < 20*time.Microsecond), o.lat.P99, r.lat.P50, o.lat.P50)
	}
	if r, o := results["parallel/rampart"], results["parallel/opa"]; r.nsPerOp > 0 && o.nsPerOp > 0 {
		fmt.Printf("in-process check, all cores: Rampart %.0f ns/op, OPA %.0f ns/op: OPA/Rampart = %.1fx\n", r.nsPerOp, o.nsPerOp, o.nsPerOp/r.nsPerOp)
	}
	printHTTPSummary()
}

// verdict says whether a target was met.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// cpuTicks are machine-wide CPU times from /proc/stat, in clock ticks.
type cpuTicks struct{ busy, steal, total int64 }

// machineCPU reads the machine's CPU times (zeros if /proc/stat cannot be read). Steal is time
// a virtual machine's CPUs wanted to run but the host ran something else.
func machineCPU() cpuTicks {
	var c cpuTicks
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, x := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseInt(x, 10, 64)
		c.total += n
		if i != 3 && i != 4 && i != 7 { // not idle, iowait or steal
			c.busy += n
		}
		if i == 7 {
			c.steal = n
		}
	}
	return c
}

// ownCPU returns the CPU ticks used by this process and its waited-for children (OPA).
func ownCPU() int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	var n int64
	for _, x := range f[11:15] { // utime stime cutime cstime
		v, _ := strconv.ParseInt(x, 10, 64)
		n += v
	}
	return n
}
