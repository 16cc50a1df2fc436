package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/postgres"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// Detection end to end: the real binary evaluates the ledger while it is killed with SIGKILL
// mid-evaluation and restarted, and while replicas take the jobs lease from each other; at the
// end the ledger holds exactly the alerts one uninterrupted engine raises over the same ledger,
// each once, with the same evidence.

// churnRule fires on every request filed or cancelled after a person's second within an hour:
// a stateful rule (its window must survive restarts) that a load of create/cancel trips
// hundreds of times.
const churnRule = `apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: request-churn}
spec:
  description: One person files and cancels requests over and over.
  severity: low
  mitre: [T1078]
  condition: 'event.code in ["request.create", "request.cancel"]'
  group_by: [actor]
  threshold: {count: 3, window: 1h}
  dedup: 0s
`

// detectPolicyDir is the demo policy plus rules, in a directory of its own.
func detectPolicyDir(t *testing.T, rules string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src := "../../internal/demo/policy"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "detection.yaml"), []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// churn files and cancels requests as the holder of token through whichever of addrs answers,
// until stop is closed; it counts the requests filed.
func churn(addrs []string, token string, stop <-chan struct{}, filed *atomic.Int64) {
	ctx := context.Background()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		c := api.NewClient(addrs[i%len(addrs)], token)
		c.HTTP.Timeout = 2 * time.Second
		cr, err := c.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "churn " + strconv.Itoa(i), Duration: "30m"})
		if err != nil {
			time.Sleep(20 * time.Millisecond) // that replica is down: the next try goes to another
			continue
		}
		filed.Add(1)
		for try := 0; try < 50; try++ {
			if _, err := api.NewClient(addrs[(i+try)%len(addrs)], token).Cancel(ctx, cr.Request.ID); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// metric reads one unlabelled value from a server's /metrics (-1 if the server does not answer).
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)`).FindSubmatch(b)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// waitCaughtUp waits until detection on the replica at addr has evaluated every entry.
func waitCaughtUp(t *testing.T, addrs []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second) // a failure limit only
	for {
		for _, a := range addrs {
			if metric(t, a, "rampart_detect_lag_entries") == 0 && metric(t, a, "rampart_background_jobs_lease_held") == 1 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("detection did not catch up within 90 s (lag %v)", metric(t, addrs[0], "rampart_detect_lag_entries"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkExactlyOnce compares the ledger's detect.alert entries with what one engine raises over
// the ledger from start to end, without interruption.
func checkExactlyOnce(t *testing.T, st *sqlstore.DB, rulesDir string) int {
	t.Helper()
	ctx := context.Background()
	pol, err := policy.Load(os.DirFS(rulesDir))
	if err != nil {
		t.Fatal(err)
	}
	e, err := detect.NewEngine(pol.DetectionRules, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := st.Entries(ctx, 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, r := range recs {
		ev, err := detect.ParseEntry(r.Seq, r.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", r.Seq, err)
		}
		for _, f := range e.Process(ev) {
			want = append(want, fmt.Sprintf("%s|%s|%v", f.Rule, f.Key, f.Evidence))
		}
		if ev.Code == "detect.alert" {
			var a struct {
				Unmapped struct {
					Rule     string  `json:"rule"`
					Key      string  `json:"key"`
					Evidence []int64 `json:"evidence"`
				} `json:"unmapped"`
			}
			if err := json.Unmarshal(r.Data, &a); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s|%s|%v", a.Unmapped.Rule, a.Unmapped.Key, a.Unmapped.Evidence))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		missing, repeated := diffCounts(want, got)
		t.Fatalf("the ledger's alerts differ from one uninterrupted evaluation: %d alerts, want %d; missing %v; repeated or extra %v", len(got), len(want), missing, repeated)
	}
	as, err := st.Alerts(ctx, detect.AlertFilter{Limit: detect.MaxAlertPage})
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, a := range as {
		sum += a.Count
	}
	if sum != len(want) {
		t.Fatalf("the alerts rows count %d firings; the ledger holds %d", sum, len(want))
	}
	return len(want)
}

func diffCounts(want, got []string) (missing, extra []string) {
	n := map[string]int{}
	for _, w := range want {
		n[w]++
	}
	for _, g := range got {
		n[g]--
	}
	for k, v := range n {
		if v > 0 {
			missing = append(missing, k)
		} else if v < 0 {
			extra = append(extra, k)
		}
	}
	return missing, extra
}

func detectServerConfig(t *testing.T, dir, addr, policyDir, store, key string) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("rampart-%s.yaml", strings.ReplaceAll(addr, ":", "-")))
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\n%sledger:\n  signing_key_file: %s\njobs_lease_ttl: 3s\n"+
		"detection: {enabled: true, batch: 7, snapshot_every: 25, poll_interval: 10ms}\n",
		addr, filepath.Join(dir, "data-"+strings.ReplaceAll(addr, ":", "-")), policyDir, store, key)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kill9 kills a server with SIGKILL: no clean shutdown, no lease given up.
func kill9(s *server) {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.closeTap() // frees the address for the restart
}

// On SQLite: the one server is killed with SIGKILL three times while it evaluates a steady load,
// and restarted; nothing is lost or repeated.
func TestDetectionSurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	c := &cli{t: t, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	c.ok("admin", "ledger-key", "--out", key, "--origin", "rampart-detect")
	policyDir := detectPolicyDir(t, churnRule)
	addr := freeAddr(t)
	db := filepath.Join(dir, "rampart.db")
	cfg := detectServerConfig(t, dir, addr, policyDir, fmt.Sprintf("store: {driver: sqlite, path: %s}\n", db), key)
	s := startServer(t, addr, "server", "--config", cfg)
	r := c.run(nil, "admin", "token", "--config", cfg, "--subject", "erin", "--ttl", "1h")
	if r.code != 0 {
		t.Fatalf("admin token: %+v", r)
	}
	token := strings.TrimSpace(r.out)
	stop := make(chan struct{})
	var filed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); churn([]string{addr}, token, stop, &filed) }()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for kill := 0; kill < 3; kill++ {
		before := filed.Load()
		for filed.Load() < before+15 { // evaluation is under way: requests keep coming
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
		kill9(s)
		s = startServer(t, addr, "server", "--config", cfg)
	}
	before := filed.Load()
	for filed.Load() < before+15 {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	waitCaughtUp(t, []string{addr})
	s.stop(t)
	st, err := sqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := checkExactlyOnce(t, st, policyDir)
	t.Logf("%d requests filed across 3 SIGKILLs: %d alerts, each once", filed.Load(), n)
	if n < 30 {
		t.Fatalf("only %d alerts: the test exercised too little", n)
	}
}

// On PostgreSQL: two replicas; the jobs-lease holder (the one evaluating) is killed with SIGKILL
// twice under load, the other takes over from the cursor, the killed one comes back; nothing
// is lost or repeated.
func TestDetectionReplicaTakeover(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "ledger.key")
	c := &cli{t: t, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	c.ok("admin", "ledger-key", "--out", key, "--origin", "rampart-detect")
	policyDir := detectPolicyDir(t, churnRule)
	addrs := []string{freeAddr(t), freeAddr(t)}
	store := fmt.Sprintf("store: {driver: postgres, dsn: %q}\n", dsn)
	cfgs := []string{detectServerConfig(t, dir, addrs[0], policyDir, store, key), detectServerConfig(t, dir, addrs[1], policyDir, store, key)}
	servers := []*server{startServer(t, addrs[0], "server", "--config", cfgs[0]), startServer(t, addrs[1], "server", "--config", cfgs[1])}
	r := c.run(nil, "admin", "token", "--config", cfgs[0], "--subject", "erin", "--ttl", "1h")
	if r.code != 0 {
		t.Fatalf("admin token: %+v", r)
	}
	token := strings.TrimSpace(r.out)
	stop := make(chan struct{})
	var filed atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); churn(addrs, token, stop, &filed) }()
	holder := func() int {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for i, a := range addrs {
				if metric(t, a, "rampart_background_jobs_lease_held") == 1 {
					return i
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("no replica holds the jobs lease after 30 s")
		return -1
	}
	alertsOf := func(addr string) float64 {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`(?m)^rampart_detect_alerts_total\{rule="request-churn"\} (\S+)`).FindSubmatch(b)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	for kill := 0; kill < 2; kill++ {
		h := holder()
		for alertsOf(addrs[h]) < 5 { // the holder is evaluating and raising alerts
			time.Sleep(20 * time.Millisecond)
		}
		kill9(servers[h])
		killed := time.Now()
		other := 1 - h
		for metric(t, addrs[other], "rampart_background_jobs_lease_held") != 1 {
			if time.Since(killed) > 30*time.Second {
				t.Fatal("the other replica did not take the jobs over within 30 s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for alertsOf(addrs[other]) < 1 { // it resumed evaluation from the cursor
			if time.Since(killed) > 60*time.Second {
				t.Fatal("the replica that took over raised no alert within 60 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("replica %d killed; replica %d evaluating again after %s", h, other, time.Since(killed).Round(10*time.Millisecond))
		servers[h] = startServer(t, addrs[h], "server", "--config", cfgs[h])
	}
	close(stop)
	wg.Wait()
	waitCaughtUp(t, addrs)
	for _, s := range servers {
		s.stop(t)
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := checkExactlyOnce(t, st, policyDir)
	t.Logf("%d requests filed across 2 takeovers: %d alerts, each once", filed.Load(), n)
}
