package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/server"
	"rampart.dev/rampart/store/sqlite"
)

// Settings of the HTTP comparison. The window per target and concurrency can be changed with
// $RAMPART_BENCH_HTTP_SECONDS; the OPA binary is $OPA_BIN or bin/opa (run.sh builds it).
var (
	httpClients    = []int{8, 32}
	httpWarmup     = time.Second
	approvalRounds = 60
)

// httpWindow is how long each target is measured at each concurrency.
func httpWindow() time.Duration {
	if s := os.Getenv("RAMPART_BENCH_HTTP_SECONDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return 5 * time.Second
}

// httpEnv is Rampart's control plane served in process on loopback and `opa run --server` as a
// subprocess, both over the same data set.
type httpEnv struct {
	ds           *Dataset
	dir          string
	in           *server.Instance
	stopServe    context.CancelFunc
	served       chan error
	rampartURL   string
	serviceToken string
	opa          *exec.Cmd
	opaURL       string
	setup        []string
}

var (
	httpOnce sync.Once
	httpE    *httpEnv
	httpErr  error
)

// httpEnvFor starts both servers once per test binary.
func httpEnvFor(tb testing.TB) *httpEnv {
	tb.Helper()
	httpOnce.Do(func() {
		releaseInProcess()
		httpE, httpErr = startHTTPEnv(context.Background())
	})
	if httpErr != nil {
		tb.Fatal(httpErr)
	}
	return httpE
}

// closeHTTPEnv stops both servers if they were started.
func closeHTTPEnv() {
	if httpE != nil {
		httpE.close()
		httpE = nil
	}
}

// startHTTPEnv writes the generated policy to a policy directory, pre-fills the server's SQLite
// file with the grants, starts the control plane and OPA, and issues the service token.
func startHTTPEnv(ctx context.Context) (_ *httpEnv, err error) {
	env := &httpEnv{}
	step := func(name string, t0 time.Time) {
		env.setup = append(env.setup, fmt.Sprintf("%s %s", name, time.Since(t0).Round(time.Millisecond)))
	}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	opaBin := os.Getenv("OPA_BIN")
	if opaBin == "" {
		opaBin = filepath.Join("bin", "opa")
	}
	if _, err := os.Stat(opaBin); err != nil {
		return nil, fmt.Errorf("the OPA binary is missing (%v); build it with: go build -o bin/opa github.com/open-policy-agent/opa (run.sh does)", err)
	}
	cfg := DefaultConfig()
	// The server's expiry sweeper would record lapsed grants as they are found, writing to the
	// ledger during the measurement; the HTTP data set has none.
	cfg.LapsedPerMille = 0
	t0 := time.Now()
	if env.ds, err = Generate(cfg); err != nil {
		return nil, err
	}
	step("generate+parse policy", t0)
	if env.dir, err = os.MkdirTemp("", "rampart-bench-http-"); err != nil {
		return nil, err
	}
	policyDir, dataDir := filepath.Join(env.dir, "policy"), filepath.Join(env.dir, "data")
	if err := os.MkdirAll(policyDir, 0o700); err != nil {
		return nil, err
	}
	for _, f := range env.ds.PolicyFiles {
		if err := os.WriteFile(filepath.Join(policyDir, f.Name), f.Data, 0o600); err != nil {
			return nil, err
		}
	}
	scfg := server.Config{Listen: "127.0.0.1:0", DataDir: dataDir, PolicyDir: policyDir, Store: server.StoreConfig{Driver: "sqlite"}}
	opts := server.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}

	// A first start creates the ledger key and records the policy load; the grants are then
	// written into <DataDir>/rampart.db, and the second start loads the index from them.
	t0 = time.Now()
	first, err := server.Start(ctx, scfg, opts)
	if err != nil {
		return nil, fmt.Errorf("first start: %w", err)
	}
	if err := first.Close(); err != nil {
		return nil, err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "rampart.db"))
	if err != nil {
		return nil, err
	}
	err = env.ds.Fill(ctx, st, 10_000)
	st.Close()
	if err != nil {
		return nil, err
	}
	step(fmt.Sprintf("pre-fill %d grants", len(env.ds.Grants)), t0)
	t0 = time.Now()
	if env.in, err = server.Start(ctx, scfg, opts); err != nil {
		return nil, fmt.Errorf("start with the pre-filled store: %w", err)
	}
	step("server.Start (verify ledger, load index)", t0)
	if n := env.in.Index.Stats().ActiveGrants; n != len(env.ds.Grants) {
		return nil, fmt.Errorf("the server's index holds %d grants, want %d", n, len(env.ds.Grants))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	env.rampartURL = "http://" + ln.Addr().String()
	serveCtx, cancel := context.WithCancel(context.Background())
	env.stopServe, env.served = cancel, make(chan error, 1)
	go func() { env.served <- env.in.Serve(serveCtx, ln) }()
	if env.serviceToken, _, err = env.in.Tokens.Issue(ctx, "service:bench", identity.KindService, "benchmark load generator", "bench", 24*time.Hour); err != nil {
		return nil, err
	}

	t0 = time.Now()
	if err := env.startOPA(opaBin); err != nil {
		return nil, err
	}
	step("start OPA and load its data", t0)
	return env, nil
}

// startOPA writes the data document and runs `opa run --server` on a free loopback port with
// its fastest store setting and request logging off (Rampart's is off too: warn level).
func (env *httpEnv) startOPA(bin string) error {
	dir := filepath.Join(env.dir, "opa")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(env.ds.OPAData())
	if err != nil {
		return err
	}
	dataFile := filepath.Join(dir, "data.json")
	if err := os.WriteFile(dataFile, data, 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	logf, err := os.Create(filepath.Join(dir, "opa.log"))
	if err != nil {
		return err
	}
	env.opa = exec.Command(bin, "run", "--server", "--addr", addr, "--log-level", "error",
		"--skip-version-check", "--disable-telemetry", "--optimize-store-for-read-speed", dataFile, CheckRegoFile)
	env.opa.Stdout, env.opa.Stderr = logf, logf
	env.opa.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := env.opa.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	env.opaURL = "http://" + addr
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(env.opaURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(logf.Name())
	return fmt.Errorf("OPA did not become healthy on %s within 60s; its log:\n%s", addr, log)
}

// close stops OPA and the control plane and removes the files.
func (env *httpEnv) close() {
	if env.opa != nil && env.opa.Process != nil {
		env.opa.Process.Kill()
		env.opa.Wait()
	}
	if env.stopServe != nil {
		env.stopServe()
		<-env.served
	}
	if env.in != nil {
		env.in.Close()
	}
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
}

// httpTarget is one server under load: where to post, what, and how to read the answer.
type httpTarget struct {
	name   string
	url    string
	header http.Header
	bodies [][]byte // one per query
	// allowed reads the decision from a 200 answer.
	allowed func([]byte) (bool, error)
	// pids are the processes whose CPU time the target costs: this one (the load generator,
	// and Rampart's server) and, for OPA, its server.
	pids []int
	// churn, if set, counts the connections the server's database pool has closed for
	// exceeding its idle limit so far (each was opened for one burst of requests).
	churn func() int64
}

// targets returns Rampart's /v1/check and OPA's data API, with each query's body encoded in
// advance so the load generator spends its time waiting on the servers.
func (env *httpEnv) targets() []httpTarget {
	rampart := httpTarget{name: "rampart", url: env.rampartURL + "/v1/check",
		header: http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + env.serviceToken}},
		allowed: func(b []byte) (bool, error) {
			var d struct {
				Allowed *bool `json:"allowed"`
			}
			if err := json.Unmarshal(b, &d); err != nil {
				return false, err
			}
			if d.Allowed == nil {
				return false, fmt.Errorf("no decision in %s", b)
			}
			return *d.Allowed, nil
		},
		pids:  []int{os.Getpid()},
		churn: func() int64 { return env.in.Store.SQL().Stats().MaxIdleClosed }}
	opa := httpTarget{name: "opa", url: env.opaURL + "/v1/data/rampart/allow",
		header: http.Header{"Content-Type": {"application/json"}},
		allowed: func(b []byte) (bool, error) {
			var r struct {
				Result *bool `json:"result"`
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return false, err
			}
			if r.Result == nil {
				return false, fmt.Errorf("no result in %s", b)
			}
			return *r.Result, nil
		},
		pids: []int{os.Getpid(), env.opa.Process.Pid}}
	for _, q := range env.ds.Queries {
		rb, _ := json.Marshal(q.Query)
		ob, _ := json.Marshal(map[string]any{"input": q.Query})
		rampart.bodies = append(rampart.bodies, rb)
		opa.bodies = append(opa.bodies, ob)
	}
	return []httpTarget{rampart, opa}
}

// cpuTime returns the user+system CPU time pids have used so far, from /proc/PID/stat (in
// clock ticks of 10ms, the Linux default).
func cpuTime(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// Fields after the command name, which is in parentheses and may hold spaces.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			return 0, fmt.Errorf("/proc/%d/stat has %d fields", pid, len(f))
		}
		for _, x := range f[11:13] { // utime, stime
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return 0, err
			}
			total += time.Duration(n) * 10 * time.Millisecond
		}
	}
	return total, nil
}

// loadResult is what load on one target measured, possibly over several windows.
type loadResult struct {
	target   string
	clients  int
	ok       int // answered 200 with the expected decision
	failed   int // transport errors, non-200 answers and unreadable answers
	wrong    int // answered with the wrong decision
	elapsed  time.Duration
	cpu      time.Duration // CPU time of the target's processes (see httpTarget.pids)
	cpuSelf  time.Duration // the part of cpu used by this process
	churn    int64         // database connections closed for exceeding the pool's idle limit
	samples  []time.Duration
	lat      Latencies
	firstErr error
	// windowRPS is the throughput of each window, to show how much the machine's load varied.
	windowRPS []float64
}

// rps is the measured throughput of correct answers.
func (r loadResult) rps() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// perRequest divides d by the number of requests answered.
func (r loadResult) perRequest(d time.Duration) time.Duration {
	if n := r.ok + r.failed + r.wrong; n > 0 {
		return d / time.Duration(n)
	}
	return 0
}

// cpuPerRequest is the CPU time spent per answered request by the server and the load
// generator together; unlike throughput it hardly depends on what else the machine runs.
func (r loadResult) cpuPerRequest() time.Duration {
	if n := r.ok + r.failed + r.wrong; n > 0 {
		return r.cpu / time.Duration(n)
	}
	return 0
}

// add merges another window's measurement into r.
func (r *loadResult) add(w loadResult) {
	r.target, r.clients = w.target, w.clients
	r.ok, r.failed, r.wrong = r.ok+w.ok, r.failed+w.failed, r.wrong+w.wrong
	r.elapsed, r.cpu, r.cpuSelf, r.churn = r.elapsed+w.elapsed, r.cpu+w.cpu, r.cpuSelf+w.cpuSelf, r.churn+w.churn
	r.samples = append(r.samples, w.samples...)
	r.lat = Summarize(slices.Clone(r.samples))
	if r.firstErr == nil {
		r.firstErr = w.firstErr
	}
	r.windowRPS = append(r.windowRPS, w.rps())
}

// runLoad posts queries to t from clients goroutines, each with its own keep-alive connection,
// for d, and times every request.
func runLoad(t httpTarget, qs []Query, clients int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients,
		IdleConnTimeout: time.Minute, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	type worker struct {
		lat               []time.Duration
		ok, failed, wrong int
		err               error
	}
	ws := make([]worker, clients)
	var wg sync.WaitGroup
	cpu0, cpuErr := cpuTime(t.pids)
	self0, _ := cpuTime(t.pids[:1])
	var churn0 int64
	if t.churn != nil {
		churn0 = t.churn()
	}
	start := time.Now()
	deadline := start.Add(d)
	for w := range ws {
		wg.Go(func() {
			me := &ws[w]
			me.lat = make([]time.Duration, 0, 1<<14)
			fail := func(err error) {
				me.failed++
				if me.err == nil {
					me.err = err
				}
			}
			for i := w * (len(qs) / clients); time.Now().Before(deadline); i++ {
				n := i % len(qs)
				req, err := http.NewRequest("POST", t.url, bytes.NewReader(t.bodies[n]))
				if err != nil {
					fail(err)
					return
				}
				req.Header = t.header.Clone()
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					fail(err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				me.lat = append(me.lat, time.Since(t0))
				if err != nil || resp.StatusCode != 200 {
					fail(fmt.Errorf("%s: status %d, err %v: %.300s", t.name, resp.StatusCode, err, body))
					continue
				}
				switch allowed, err := t.allowed(body); {
				case err != nil:
					fail(fmt.Errorf("%s: unreadable answer %.300s: %v", t.name, body, err))
				case allowed != qs[n].Want:
					me.wrong++
					if me.err == nil {
						me.err = fmt.Errorf("%s answered %v to %+v, want %v: %.300s", t.name, allowed, qs[n].Query, qs[n].Want, body)
					}
				default:
					me.ok++
				}
			}
		})
	}
	wg.Wait()
	r := loadResult{target: t.name, clients: clients, elapsed: time.Since(start), firstErr: cpuErr}
	if cpu1, err := cpuTime(t.pids); err == nil && cpuErr == nil {
		self1, _ := cpuTime(t.pids[:1])
		r.cpu, r.cpuSelf = cpu1-cpu0, self1-self0
	}
	if t.churn != nil {
		r.churn = t.churn() - churn0
	}
	for _, w := range ws {
		r.ok, r.failed, r.wrong = r.ok+w.ok, r.failed+w.failed, r.wrong+w.wrong
		r.samples = append(r.samples, w.lat...)
		if r.firstErr == nil {
			r.firstErr = w.err
		}
	}
	r.lat = Summarize(slices.Clone(r.samples))
	return r
}

// HTTP results, printed by TestMain; guarded by resultsMu.
var (
	httpResults   = map[string]*loadResult{}
	approvalLat   []time.Duration
	approvalPolls int
)

// httpSlices is how many alternating windows httpWindow is split into, so that a burst of
// load from other processes on a shared machine hits both servers alike.
const httpSlices = 3

// compareHTTP measures every target at one concurrency: a warm-up each, then httpSlices rounds
// in which each target gets httpWindow/httpSlices in turn. Results go to httpResults under
// prefix/clients=N/target.
func compareHTTP(prefix string, targets []httpTarget, qs []Query, clients int) {
	for _, t := range targets {
		runLoad(t, qs, clients, httpWarmup)
	}
	res := map[string]*loadResult{}
	for range httpSlices {
		for _, t := range targets {
			if res[t.name] == nil {
				res[t.name] = &loadResult{}
			}
			res[t.name].add(runLoad(t, qs, clients, httpWindow()/httpSlices))
		}
	}
	resultsMu.Lock()
	defer resultsMu.Unlock()
	for name, r := range res {
		r.samples = nil // summarised; free the memory
		httpResults[fmt.Sprintf("%sclients=%d/%s", prefix, clients, name)] = r
	}
}

// BenchmarkHTTP measures each server's throughput and latency under 8 and 32 concurrent
// keep-alive clients posting the query mix: after a warm-up, each target gets httpWindow split
// into alternating slices. Each sub-benchmark does its work once (it lasts longer than
// -benchtime) and reports, per target, req/s, p50-µs, p99-µs and cpu-µs/req (server and load
// generator together), and rampart/opa-x, the throughput ratio; ns/op is suppressed because it
// means nothing here.
func BenchmarkHTTP(b *testing.B) {
	env := httpEnvFor(b)
	qs := env.ds.Queries
	targets := env.targets()
	run := func(prefix string, clients int, targets []httpTarget) {
		b.Run(fmt.Sprintf("%sclients=%d", prefix, clients), func(b *testing.B) {
			key := func(name string) string { return fmt.Sprintf("%sclients=%d/%s", prefix, clients, name) }
			resultsMu.Lock()
			_, done := httpResults[key(targets[0].name)]
			resultsMu.Unlock()
			if !done {
				compareHTTP(prefix, targets, qs, clients)
			}
			resultsMu.Lock()
			defer resultsMu.Unlock()
			b.ReportMetric(0, "ns/op")
			for _, t := range targets {
				r := httpResults[key(t.name)]
				if r.failed > 0 || r.wrong > 0 || r.ok == 0 {
					b.Fatalf("%s: %d correct, %d failed, %d wrong answers; first problem: %v", key(t.name), r.ok, r.failed, r.wrong, r.firstErr)
				}
				b.ReportMetric(r.rps(), t.name+"-req/s")
				b.ReportMetric(float64(r.lat.P50.Microseconds()), t.name+"-p50-µs")
				b.ReportMetric(float64(r.lat.P99.Microseconds()), t.name+"-p99-µs")
				b.ReportMetric(float64(r.cpuPerRequest().Nanoseconds())/1000, t.name+"-cpu-µs/req")
			}
			if r, o := httpResults[key("rampart")], httpResults[key("opa")]; r != nil && o != nil {
				b.ReportMetric(r.rps()/o.rps(), "rampart/opa-x")
			}
		})
	}
	for _, clients := range httpClients {
		run("", clients, targets)
	}
}

// BenchmarkApprovalToAllow measures how long after the final approval of a request /v1/check
// first allows the new grant. Each iteration is one round over HTTP: a new user gets a token
// and requests the critical role, one owner approves, a check must still deny (two distinct
// approvers are needed), security approves, and /v1/check is polled from the moment the second
// approval's answer has arrived. ns/op is one whole round; p50-ms, p99-ms and max-ms are the
// approval-to-allow latency over every round run so far (at least approvalRounds).
func BenchmarkApprovalToAllow(b *testing.B) {
	env := httpEnvFor(b)
	ctx := context.Background()
	w, err := env.newWorkflow(ctx)
	if err != nil {
		b.Fatal(err)
	}
	resultsMu.Lock()
	done := len(approvalLat)
	resultsMu.Unlock()
	for i := 0; i < b.N || done+i < approvalRounds; i++ {
		lat, polls, err := w.round(ctx, done+i)
		if err != nil {
			b.Fatal(err)
		}
		resultsMu.Lock()
		approvalLat, approvalPolls = append(approvalLat, lat), approvalPolls+polls
		resultsMu.Unlock()
	}
	resultsMu.Lock()
	l := Summarize(slices.Clone(approvalLat))
	resultsMu.Unlock()
	b.ReportMetric(float64(l.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(l.P99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(l.Max.Microseconds())/1000, "max-ms")
}

// workflow holds API clients for the approvers and the checking service.
type workflow struct {
	env                      *httpEnv
	hc                       *http.Client
	owner, security, checker *api.Client
}

// newWorkflow issues tokens to the two approvers and wraps the service token in a client.
func (env *httpEnv) newWorkflow(ctx context.Context) (*workflow, error) {
	w := &workflow{env: env, hc: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if w.owner, err = w.client(ctx, OwnerApprover); err != nil {
		return nil, err
	}
	if w.security, err = w.client(ctx, SecurityApprover); err != nil {
		return nil, err
	}
	w.checker = api.NewClient(env.rampartURL, env.serviceToken)
	w.checker.HTTP = w.hc
	return w, nil
}

// client signs subject in (a session of their own, as a sign-in through the identity provider
// opens: approvals need one) and returns an API client that uses its access token.
func (w *workflow) client(ctx context.Context, subject string) (*api.Client, error) {
	iss, err := w.env.in.Sessions.Create(ctx, identity.NewSession{Subject: subject, Method: "bench", AuthTime: time.Now(),
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
			Time: time.Now(), Actor: subject, User: subject, Message: subject + " signed in (benchmark)"}})
	if err != nil {
		return nil, fmt.Errorf("sign %s in: %w", subject, err)
	}
	// A token bound to the session outlasts its 10-minute access token (and may approve).
	p, err := w.env.in.Sessions.Verify(ctx, iss.AccessToken)
	if err != nil {
		return nil, err
	}
	tok, _, err := w.env.in.Tokens.Mint(ctx, identity.MintInput{Caller: p, Description: "benchmark user"})
	if err != nil {
		return nil, fmt.Errorf("mint a token for %s: %w", subject, err)
	}
	c := api.NewClient(w.env.rampartURL, tok)
	c.HTTP = w.hc
	return c, nil
}

// round runs the workflow for the i-th applicant and returns the approval-to-allow latency and
// the number of checks it took.
func (w *workflow) round(ctx context.Context, i int) (time.Duration, int, error) {
	ds := w.env.ds
	applicant := fmt.Sprintf("applicant-%05d", i)
	q := authz.Query{Subject: applicant, Action: ds.CriticalAction, Resource: ds.CriticalResource}
	user, err := w.client(ctx, applicant)
	if err != nil {
		return 0, 0, err
	}
	c, err := user.CreateRequest(ctx, api.CreateRequestBody{Role: ds.CriticalRole, Reason: "benchmark: approval-to-allow latency"})
	if err != nil {
		return 0, 0, fmt.Errorf("round %d: create request: %w", i, err)
	}
	if _, err := w.owner.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
		return 0, 0, fmt.Errorf("round %d: owner approval: %w", i, err)
	}
	// One approval of two must not be enough (invariant 1).
	if d, err := w.checker.Check(ctx, q); err != nil || d.Allowed {
		return 0, 0, fmt.Errorf("round %d: after one approval of two, check said %+v (err %v); want denied", i, d, err)
	}
	v, err := w.security.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{})
	approved := time.Now()
	if err != nil {
		return 0, 0, fmt.Errorf("round %d: security approval: %w", i, err)
	}
	if v.Request.State != access.Approved {
		return 0, 0, fmt.Errorf("round %d: request is %s after both approvals, want approved", i, v.Request.State)
	}
	for polls := 1; ; polls++ {
		d, err := w.checker.Check(ctx, q)
		if err != nil {
			return 0, 0, fmt.Errorf("round %d: check: %w", i, err)
		}
		if d.Allowed {
			return time.Since(approved), polls, nil
		}
		if time.Since(approved) > 10*time.Second {
			return 0, 0, fmt.Errorf("round %d: %s still denied 10s after the final approval: %s", i, applicant, d.Reason)
		}
	}
}

// printHTTPSummary prints the HTTP comparison and the approval-to-allow latency, if measured.
// The caller holds resultsMu.
func printHTTPSummary() {
	if httpE != nil {
		for _, s := range httpE.setup {
			fmt.Println("http setup:", s)
		}
	}
	line := func(label string, x *loadResult) {
		churn := ""
		if x.target == "rampart" {
			churn = fmt.Sprintf("  sqlite conns reopened %.0f/s", float64(x.churn)/x.elapsed.Seconds())
		}
		fmt.Printf("HTTP %-24s %8.0f req/s  p50 %-9s p99 %-9s cpu %5.1fµs/req  windows %s  (%d requests, %d failed, %d wrong)%s\n",
			label, x.rps(), x.lat.P50.Round(time.Microsecond), x.lat.P99.Round(time.Microsecond), us(x.cpuPerRequest()),
			windows(x.windowRPS), x.ok+x.failed+x.wrong, x.failed, x.wrong, churn)
	}
	for _, clients := range httpClients {
		r, o := httpResults[fmt.Sprintf("clients=%d/rampart", clients)], httpResults[fmt.Sprintf("clients=%d/opa", clients)]
		if r == nil || o == nil {
			continue
		}
		line(fmt.Sprintf("%d clients, rampart:", clients), r)
		line(fmt.Sprintf("%d clients, opa:", clients), o)
		ratio := r.rps() / o.rps()
		fmt.Printf("HTTP %d clients: Rampart/OPA throughput = %.2fx (target >= 2x: %s); OPA/Rampart CPU per request = %.2fx\n",
			clients, ratio, verdict(ratio >= 2), float64(o.cpuPerRequest())/float64(r.cpuPerRequest()))
		// OPA's windows separate the load generator (this process) from the server (OPA's); the
		// load generator's cost per request, taken from them, estimates Rampart's server alone.
		gen := o.perRequest(o.cpuSelf)
		rs, osrv := r.perRequest(r.cpuSelf)-gen, o.perRequest(o.cpu-o.cpuSelf)
		fmt.Printf("HTTP %d clients: server CPU per request: Rampart ~%.1fµs (estimate: its process minus the load generator's %.1fµs), OPA %.1fµs: OPA/Rampart ~%.2fx\n",
			clients, us(rs), us(gen), us(osrv), float64(osrv)/float64(rs))
	}
	if len(approvalLat) > 0 {
		l := Summarize(slices.Clone(approvalLat))
		fmt.Printf("approval-to-allow over HTTP (%d rounds, %d checks): p50 %s, p99 %s, max %s (target < 100ms: %s)\n",
			l.N, approvalPolls, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond), verdict(l.Max < 100*time.Millisecond))
	}
}

// windows formats per-window throughputs.
func windows(rps []float64) string {
	parts := make([]string, len(rps))
	for i, x := range rps {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// us is d in microseconds.
func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
