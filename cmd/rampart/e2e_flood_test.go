package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/api"
)

// floodLedger reads every ledger entry and, per code, how many refusals its entries account
// for (an entry alone is one; a summary says how many more in its OCSF count).
func floodLedger(t *testing.T, c *api.Client) (n int, accounted map[string]int, summaries map[string]int) {
	t.Helper()
	accounted, summaries = map[string]int{}, map[string]int{}
	err := c.Entries(context.Background(), 0, 0, func(_ uint64, data []byte) error {
		n++
		var e struct {
			Count    *int `json:"count"`
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(data, &e); err != nil {
			return err
		}
		if e.Count != nil {
			accounted[e.Metadata.EventCode] += *e.Count
			summaries[e.Metadata.EventCode]++
		} else {
			accounted[e.Metadata.EventCode]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, accounted, summaries
}

// 10,000 hostile calls of each kind through the real server (invariant 11): anonymous callbacks
// with a forged state (each a signin.refused), a user asking for weights without a grant (each
// a weights.denied) and anonymous sign-in starts (each a stored flow), from 16 clients at once.
// The ledger grows by a bounded number of entries (at most two per source and code per window
// of 2 s), yet accounts for every refusal; the sign-in history keeps at most risk_history
// failures per window and the store at most sign_in_starts flows; an honest call made during
// the flood still succeeds promptly; and refusals still being counted when the server is
// stopped are written before it exits.
func TestFloodOfRefusalsIsBounded(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	pdir := filepath.Join(t.TempDir(), "policy")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, _ := os.ReadFile(f)
		if filepath.Base(f) == "settings.yaml" {
			b = []byte(strings.Replace(string(b), "  admin_group: admins\n", "  admin_group: admins\n  refusals: {window: 2s}\n", 1))
		}
		if err := os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"dev", "--addr", addr, "--data", data, "--policy", pdir}
	srv := startServer(t, addr, args...)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	alice := strings.TrimSpace(c.ok("login", "--dev", "--user", "alice", "--print-token"))
	erin := api.NewClient(addr, strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token")))
	before, _, _ := floodLedger(t, erin)

	const calls = 10000
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var logins, loginsLimited atomic.Int64
	hit := func(req *http.Request, want int) error {
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if req.URL.Path == "/login" {
			switch resp.StatusCode {
			case http.StatusFound:
				logins.Add(1)
				return nil
			case http.StatusTooManyRequests:
				loginsLimited.Add(1)
				return nil
			}
		}
		if resp.StatusCode != want {
			return fmt.Errorf("%s %s answered %d, want %d", req.Method, req.URL.Path, resp.StatusCode, want)
		}
		return nil
	}
	jobs := make(chan int)
	var failed atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var req *http.Request
				var want int
				switch i % 3 {
				case 0:
					req, _ = http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/callback?state=forged-%d&code=x", addr, i), nil)
					want = http.StatusBadRequest
				case 1:
					req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/v1/weights/frontier-7", nil)
					req.Header.Set("Authorization", "Bearer "+alice)
					want = http.StatusForbidden
				default: // each sign-in started stores a flow
					req, _ = http.NewRequest(http.MethodGet, "http://"+addr+"/login", nil)
				}
				if err := hit(req, want); err != nil {
					failed.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	// An honest person works during the flood.
	done := make(chan struct{})
	honest := make(chan time.Duration, 1000)
	go func() {
		defer close(honest)
		aliceAPI := api.NewClient(addr, alice)
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			t0 := time.Now()
			if _, err := aliceAPI.Whoami(context.Background()); err != nil {
				failed.CompareAndSwap(nil, fmt.Errorf("an honest call failed during the flood: %w", err))
				return
			}
			honest <- time.Since(t0)
		}
	}()
	for i := range 3 * calls {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	flood := time.Since(start)
	close(done)
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}
	var slowest time.Duration
	n := 0
	for d := range honest {
		n++
		slowest = max(slowest, d)
	}
	t.Logf("%d hostile calls in %s; %d honest calls during them, the slowest %s", 3*calls, flood.Round(time.Millisecond), n, slowest)
	if slowest > 5*time.Second {
		t.Fatalf("an honest call took %s during the flood", slowest)
	}
	// A request made right after is served at once.
	t0 := time.Now()
	if r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "1h"); r.code != 0 {
		t.Fatalf("request after the flood: %+v", r)
	}
	t.Logf("request create after the flood: %s", time.Since(t0).Round(time.Millisecond))

	// Every refusal is accounted for once the windows have ended, in a bounded number of entries.
	windows := int(flood/(2*time.Second)) + 3
	if logins.Load()+loginsLimited.Load() != calls || logins.Load() > int64(30*windows) {
		t.Fatalf("%d sign-ins started and %d limited of %d; at most 30 per window may start", logins.Load(), loginsLimited.Load(), calls)
	}
	deadline := time.Now().Add(60 * time.Second)
	var size int
	var acc, sums map[string]int
	for {
		size, acc, sums = floodLedger(t, erin)
		if acc["signin.refused"] == calls+int(loginsLimited.Load()) && acc["weights.denied"] == calls {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the ledger accounts for %v of %d refusals each", acc, calls)
		}
		time.Sleep(200 * time.Millisecond)
	}
	grown := size - before
	t.Logf("the ledger grew by %d entries for %d refusals (summaries %v, %d windows at most); %d sign-ins started", grown, 2*calls+int(loginsLimited.Load()), sums, windows, logins.Load())
	if limit := 2*2*windows + 3; grown > limit { // two codes, two entries per window each, and the honest request and its token
		t.Fatalf("the ledger grew by %d entries, more than %d", grown, limit)
	}
	db, err := sql.Open("sqlite", filepath.Join(data, "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	var failures, flows int
	err = db.QueryRow(`SELECT COUNT(*) FROM signins WHERE success = 0`).Scan(&failures)
	if err == nil {
		err = db.QueryRow(`SELECT COUNT(*) FROM auth_flows`).Scan(&flows)
	}
	db.Close()
	if err != nil || failures > 20*windows || int64(flows) != logins.Load() {
		t.Fatalf("the sign-in history holds %d failures (more than risk_history, 20, per window?), the store %d flows for %d sign-ins started (%v)", failures, flows, logins.Load(), err)
	}

	// Refusals still counted at shutdown are written before the server exits.
	for i := range 100 {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/callback?state=late-%d&code=x", addr, i), nil)
		if err := hit(req, http.StatusBadRequest); err != nil {
			t.Fatal(err)
		}
	}
	srv.stop(t)
	startServer(t, addr, args...)
	if _, acc, _ = floodLedger(t, erin); acc["signin.refused"] != calls+int(loginsLimited.Load())+100 {
		t.Fatalf("after a restart the ledger accounts for %d signin.refused, want %d", acc["signin.refused"], calls+int(loginsLimited.Load())+100)
	}
}
