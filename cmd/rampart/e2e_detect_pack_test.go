package main_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Issue 17: the demo's built-in pack fires from a real workflow in `rampart dev`, as people use
// it: alice is refused the weights (weights.denied), then files a request for them — the pack's
// probing-then-request fires on her, its evidence is those two entries, and `rampart audit
// prove` proves them against a signed checkpoint; dave files a request without being refused
// first, and nothing fires on him. Erin then acknowledges and resolves the alert.
func TestDemoPackFiresFromRealWorkflow(t *testing.T) {
	addr := freeAddr(t)
	srv := startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"))
	defer srv.stop(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	token := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, dave, erin := token("alice"), token("dave"), token("erin")

	if r := c.as(alice, "weights", "get", "frontier-7", "-O", filepath.Join(t.TempDir(), "w.bin")); r.code == 0 {
		t.Fatalf("alice read the weights without a grant: %s", r.out)
	}
	if r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "1h"); r.code != 0 {
		t.Fatalf("alice's request: %d %s", r.code, r.err)
	}
	if r := c.as(dave, "request", "create", "--role", "dataset-reader-eval-suite-v3", "--reason", "eval run 4412", "--duration", "1h"); r.code != 0 {
		t.Fatalf("dave's request: %d %s", r.code, r.err)
	}
	// Dave's request is the last entry the test writes; once detection has evaluated past it,
	// every firing it could cause is committed (alerts and cursor in one transaction).
	var list struct {
		Alerts []struct {
			ID   int64  `json:"id"`
			Rule string `json:"rule"`
			Key  string `json:"key"`
		} `json:"alerts"`
	}
	waitCaughtUp(t, []string{addr})
	r := c.as(erin, "-o", "json", "alerts", "list", "--rule", "probing-then-request")
	if r.code != 0 {
		t.Fatalf("alerts list: %d %s", r.code, r.err)
	}
	if err := json.Unmarshal([]byte(r.out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Alerts) != 1 || list.Alerts[0].Key != "alice" {
		t.Fatalf("probing-then-request alerts %+v, want one, on alice (dave was never refused)", list.Alerts)
	}
	id := fmt.Sprint(list.Alerts[0].ID)
	var detail struct {
		Evidence []struct {
			Seq   int64 `json:"seq"`
			Entry struct {
				Metadata struct {
					EventCode string `json:"event_code"`
				} `json:"metadata"`
			} `json:"entry"`
		} `json:"evidence"`
		EvidenceSeqs []int64 `json:"evidence_seqs"`
	}
	if err := json.Unmarshal([]byte(c.as(erin, "-o", "json", "alerts", "show", id).out), &detail); err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, e := range detail.Evidence {
		codes = append(codes, e.Entry.Metadata.EventCode)
	}
	if !slices.Equal(codes, []string{"weights.denied", "request.create"}) || len(detail.EvidenceSeqs) != 2 {
		t.Fatalf("evidence %v (seqs %v), want alice's refusal then her request", codes, detail.EvidenceSeqs)
	}
	args := []string{"audit", "prove"}
	for _, s := range detail.EvidenceSeqs {
		args = append(args, fmt.Sprint(s))
	}
	if r := c.as(erin, args...); r.code != 0 {
		t.Fatalf("audit prove of the evidence: %d %s %s", r.code, r.out, r.err)
	}
	// Alice cannot see or silence the alert about herself.
	if r := c.as(alice, "alerts", "resolve", id); r.code == 0 {
		t.Fatal("alice resolved the alert about herself")
	}
	c.as(erin, "alerts", "ack", id)
	if r := c.as(erin, "-o", "json", "alerts", "resolve", id, "--note", "eval run confirmed with alice"); r.code != 0 || !strings.Contains(r.out, `"resolved"`) {
		t.Fatalf("resolve: %d %s %s", r.code, r.out, r.err)
	}
}
