package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/demo"
)

// The example of a weakening: critical-weights needs an owner AND security; the new
// commit drops the security step (M from 2 to 1).
const (
	securityStep = "  - name: security\n    from: [security]\n    count: 1\n  # beneficiary"
	noSecurity   = "  # beneficiary"
)

// gitIn runs the real git in dir.
func gitIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// makePolicyRepo makes a Git repository whose first commit holds the demo policy under
// policy/ and whose second drops the security step of critical-weights; the work tree then
// holds an unrelated, invalid edit that no commit has.
func makePolicyRepo(t *testing.T, dir string) string {
	t.Helper()
	gitIn(t, dir, "init", "-q", "-b", "main")
	if err := os.CopyFS(filepath.Join(dir, "policy"), demo.Policy()); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "add", "-A")
	gitIn(t, dir, "commit", "-q", "-m", "the demo policy")
	approvals := filepath.Join(dir, "policy", "approvals.yaml")
	data, err := os.ReadFile(approvals)
	if err != nil || !bytes.Contains(data, []byte(securityStep)) {
		t.Fatalf("the demo's approvals.yaml has no security step: %v", err)
	}
	if err := os.WriteFile(approvals, bytes.Replace(data, []byte(securityStep), []byte(noSecurity), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, dir, "commit", "-q", "-am", "critical-weights: one approval is enough")
	if err := os.WriteFile(filepath.Join(dir, "policy", "groups.yaml"), []byte("not: [a policy"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// policyRepo is makePolicyRepo, once per run of the CLI table.
func (e *cliEnv) policyRepo() string {
	dir := filepath.Join(e.dir, "policy-repo")
	if _, err := os.Stat(dir); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return makePolicyRepo(e.t, dir)
}

// runBinary runs rampart without a server.
func runBinary(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "RAMPART_CONFIG_DIR="+t.TempDir(), "RAMPART_TOKEN=")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out: out.String(), err: stderr.String(), code: code}
}

type diffJSON struct {
	Verdict  string `json:"verdict"`
	Weakened int    `json:"weakened"`
	Changes  []struct {
		Verdict, Section, Kind, Name, Field string
	} `json:"changes"`
}

// TestPolicyDiff drives `rampart policy diff` with the real git: a commit that lowers M from
// 2 to 1 is WEAKENED (exit 3), the reverse is not (exit 0), each read from the commit and not
// the work tree, and a revision that looks like an option never reaches git as one.
func TestPolicyDiff(t *testing.T) {
	repo := makePolicyRepo(t, t.TempDir())
	diff := func(code int, args ...string) diffJSON {
		t.Helper()
		r := runBinary(t, append([]string{"-o", "json", "policy", "diff"}, args...)...)
		if r.code != code {
			t.Fatalf("policy diff %v: exit %d, want %d\n%s\n%s", args, r.code, code, r.out, r.err)
		}
		var d diffJSON
		if err := json.Unmarshal([]byte(r.out), &d); err != nil {
			t.Fatalf("policy diff %v: %v\n%s", args, err, r.out)
		}
		return d
	}
	d := diff(3, "--repo", repo, "--path", "policy", "HEAD~1", "HEAD")
	found := false
	for _, c := range d.Changes {
		found = found || (c.Section == "approval" && c.Name == "weights-reader-frontier-7" && c.Field == "quorum" && c.Verdict == "weakened")
	}
	if d.Verdict != "weakened" || !found {
		t.Fatalf("M from 2 to 1: %+v", d)
	}
	if d := diff(0, "--repo", repo, "--path", "policy", "HEAD", "HEAD~1"); d.Verdict != "strengthened" || d.Weakened != 0 {
		t.Fatalf("M from 1 to 2: %+v", d)
	}
	if d := diff(0, "--repo", repo, "--path", "policy", "main", "HEAD"); d.Verdict != "neutral" || d.Changes == nil || len(d.Changes) != 0 {
		t.Fatalf("the same commit twice: %+v", d)
	}
	// Two directories: the demo policy against itself.
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(dir, demo.Policy()); err != nil {
		t.Fatal(err)
	}
	if d := diff(0, dir, dir); d.Verdict != "neutral" {
		t.Fatalf("a directory against itself: %+v", d)
	}
	// The work tree's invalid groups.yaml is read only when asked for as a directory.
	if r := runBinary(t, "policy", "diff", dir, filepath.Join(repo, "policy")); r.code != 1 || !strings.Contains(r.err, "groups.yaml") {
		t.Fatalf("the work tree as a directory: exit %d, %s", r.code, r.err)
	}
	marker := filepath.Join(t.TempDir(), "ran")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--repo", repo, "--path", "policy", "--", "--output=" + marker, "HEAD"}, 1, "may not start with '-'"},
		{[]string{"--repo", repo, "--path", "policy", "no-such-branch", "HEAD"}, 1, "is not a commit"},
		{[]string{"--repo", repo, "--path", "../..", "HEAD~1", "HEAD"}, 1, "inside the repository"},
		{[]string{"--path", "policy", dir, dir}, 2, "--path"},
		{[]string{dir, filepath.Join(dir, "no-such")}, 2, "is not a directory"},
		{[]string{dir}, 2, "NEW"},
	} {
		r := runBinary(t, append([]string{"policy", "diff"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.err, c.want) || r.out != "" {
			t.Errorf("policy diff %v: exit %d, stdout %q, stderr %q; want %d and %q", c.args, r.code, r.out, r.err, c.code, c.want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a revision was passed to git as an option")
	}
}
