package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The attack of issue 11, item 1, against the real binary: alice files for bob; carol (bob's own
// group) and dave approve; bob was allowed, while `policy explain --requester bob` said bob's
// own request could never be approved.
//
// Under the demo policy alice may not file for bob at all (request_for: people file for
// themselves and, for researchers, the workloads they own). Under a policy that does let her,
// the beneficiary's groups are excluded (always, for critical resources): carol cannot count,
// bob stays denied, and explain says so before anyone tries.
func TestOnBehalfAttackEndToEnd(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(f) == "approvals.yaml" {
			// critical-weights: researchers may also file for weights owners.
			const rule = "  - requesters: [group:researchers]\n    owned_workloads: true\n"
			if !strings.Contains(string(b), rule) {
				t.Fatalf("the demo critical-weights policy has no rule %q to add to", rule)
			}
			b = []byte(strings.Replace(string(b), rule, rule+"  - requesters: [group:researchers]\n    beneficiaries: [group:weights-owners]\n", 1))
		}
		if err := os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The demo policy itself refuses the filing, and says why.
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(dir, "demo-data"), "--egress-addr", "")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	alice := strings.TrimSpace(c.ok("login", "--dev", "--user", "alice", "--print-token"))
	r := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--for", "bob", "--reason", "pairing")
	if r.code != 3 || !strings.Contains(r.err, `no request_for rule of approval policy "critical-weights" lets alice file for bob`) {
		t.Fatalf("alice files for bob under the demo policy: %+v", r)
	}

	// Under the policy that lets her file, the attack itself.
	addr = freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(dir, "data"), "--policy", pdir, "--egress-addr", "")
	c = &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	token := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, carol, dave, erin := token("alice"), token("carol"), token("dave"), token("erin")

	// Explain, offline and from the server, says it could never be approved, and why.
	for _, args := range [][]string{
		{"policy", "explain", "--policy", pdir, "--requester", "alice", "--beneficiary", "bob", "--role", "weights-reader-frontier-7"},
		{"policy", "explain", "--requester", "alice", "--beneficiary", "bob", "--role", "weights-reader-frontier-7"},
	} {
		r := c.as(alice, args...)
		if r.code != 0 || !strings.Contains(r.out, "could never be approved") || !strings.Contains(r.out, `not carol: shares group "weights-owners" with the beneficiary`) ||
			!strings.Contains(r.out, "yes, for someone else, as request_for allows") {
			t.Fatalf("rampart %s: %+v", strings.Join(args, " "), r)
		}
	}

	out := c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--for", "bob", "--reason", "pairing", "--duration", "1h")
	id := reqID.FindString(out.out)
	if out.code != 0 || id == "" {
		t.Fatalf("alice files for bob: %+v", out)
	}
	if r := c.as(carol, "request", "approve", id); r.code != 1 || !strings.Contains(r.err, "not visible to carol") {
		t.Fatalf("carol, in bob's group, approves: %+v", r)
	}
	if r := c.as(dave, "request", "approve", id); r.code != 0 || !strings.Contains(r.out, "pending") {
		t.Fatalf("dave approves: %+v", r)
	}
	if r := c.as(erin, "check", "bob", "read", "weights/frontier-7"); r.code != 3 || !strings.Contains(r.out, "DENIED") {
		t.Fatalf("bob after carol and dave: %+v", r)
	}
	// The request's view (admin) names the approval that counted and that nothing else can.
	if r := c.as(erin, "-o", "json", "request", "show", id); r.code != 0 || !strings.Contains(r.out, `"satisfied": false`) {
		t.Fatalf("request show: %+v", r)
	}
}
