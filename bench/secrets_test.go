package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/api"
)

// The secrets store (issue 16): `GET /v1/secrets/{name}` against the standalone binary
// (`rampart dev`: SQLite, the demo policy, a standing binding), each read decided, decrypted
// and recorded in the ledger before it answers. Target: p99 under 5 ms. HashiCorp Vault's KV v2
// read (`vault server -dev`) is the peer when a vault binary is at $VAULT_BIN or bin/vault;
// rounds alternate between the two. $RAMPART_BENCH_SECRET_READS (default 2000) reads per round
// and server, 3 rounds.
func TestSecretGetLatency(t *testing.T) {
	n := envInt("RAMPART_BENCH_SECRET_READS", 2000)
	bin := rampartBin(t)
	dir := t.TempDir()
	addr, gw := freePort(t), freePort(t)
	stopR := startProcess(t, bin, "dev", "--addr", addr, "--data", filepath.Join(dir, "data"), "--egress-addr", gw)
	defer stopR()
	waitReady(t, "http://"+addr+"/readyz")
	ctx := context.Background()
	c := api.NewClient("http://"+addr, "")
	tok, err := c.DevLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	c.Token = tok.Token
	value := []byte(strings.Repeat("k", 64))
	if _, err := c.PutSecret(ctx, "research/tracking-key", value); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	rampartGet := func() error {
		return get(hc, "http://"+addr+"/v1/secrets/research%2Ftracking-key", "Bearer "+tok.Token)
	}
	// The control: the same decision and store read, no decryption and no ledger entry.
	rampartVersions := func() error {
		return get(hc, "http://"+addr+"/v1/secret-versions/research%2Ftracking-key", "Bearer "+tok.Token)
	}

	var vaultGet func() error
	vaultBin := os.Getenv("VAULT_BIN")
	if vaultBin == "" {
		if p, _ := filepath.Abs("bin/vault"); fileExists(p) {
			vaultBin = p
		}
	}
	if vaultBin != "" {
		vaddr := freePort(t)
		stopV := startProcess(t, vaultBin, "server", "-dev", "-dev-root-token-id=root", "-dev-listen-address="+vaddr)
		defer stopV()
		waitReady(t, "http://"+vaddr+"/v1/sys/health")
		req, _ := http.NewRequest(http.MethodPost, "http://"+vaddr+"/v1/secret/data/tracking-key", strings.NewReader(`{"data":{"value":"`+string(value)+`"}}`))
		req.Header.Set("X-Vault-Token", "root")
		resp, err := hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("vault put: %v %v", err, resp)
		}
		resp.Body.Close()
		vaultGet = func() error {
			r, _ := http.NewRequest(http.MethodGet, "http://"+vaddr+"/v1/secret/data/tracking-key", nil)
			r.Header.Set("X-Vault-Token", "root")
			return do(hc, r)
		}
	}

	time1 := func(f func() error) []time.Duration {
		for range 100 { // warm the connection and the caches
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
		out := make([]time.Duration, n)
		for i := range out {
			t0 := time.Now()
			if err := f(); err != nil {
				t.Fatal(err)
			}
			out[i] = time.Since(t0)
		}
		return out
	}
	fmt.Printf("secret get over HTTP, %d sequential reads per round and server, keep-alive; %s\n", n, loadAverage())
	var all []time.Duration
	for round := 1; round <= 3; round++ {
		r := Summarize(time1(rampartGet))
		all = append(all, r.P99)
		c := Summarize(time1(rampartVersions))
		line := fmt.Sprintf("round %d: rampart get p50 %s p99 %s max %s | versions (no ledger entry) p50 %s p99 %s", round, r.P50, r.P99, r.Max, c.P50, c.P99)
		if vaultGet != nil {
			v := Summarize(time1(vaultGet))
			line += fmt.Sprintf(" | vault kv-v2 p50 %s p99 %s max %s | rampart÷vault p50 %.2f", v.P50, v.P99, v.Max, float64(r.P50)/float64(v.P50))
		}
		fmt.Println(line)
	}
	med := Summarize(all).P50
	fmt.Printf("median of the rounds' p99: %s (target < 5ms: %s); %s\n", med, map[bool]string{true: "met", false: "MISSED"}[med < 5*time.Millisecond], loadAverage())
}

func get(hc *http.Client, url, auth string) error {
	r, _ := http.NewRequest(http.MethodGet, url, nil)
	r.Header.Set("Authorization", auth)
	return do(hc, r)
}

func do(hc *http.Client, r *http.Request) error {
	resp, err := hc.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d", r.Method, r.URL, resp.StatusCode)
	}
	return nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs a server until the returned function stops it.
func startProcess(t testing.TB, bin string, args ...string) func() {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
}

// waitReady polls url until it answers 200, for at most a minute (a failure limit, not a wait).
func waitReady(t testing.TB, url string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s not ready within a minute", url)
}
