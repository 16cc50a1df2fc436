package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Issue 12, item 7: the standalone gateway's /metrics can require a token (metrics_token_file).
func TestMetricsToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("token", "  0123456789abcdef0123  \n")
	cfg := func(extra string) string {
		return write("egress.yaml", "policy_dir: /etc/rampart/policy\nstore: {driver: sqlite, path: /var/lib/rampart/r.db}\n"+extra)
	}
	if c, err := LoadEgressConfig(cfg("metrics_token_file: " + good + "\n")); err != nil || c.MetricsTokenFile != good {
		t.Fatalf("a good token file: %+v %v", c, err)
	}
	for _, bad := range []string{write("short", "abc\n"), write("spaces", "0123456789 abcdef0123\n"), filepath.Join(dir, "missing")} {
		_, err := LoadEgressConfig(cfg("metrics_token_file: " + bad + "\n"))
		if err == nil || !strings.Contains(err.Error(), "metrics_token_file") {
			t.Errorf("%s accepted: %v", bad, err)
		}
	}

	var tok atomic.Pointer[string]
	h := metricsGuard(&tok, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metrics")) }))
	get := func(auth string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if get("") != 200 {
		t.Fatal("without a configured token /metrics is open")
	}
	s := "0123456789abcdef0123"
	tok.Store(&s)
	for auth, want := range map[string]int{"": 401, "Bearer wrong": 401, "Basic " + s: 401, "Bearer " + s[:10]: 401, "Bearer " + s: 200} {
		if got := get(auth); got != want {
			t.Errorf("Authorization %q: %d, want %d", auth, got, want)
		}
	}
}
