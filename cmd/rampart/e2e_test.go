package main_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	_ "modernc.org/sqlite"

	"rampart.dev/rampart/internal/testenv"
)

// The end-to-end tests drive the real binary, as a user would.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rampart-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rampart")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build rampart: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	if !reportLedger(os.Stderr) && code == 0 {
		code = 1
	}
	reportOpenAPI(os.Stderr)
	os.RemoveAll(dir)
	os.Exit(code)
}

type cli struct {
	t    *testing.T
	addr string
	env  []string
}

type result struct {
	out, err string
	code     int
}

func (c *cli) run(extraEnv []string, args ...string) result {
	c.t.Helper()
	cmd := exec.Command(binary, append([]string{"--addr", c.addr}, args...)...)
	cmd.Env = append(append(os.Environ(), c.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(nil, args...)
	if r.code != 0 {
		c.t.Fatalf("rampart %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

func (c *cli) as(token string, args ...string) result {
	c.t.Helper()
	return c.run([]string{"RAMPART_TOKEN=" + token}, args...)
}

func freeAddr(t *testing.T) string {
	// The port is free when this returns, but the kernel may hand it out again before the
	// process it is meant for binds it: never give this test binary the same port twice (a test
	// once got for its API server the port it had just chosen for its egress gateway).
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.ports[addr] {
			handedOut.ports[addr] = true
			return addr
		}
	}
	t.Fatal("no free port not handed out before after 100 tries")
	return ""
}

var handedOut = struct {
	sync.Mutex
	ports map[string]bool
}{ports: map[string]bool{}}

// server is a running rampart process.
type server struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	// closeTap stops the OpenAPI tap in front of it (e2e_openapi_test.go) and validates what it
	// recorded.
	closeTap func()
	// logs is everything the process wrote to standard output and error.
	logs *syncBuffer
}

// stop sends SIGTERM and waits for the process to exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s of SIGTERM")
	}
	s.closeTap()
}

// startServer runs the binary with args until the test ends and waits for /readyz. A control
// plane listens behind the OpenAPI tap (tapServer), which holds addr.
func startServer(t *testing.T, addr string, args ...string) *server {
	t.Helper()
	if len(args) > 0 && args[0] == "dev" && !slices.Contains(args, "--egress-addr") {
		// rampart dev also serves the egress gateway, on 8471 by default: a fixed port would
		// collide with any other dev server on the machine (a test of another package, a
		// developer's own). Tests that use the gateway pass their own address.
		args = append(args, "--egress-addr", freeAddr(t))
	}
	runArgs, inner := tapServer(t, addr, args)
	cmd := exec.Command(binary, runArgs...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var tap *tapProxy
	if inner != "" {
		tap = startTap(t, addr, inner)
	}
	var tapOnce sync.Once
	closeTap := func() {
		tapOnce.Do(func() {
			if tap == nil {
				return
			}
			for _, problem := range checkExchanges(tap.close()) {
				t.Errorf("OpenAPI: %s", problem)
			}
		})
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		closeTap()
		collectLedger(t, args)
		if t.Failed() {
			t.Logf("server output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			t.Fatalf("server exited early:\n%s", logs.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return &server{cmd: cmd, done: done, closeTap: closeTap, logs: logs}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("server not ready:\n%s", logs.String())
	return nil
}

var reqID = regexp.MustCompile(`req_[a-z2-7]{16}`)

// The README's walkthrough, against `rampart dev`.
func TestDevWalkthrough(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}

	if out := c.ok("login", "--dev", "--user", "alice"); !strings.Contains(out, "Logged in") {
		t.Fatalf("login: %s", out)
	}
	out := c.ok("request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "2h")
	id := reqID.FindString(out)
	if id == "" {
		t.Fatalf("no request id in %q", out)
	}
	// Before approval: denied, exit 3.
	if r := c.run(nil, "check", "alice", "read", "weights/frontier-7"); r.code != 3 || !strings.Contains(r.out, "DENIED") {
		t.Fatalf("check before approval: %+v", r)
	}
	bob := strings.TrimSpace(c.ok("login", "--dev", "--user", "bob", "--print-token"))
	dave := strings.TrimSpace(c.ok("login", "--dev", "--user", "dave", "--print-token"))
	if r := c.as(bob, "request", "approve", id); r.code != 0 || !strings.Contains(r.out, "pending") {
		t.Fatalf("bob approves: %+v", r)
	}
	// Self-approval over the real CLI: refused, 3 (a denial).
	if r := c.run(nil, "request", "approve", id); r.code != 3 || !strings.Contains(r.err, "is the requester") {
		t.Fatalf("alice approves her own request: %+v", r)
	}
	if r := c.as(dave, "request", "approve", id); r.code != 0 || !strings.Contains(r.out, "approved") {
		t.Fatalf("dave approves: %+v", r)
	}
	r := c.run(nil, "check", "alice", "read", "weights/frontier-7")
	if r.code != 0 || !strings.Contains(r.out, "ALLOWED") || !strings.Contains(r.out, "expires:") {
		t.Fatalf("check after approval: %+v", r)
	}
	if r := c.run(nil, "check", "bob", "read", "weights/frontier-7"); r.code != 3 || !strings.Contains(r.err, "may only check their own access") {
		t.Fatalf("alice checks bob: %+v", r)
	}
	if out := c.ok("audit", "verify"); !strings.Contains(out, "OK: ledger rampart-dev verifies") {
		t.Fatalf("audit verify: %s", out)
	}
	// A second verify proves consistency with the first.
	if out := c.ok("audit", "verify"); !strings.Contains(out, "no history was rewritten") {
		t.Fatalf("second audit verify: %s", out)
	}
	erin := strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token"))
	if r := c.as(erin, "audit", "verify"); r.code != 0 || !strings.Contains(r.out, "re-hashed and match") {
		t.Fatalf("auditor verify: %+v", r)
	}
	// Export and verify offline; then tamper with the export.
	dir := t.TempDir()
	entries, cp := filepath.Join(dir, "entries.jsonl"), filepath.Join(dir, "cp.txt")
	r = c.as(erin, "audit", "export", "--file", entries, "--checkpoint", cp)
	if r.code != 0 {
		t.Fatalf("export: %+v", r)
	}
	key := regexp.MustCompile(`ledger key: (\S+)`).FindStringSubmatch(r.err)
	if key == nil {
		t.Fatalf("no key in %q", r.err)
	}
	if out := c.ok("audit", "verify", "--entries", entries, "--checkpoint", cp, "--key", key[1]); !strings.HasPrefix(out, "OK:") {
		t.Fatalf("offline verify: %s", out)
	}
	b, _ := os.ReadFile(entries)
	_ = os.WriteFile(entries, bytes.Replace(b, []byte(`"eval run 4411"`), []byte(`"eval run 4412"`), 1), 0o600)
	if r := c.run(nil, "audit", "verify", "--entries", entries, "--checkpoint", cp, "--key", key[1]); r.code != 1 || !strings.Contains(r.err, "does NOT verify") {
		t.Fatalf("tampered export verified: %+v", r)
	}
	// JSON output for scripts.
	if out := c.ok("-o", "json", "check", "alice", "read", "weights/frontier-7"); !strings.Contains(out, `"allowed": true`) {
		t.Fatalf("json check: %s", out)
	}
	if out := c.as(erin, "audit", "tail", "-n", "3"); !strings.Contains(out.out, "grant.activate") && !strings.Contains(out.out, "token.issue") {
		t.Fatalf("tail: %+v", out)
	}
}

// Usage errors exit 2 and say what to do.
func TestUsageErrors(t *testing.T) {
	c := &cli{t: t, addr: "127.0.0.1:1"}
	for _, args := range [][]string{{"check", "alice"}, {"request", "create", "--bogus"}, {"nonsense"}, {"-o", "xml", "roles"}, {"dev", "--addr", "0.0.0.0:8470"}} {
		if r := c.run(nil, args...); r.code != 2 || r.err == "" {
			t.Errorf("rampart %v: exit %d, stderr %q; want 2 with a message", args, r.code, r.err)
		}
	}
	// No server: a clear error, exit 1.
	if r := c.run([]string{"RAMPART_TOKEN=rpt_" + strings.Repeat("x", 43)}, "whoami"); r.code != 1 || !strings.Contains(r.err, "cannot reach the Rampart server") {
		t.Fatalf("no server: %+v", r)
	}
}

func TestPolicyValidate(t *testing.T) {
	c := &cli{t: t, addr: "127.0.0.1:1"}
	if out := c.ok("policy", "validate", "../../internal/demo/policy"); !strings.Contains(out, "OK:") {
		t.Fatalf("demo policy: %s", out)
	}
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: r}\nspec:\n  rules:\n  - actions: [read]\n    resources: [nowhere/x]\n"), 0o600)
	r := c.run(nil, "policy", "validate", dir)
	if r.code != 1 || !strings.Contains(r.err, "bad.yaml:7:") || !strings.Contains(r.err, "spec.rules[0].resources[0]") || !strings.Contains(r.err, "no Settings document") {
		t.Fatalf("invalid policy: %+v", r)
	}
	if out := c.ok("policy", "explain", "--policy", "../../internal/demo/policy", "--requester", "alice", "--role", "weights-reader-frontier-7"); !strings.Contains(out, "eligible: bob, carol") {
		t.Fatalf("explain: %s", out)
	}
}

// A server that finds its ledger edited refuses to start.
func TestTamperedDatabaseRefused(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "alice")
	c.ok("request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411")
	c.ok("audit", "checkpoint")
	srv.stop(t)

	db, err := sql.Open("sqlite", filepath.Join(data, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Exec(`UPDATE ledger SET entry = replace(entry, 'eval run 4411', 'eval run 9999') WHERE entry LIKE '%eval run 4411%'`)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("edited %d rows", n)
	}
	db.Close()
	cmd := exec.Command(binary, "dev", "--addr", addr, "--data", data, "--egress-addr", "")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve") || !strings.Contains(string(out), "ledger tampered") {
		t.Fatalf("tampered server started or said the wrong thing: %v\n%s", err, out)
	}
}

// Production mode on PostgreSQL: bootstrap an admin token, serve, and run the workflow.
func TestServerOnPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\nstore:\n  driver: postgres\n  dsn: %q\nledger:\n  origin: rampart-e2e\noidc:\n  dev_provider: true\n", addr, filepath.Join(dir, "data"), "../../internal/demo/policy", dsn)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	startServer(t, addr, "server", "--config", cfgPath)
	// People sign in (approvals need their own sessions); the bootstrap token is an admin's,
	// and it cannot approve.
	alice, bob, dave := signInAs(t, addr, "alice"), signInAs(t, addr, "bob"), signInAs(t, addr, "dave")
	r := c.run(nil, "admin", "token", "--config", cfgPath, "--subject", "erin", "--ttl", "1h")
	if r.code != 0 {
		t.Fatalf("admin token erin: %+v", r)
	}
	erin := strings.TrimSpace(r.out)
	if r := c.run(nil, "admin", "token", "--config", cfgPath, "--subject", "bob", "--ttl", "1h"); r.code != 2 || !strings.Contains(r.err, "admin group") {
		t.Fatalf("the bootstrap minted a token for bob: %+v", r)
	}
	r = c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "prod eval", "--duration", "30m")
	id := reqID.FindString(r.out)
	if r.code != 0 || id == "" {
		t.Fatalf("create: %+v", r)
	}
	if r := c.as(erin, "request", "approve", id); r.code != 3 || !strings.Contains(r.err, "bound to no session") {
		t.Fatalf("a bootstrap token approved: %+v", r)
	}
	for _, tok := range []string{bob, dave} {
		if r := c.as(tok, "request", "approve", id); r.code != 0 {
			t.Fatalf("approve: %+v", r)
		}
	}
	if r := c.as(alice, "check", "alice", "read", "weights/frontier-7"); r.code != 0 {
		t.Fatalf("check: %+v", r)
	}
	if r := c.as(erin, "audit", "verify"); r.code != 0 || !strings.Contains(r.out, "re-hashed") {
		t.Fatalf("verify: %+v", r)
	}
	// The dev login does not exist in production.
	if r := c.run(nil, "login", "--dev", "--user", "alice"); r.code != 1 || !strings.Contains(r.err, "no route") {
		t.Fatalf("dev login on a production server: %+v", r)
	}
	// A malformed config is refused with file:line.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("listen: 127.0.0.1:1\ndata_dir: /tmp/x\npolicy_dir: /tmp/y\nstore:\n  driver: mysql\n"), 0o600)
	if r := c.run(nil, "server", "--config", bad); r.code != 1 || !strings.Contains(r.err, "bad.yaml:5:") || !strings.Contains(r.err, "unknown driver") {
		t.Fatalf("bad config: %+v", r)
	}
}

// Two replicas on one PostgreSQL database: exactly one holds the lease on the background jobs
// (rampart_background_jobs_lease_held); when it stops cleanly the other takes over at its next
// renewal, and when it is killed, once the lease expires.
func TestReplicasShareTheJobsLease(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	addrs := []string{freeAddr(t), freeAddr(t)}
	// Long enough that a replica starved of CPU on a busy machine still renews in time (a 1 s
	// lease was once taken over while both replicas ran); a takeover after a kill waits it out.
	const leaseTTL = 5 * time.Second
	cfgs := make([]string, 2)
	for i, addr := range addrs {
		cfgs[i] = filepath.Join(dir, fmt.Sprintf("rampart-%d.yaml", i))
		cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\nstore:\n  driver: postgres\n  dsn: %q\nledger:\n  signing_key_file: %s\njobs_lease_ttl: %s\n",
			addr, filepath.Join(dir, fmt.Sprintf("data-%d", i)), dsn, key, leaseTTL)
		if err := os.WriteFile(cfgs[i], []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held := func(addr string) bool {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false // stopped
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^rampart_background_jobs_lease_held (\d)`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("no rampart_background_jobs_lease_held in /metrics of %s", addr)
		}
		return string(m[1]) == "1"
	}
	// holder waits until exactly one of the running replicas holds the lease, and says which.
	holder := func(running []int, within time.Duration) int {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			var holding []int
			for _, i := range running {
				if held(addrs[i]) {
					holding = append(holding, i)
				}
			}
			if len(holding) == 1 {
				return holding[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s, replicas %v hold the lease (want exactly one of %v)", within, holding, running)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// One signing key for both, made before either starts.
	c := &cli{t: t, addr: addrs[0], env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	vkey := c.ok("admin", "ledger-key", "--out", key, "--origin", "rampart-replicas")
	if !strings.HasPrefix(vkey, "rampart-replicas+") {
		t.Fatalf("ledger-key printed %q, want the verifier key", vkey)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if r := c.run(nil, "admin", "ledger-key", "--out", key); r.code != 1 || !strings.Contains(r.err, "never replaced") {
		t.Fatalf("ledger-key over an existing key: %+v", r)
	}
	if r := c.run(nil, "admin", "ledger-key", "--out", key+"2", "--origin", "two words"); r.code != 2 || !strings.Contains(r.err, "without spaces") {
		t.Fatalf("ledger-key with a bad origin: %+v", r)
	}
	servers := []*server{startServer(t, addrs[0], "server", "--config", cfgs[0]), startServer(t, addrs[1], "server", "--config", cfgs[1])}
	first := holder([]int{0, 1}, 3*leaseTTL)
	for range 5 { // and it stays that way
		time.Sleep(300 * time.Millisecond)
		if h := holder([]int{0, 1}, 0); h != first {
			t.Fatalf("the lease moved from replica %d to %d while both ran", first, h)
		}
	}
	other := 1 - first
	servers[first].stop(t) // gives the lease up
	stopped := time.Now()
	holder([]int{other}, leaseTTL)
	t.Logf("clean stop: replica %d took the jobs over after %s", other, time.Since(stopped).Round(10*time.Millisecond))

	servers[first] = startServer(t, addrs[first], "server", "--config", cfgs[first])
	if h := holder([]int{0, 1}, leaseTTL); h != other {
		t.Fatalf("a restarted replica took the lease from the holder")
	}
	_ = servers[other].cmd.Process.Kill() // no chance to give it up
	<-servers[other].done
	killed := time.Now()
	holder([]int{first}, 3*leaseTTL)
	t.Logf("killed: replica %d took the jobs over after %s (lease %s)", first, time.Since(killed).Round(10*time.Millisecond), leaseTTL)
}

// Search, suggestions and requests by resource, as a user runs them.
func TestSuggestions(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"))
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "alice")
	if out := c.ok("search", "fronteir", "weights"); !strings.Contains(strings.SplitN(out, "\n", 3)[1], "weights/frontier-7") {
		t.Fatalf("search: %s", out)
	}
	if out := c.ok("suggest", "I need to run evals on the frontier-7 checkpoint"); !regexp.MustCompile(`Least privileged role:\s+weights-reader-frontier-7\n`).MatchString(out) {
		t.Fatalf("suggest: %s", out)
	}
	// Without --yes and without a terminal to answer on, nothing is requested.
	r := c.run(nil, "request", "create", "--resource", "weights/frontier-7", "--action", "read", "--reason", "eval")
	if r.code != 2 || !strings.Contains(r.err, "--yes") {
		t.Fatalf("unconfirmed request: %+v", r)
	}
	out := c.ok("request", "create", "--resource", "weights/frontier-7", "--action", "read", "--reason", "eval", "--yes")
	if !strings.Contains(out, "weights-reader-frontier-7 for alice") {
		t.Fatalf("request by resource: %s", out)
	}
	if r := c.run(nil, "suggest", "--resource", "weights/frontier-7", "--action", "exec"); r.code != 4 || !strings.Contains(r.err, "owned by weights-owners (bob, carol)") {
		t.Fatalf("no candidate: %+v", r)
	}
	eval := []string{"suggest", "eval", "../../testdata/suggest/eval.yaml", "--policy", "../../testdata/suggest/policy"}
	// The command, not the engine's accuracy (suggest's TestEvaluation gates that at 95%).
	if out := c.ok(append(eval, "--min", "0.5")...); !strings.Contains(out, "accuracy: ") {
		t.Fatalf("eval: %s", out)
	}
	if r := c.run(nil, append(eval, "--min", "1")...); r.code != 1 || !strings.Contains(r.err, "below --min") {
		t.Fatalf("eval under --min: %+v", r)
	}
}

// The egress gateway as its own process beside `rampart server`, sharing the SQLite store.
func TestEgressGatewayProcess(t *testing.T) {
	echoPort := testenv.TCPEcho(t)
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, _ := os.ReadFile(f)
		_ = os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600)
	}
	_ = os.WriteFile(filepath.Join(pdir, "egress-local.yaml"), []byte(fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: local-echo}
spec:
  subjects: [group:researchers, "k8s:prod/ml/trainer"]
  allow: [{host: 127.0.0.1, ports: [%d]}]
`, echoPort)), 0o600)
	k8s := newK8sIssuer(t)
	db := filepath.Join(dir, "rampart.db")
	apiAddr, gwAddr := freeAddr(t), freeAddr(t)
	srvCfg := filepath.Join(dir, "server.yaml")
	_ = os.WriteFile(srvCfg, []byte(fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\noidc: {dev_provider: true}\n", apiAddr, filepath.Join(dir, "data"), pdir, db)), 0o600)
	gwCfg := filepath.Join(dir, "egress.yaml")
	dlog := filepath.Join(dir, "decisions.jsonl")
	_ = os.WriteFile(gwCfg, []byte(fmt.Sprintf("listen: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\ndecision_log: %s\nworkloads: {clusters: [{name: prod, issuer: %q}]}\n",
		gwAddr, pdir, db, dlog, k8s.srv.URL)), 0o600)

	startServer(t, apiAddr, "server", "--config", srvCfg)
	startServer(t, gwAddr, "egress", "--config", gwCfg, "--allow-range", "127.0.0.1/32")
	alice := signInAs(t, apiAddr, "alice")

	connect := func(target, token string) (int, net.Conn) {
		conn, err := net.Dial("tcp", gwAddr)
		if err != nil {
			t.Fatal(err)
		}
		req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
		if token != "" {
			req += "Proxy-Authorization: Bearer " + token + "\r\n"
		}
		_, _ = conn.Write([]byte(req + "\r\n"))
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, conn
	}
	target := fmt.Sprintf("127.0.0.1:%d", echoPort)
	status, conn := connect(target, alice)
	if status != 200 {
		t.Fatalf("alice through the gateway process: %d", status)
	}
	_, _ = conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	conn.Close()
	if status, _ := connect(target, ""); status != 407 {
		t.Fatalf("anonymous: %d", status)
	}
	// A pod's projected service-account token is its identity: k8s:prod/ml/trainer may go, a
	// token signed by a key the cluster never published may not, nor may another workload.
	if status, _ := connect(target, k8s.token(t, "ml", "trainer", k8s.key)); status != 200 {
		t.Fatalf("workload token: %d", status)
	}
	forged, _ := rsa.GenerateKey(rand.Reader, 2048)
	if status, _ := connect(target, k8s.token(t, "ml", "trainer", forged)); status != 407 {
		t.Fatalf("workload token signed by an unknown key: %d", status)
	}
	if status, _ := connect(target, k8s.token(t, "ml", "notebook", k8s.key)); status != 403 {
		t.Fatalf("another workload: %d", status)
	}
	if status, _ := connect("0x7f.1:"+strconv.Itoa(echoPort), alice); status != 200 {
		t.Fatalf("hex spelling of the same address: %d", status)
	}
	// Issue 11, item 5: disabling alice on the control plane closes her open tunnel through the
	// gateway process within 2 s (it re-verifies the identity of open tunnels, from the store),
	// and she cannot open another.
	status, conn = connect(target, alice)
	if status != 200 {
		t.Fatalf("alice before being disabled: %d", status)
	}
	_, _ = conn.Write([]byte("ping"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: apiAddr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	erin := strings.TrimSpace(c.ok("admin", "token", "--config", srvCfg, "--subject", "erin", "--ttl", "1h"))
	// A revoked session closes the tunnel it opened: the gateway verifies it again.
	second := signInAs(t, apiAddr, "alice")
	status, conn2 := connect(target, second)
	if status != 200 {
		t.Fatalf("alice's second session: %d", status)
	}
	var who map[string]any
	if err := json.Unmarshal([]byte(c.as(second, "whoami", "-o", "json").out), &who); err != nil {
		t.Fatal(err)
	}
	if r := c.as(erin, "session", "revoke", who["session_id"].(string), "--reason", "laptop stolen"); r.code != 0 {
		t.Fatalf("revoke the session: %+v", r)
	}
	revoked := time.Now()
	_ = conn2.SetReadDeadline(revoked.Add(2 * time.Second))
	if _, err := conn2.Read(buf); err == nil {
		t.Fatal("the tunnel of a revoked session still carries data")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the tunnel of a revoked session was still open 2 s later")
	}
	conn2.Close()
	if r := c.as(erin, "user", "disable", "alice", "--reason", "left"); r.code != 0 || !strings.Contains(r.out, "alice disabled: 1 session(s)") {
		t.Fatalf("disable alice: %+v", r)
	}
	disabled := time.Now()
	_ = conn.SetReadDeadline(disabled.Add(2 * time.Second))
	if _, err := conn.Read(buf); err == nil {
		t.Fatal("the tunnel still carries data after alice was disabled")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("alice's tunnel through the gateway process was still open 2 s after she was disabled")
	}
	conn.Close()
	if status, _ := connect(target, alice); status == 200 {
		t.Fatal("alice opened a tunnel after she was disabled")
	}
	// The gateway writes its decision lines behind the connections: wait for the close's.
	var b []byte
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, _ = os.ReadFile(dlog)
		if strings.Contains(string(b), "alice is disabled") || strings.Contains(string(b), "no longer holds") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the decision log does not say why alice's tunnel closed:\n%s", b)
		}
	}
	if !strings.Contains(string(b), `"class_uid":4001`) || !strings.Contains(string(b), `"egress.allowed"`) || !strings.Contains(string(b), `"egress.denied"`) {
		t.Fatalf("decision log:\n%s", b)
	}
}

// k8sIssuer is a Kubernetes API server's service-account issuer as Rampart sees it: an OIDC
// discovery document and a JWKS, and tokens signed with its key.
type k8sIssuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newK8sIssuer(t *testing.T) *k8sIssuer {
	k := &k8sIssuer{}
	k.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	k.srv = httptest.NewServer(mux)
	t.Cleanup(k.srv.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": k.srv.URL, "jwks_uri": k.srv.URL + "/openid/v1/jwks"})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.key.PublicKey, KeyID: "sa-key", Algorithm: "RS256", Use: "sig"}}})
	})
	return k
}

func (k *k8sIssuer) token(t *testing.T, ns, sa string, key *rsa.PrivateKey) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "sa-key").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := map[string]any{"iss": k.srv.URL, "sub": "system:serviceaccount:" + ns + ":" + sa, "aud": []string{"rampart"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "uid-" + sa}}}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
