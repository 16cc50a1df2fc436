package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	rserver "rampart.dev/rampart/server"
)

// Issue 17: a start refused over the ledger (here a standing tamper alarm) cannot write to it;
// the real binary's next start that serves records it (ledger.start_refused), and the built-in
// pack, replayed by `rampart detect test` over `rampart audit export` of the real ledger, fires
// ledger-start-refused with that entry as evidence.
func TestRefusedStartDetected(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, addr, "dev", "--addr", addr, "--data", data)
	srv.stop(t)
	alarm := filepath.Join(data, rserver.AlarmFile)
	if err := os.WriteFile(alarm, []byte(`{"at":"2026-12-07T10:00:00Z","reason":"entry 3 was changed in the database"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "dev", "--addr", addr, "--data", data, "--egress-addr", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve") {
		t.Fatalf("the server started with the alarm standing: %v\n%s", err, out)
	}
	if err := os.Remove(alarm); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, addr, "dev", "--addr", addr, "--data", data)
	defer srv.stop(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "erin")
	export := filepath.Join(t.TempDir(), "entries.jsonl")
	c.ok("audit", "export", "--file", export)
	var res struct {
		Firings []struct {
			Rule     string  `json:"rule"`
			Evidence []int64 `json:"evidence"`
		} `json:"firings"`
	}
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "detect", "test", "../../internal/demo/policy", "--events", export)), &res); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range res.Firings {
		if f.Rule == "ledger-start-refused" && len(f.Evidence) == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("ledger-start-refused did not fire on the real ledger: %+v", res.Firings)
	}
}
