package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/internal/changetest"
)

// The policy of the server below guards its own repository: any change needs two reviewers.
const selfGuardedPolicy = changetest.Policy + `---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: policy-change}
spec:
  steps: [{name: reviewers, from: [maintainers, security], count: 2}]
---
apiVersion: rampart.dev/v1alpha1
kind: Repository
metadata: {name: policy}
spec:
  refs:
  - {ref: refs/heads/main, approval: policy-change}
  email_domains: [example.com]
  git_servers: ["service:git"]
`

type readiness struct {
	Status string `json:"status"`
	Policy struct {
		Source  string `json:"source"`
		Commit  string `json:"commit"`
		Digest  string `json:"digest"`
		Refused *struct {
			Commit string `json:"commit"`
			Reason string `json:"reason"`
		} `json:"refused"`
	} `json:"policy"`
}

func readyz(t *testing.T, addr string) readiness {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestPolicyUnderItsOwnQuorum (issue 14): the server loads its policy from a Git repository,
// starting at the commit pinned at install. A commit that lowers the policy repository's own
// quorum from 2 to 1 reaches the ref past the hook with one approval: the server refuses it,
// keeps the old policy, records policy.refused and says why in /readyz. The same change,
// approved by two reviewers under the old rules and landed through the hook, loads.
func TestPolicyUnderItsOwnQuorum(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	changetest.Git(t, seed, nil, "init", "-q", "-b", "main")
	changetest.Write(t, seed, map[string]string{"policy.yaml": selfGuardedPolicy})
	changetest.Git(t, seed, nil, "add", "-A")
	changetest.Git(t, seed, nil, "commit", "-q", "-m", "the first policy")
	pin := changetest.Git(t, seed, nil, "rev-parse", "HEAD")

	root := filepath.Join(dir, "srv")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bare := bareRepo(t, root, "policy", seed, "echo 'not yet configured' >&2; exit 1")
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "server.yaml")
	changetest.Write(t, dir, map[string]string{"server.yaml": "listen: " + addr + "\ndata_dir: " + filepath.Join(dir, "data") +
		"\noidc:\n  dev_provider: true\npolicy_git:\n  repo: " + bare + "\n  ref: refs/heads/main\n  pin: " + pin +
		"\n  repository: policy\n  poll_interval: 1s\n"})
	startServer(t, addr, "server", "--config", cfg)
	r := readyz(t, addr)
	if r.Policy.Source != "git" || r.Policy.Commit != pin || r.Policy.Refused != nil {
		t.Fatalf("at start: %+v", r)
	}
	oldDigest := r.Policy.Digest

	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	alice, bob, dave, erin := signInAs(t, addr, "alice"), signInAs(t, addr, "bob"), signInAs(t, addr, "dave"), signInAs(t, addr, "erin")
	must := func(tok string, args ...string) string {
		t.Helper()
		res := c.as(tok, args...)
		if res.code != 0 {
			t.Fatalf("rampart %s: exit %d\n%s%s", strings.Join(args, " "), res.code, res.out, res.err)
		}
		return res.out
	}
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(must(erin, "-o", "json", "token", "create", "--subject", "service:git", "--kind", "service", "--ttl", "1h")), &tr); err != nil || tr.Token == "" {
		t.Fatalf("service token: %v", err)
	}
	hook := "#!/bin/sh\nRAMPART_TOKEN=" + shq(tr.Token) + " exec " + binary + " --addr " + addr + " change hook pre-receive --repository policy\n"
	if err := os.WriteFile(filepath.Join(bare, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	gs := gitServer(t, root)
	url := func(user string) string {
		return strings.Replace(gs.URL, "http://", "http://"+user+":x@", 1) + "/policy.git"
	}

	// Alice lowers the quorum for changes to the policy from 2 to 1, and asks for the change.
	work := filepath.Join(dir, "work")
	changetest.Git(t, dir, nil, "clone", "-q", url("alice"), work)
	changetest.Git(t, work, nil, "config", "rampart.repository", "policy")
	changetest.Git(t, work, nil, "checkout", "-q", "-b", "weaken")
	weakened := strings.Replace(selfGuardedPolicy, "from: [maintainers, security], count: 2}", "from: [maintainers, security], count: 1}", 1)
	changetest.Commit(t, work, "alice", "one reviewer is enough", map[string]string{"policy.yaml": weakened})
	changetest.Git(t, work, nil, "push", "-q", "origin", "weaken")
	changetest.Git(t, work, nil, "fetch", "-q", "origin")
	changetest.Git(t, work, nil, "checkout", "-q", "--detach", "origin/main")
	changetest.Git(t, work, changetest.As("carol"), "merge", "-q", "--no-ff", "-m", "merge weaken", "origin/weaken")
	m1 := changetest.Git(t, work, nil, "rev-parse", "HEAD")
	id := changeID.FindString(must(alice, "change", "request", "--repo", work, "--ref", "refs/heads/main", "--source", "origin/weaken"))
	if id == "" {
		t.Fatal("no change id")
	}
	must(bob, "change", "approve", id, "--repo", work)
	push := func() (string, bool) {
		cmd := exec.Command("git", "push", "--porcelain", url("carol"), m1+":refs/heads/main")
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		return string(out), err == nil
	}
	// One approval is what the new policy would ask, not the policy in force: the hook refuses.
	if out, ok := push(); ok || !strings.Contains(out, "lacks approvals") {
		t.Fatalf("push with one of two approvals: ok=%v\n%s", ok, out)
	}
	// Whoever controls the Git server's host writes it past the hook: the server refuses it.
	changetest.Git(t, bare, nil, "fetch", "-q", work, m1+":refs/heads/main")
	waitFor(t, 30*time.Second, "the server refusing the unapproved policy commit", func() bool {
		r = readyz(t, addr)
		return r.Policy.Refused != nil
	})
	if r.Status != "ready" || r.Policy.Commit != pin || r.Policy.Digest != oldDigest || r.Policy.Refused.Commit != m1 ||
		!strings.Contains(r.Policy.Refused.Reason, "not an approved change") {
		t.Fatalf("after an unapproved policy commit: %+v (refused %+v)", r, r.Policy.Refused)
	}
	// Reviewers see what approving grants: the policy diff of the change, from their own checkout.
	if out := must(dave, "change", "show", id, "--repo", work, "--policy-path", "."); !strings.Contains(out, "policy-change") ||
		!strings.Contains(out, "WEAKENED") || !strings.Contains(out, "as rampart policy diff shows it") {
		t.Fatalf("change show of a weakening policy change: %s", out)
	}
	changetest.Git(t, work, nil, "config", "rampart.policyPath", ".")
	var shown struct {
		PolicyDiff struct {
			Verdict string `json:"verdict"`
		} `json:"policy_diff"`
	}
	if err := json.Unmarshal([]byte(must(dave, "-o", "json", "change", "show", id, "--repo", work)), &shown); err != nil || shown.PolicyDiff.Verdict != "weakened" {
		t.Fatalf("change show -o json: verdict %q (%v)", shown.PolicyDiff.Verdict, err)
	}
	if out := c.as(erin, "audit", "tail", "-n", "50").out; !strings.Contains(out, "policy.refused") {
		t.Fatalf("no policy.refused entry in the ledger:\n%s", out)
	}

	// Undo the write past the hook, then land the change with a second approval under the old rules.
	changetest.Git(t, bare, nil, "update-ref", "refs/heads/main", pin)
	waitFor(t, 30*time.Second, "the refusal to clear once the ref is back at the commit in force", func() bool {
		r = readyz(t, addr)
		return r.Policy.Refused == nil
	})
	must(dave, "change", "approve", id, "--repo", work)
	if out, ok := push(); !ok || !strings.Contains(out, "approved by") {
		t.Fatalf("the approved policy change is refused by the hook:\n%s", out)
	}
	waitFor(t, 30*time.Second, "the server loading the approved policy commit", func() bool {
		r = readyz(t, addr)
		return r.Policy.Commit == m1
	})
	if r.Policy.Refused != nil || r.Policy.Digest == oldDigest {
		t.Fatalf("after the approved change: %+v (refused %+v)", r, r.Policy.Refused)
	}
}
