package server_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/server"
)

// policyRepo is a real Git repository holding the demo policy.
type policyRepo struct {
	t   *testing.T
	dir string
}

func newPolicyRepo(t *testing.T) *policyRepo {
	t.Helper()
	r := &policyRepo{t: t, dir: t.TempDir()}
	r.git("init", "--quiet", "--initial-branch=main")
	if err := os.MkdirAll(filepath.Join(r.dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(r.dir, "policy", p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	r.commit("policy: the first policy")
	return r
}

func (r *policyRepo) git(args ...string) string {
	r.t.Helper()
	c := exec.Command("git", args...)
	c.Dir = r.dir
	c.Env = append(os.Environ(), "GIT_AUTHOR_NAME=alice", "GIT_AUTHOR_EMAIL=alice@example.com", "GIT_COMMITTER_NAME=alice",
		"GIT_COMMITTER_EMAIL=alice@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		r.t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// commit commits every change and returns the commit id.
func (r *policyRepo) commit(msg string) string {
	r.git("add", "-A")
	r.git("commit", "--quiet", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// edit replaces old by new in a policy file.
func (r *policyRepo) edit(file, old, new string) {
	r.t.Helper()
	p := filepath.Join(r.dir, "policy", file)
	b, err := os.ReadFile(p)
	if err != nil {
		r.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		r.t.Fatalf("%s has no %q", file, old)
	}
	if err := os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// approvedByMessage is a stand-in for guarded change's verifier, to test the loading around it:
// it accepts first-parent commits whose message says "[approved]", in order, and stops at the
// first that does not. (The real verifier is tested in package change and end to end.)
func approvedByMessage(r *policyRepo) server.PolicyGate {
	return func(ctx context.Context, ref, from, to string) (string, error) {
		list := r.git("rev-list", "--first-parent", "--reverse", from+".."+to)
		reached := from
		for _, c := range strings.Fields(list) {
			if !strings.Contains(r.git("log", "-1", "--format=%s", c), "[approved]") {
				return reached, &notApproved{c}
			}
			reached = c
		}
		return reached, nil
	}
}

type notApproved struct{ commit string }

func (e *notApproved) Error() string { return e.commit + " has no approvals under the policy in force" }

func gitConfig(t *testing.T, r *policyRepo, pin string) server.Config {
	return server.Config{DataDir: t.TempDir(), Dev: true, Ledger: server.LedgerConfig{Origin: "rampart-test"},
		PolicyGit: &server.PolicyGitConfig{Repo: r.dir, Ref: "refs/heads/main", Dir: "policy", Pin: pin, Repository: "policy"}}
}

func status(t *testing.T, in *server.Instance) server.PolicyStatus {
	t.Helper()
	st, ok := in.PolicyStatus().(server.PolicyStatus)
	if !ok {
		t.Fatalf("PolicyStatus is %T", in.PolicyStatus())
	}
	return st
}

// refusedEntries counts the policy.refused entries of the ledger.
func refusedEntries(t *testing.T, in *server.Instance) int {
	t.Helper()
	recs, err := in.Store.Entries(context.Background(), 1, 10000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if bytes.Contains(r.Data, []byte(`"policy.refused"`)) {
			if !bytes.Contains(r.Data, []byte(`"severity_id":4`)) {
				t.Errorf("policy.refused is not High: %s", r.Data)
			}
			n++
		}
	}
	return n
}

// TestPolicyFromGitLoadsOnlyApprovedCommits: the server serves the newest commit reachable from
// the pin through approved updates; an unapproved commit is refused once in the ledger, shown
// in the status and metric, and blocks what follows it; a rewritten history, a deleted ref, a
// policy that does not validate and a symbolic link are refused; the old policy stays.
func TestPolicyFromGitLoadsOnlyApprovedCommits(t *testing.T) {
	ctx := context.Background()
	r := newPolicyRepo(t)
	pin := r.git("rev-parse", "HEAD")
	c1 := r.commit("[approved] policy: an approved change")
	cfg := gitConfig(t, r, pin)
	in := start(t, cfg, server.Options{PolicyGate: approvedByMessage(r)}, nil)
	defer in.Close()
	if st := status(t, in); st.Source != "git" || st.Commit != c1 || st.Refused != nil {
		t.Fatalf("at start: %+v, want commit %s (approved after the pin) and no refusal", st, c1)
	}

	// An unapproved commit that lowers an approval is refused; the old policy stays.
	before := in.Access.Policy().Digest
	r.edit("approvals.yaml", "description:", "description: weakened;")
	c2 := r.commit("policy: nobody approved this")
	for range 2 { // a second poll of the same refused tip writes nothing new
		if err := in.ReloadPolicy(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := status(t, in)
	if st.Commit != c1 || st.Refused == nil || st.Refused.Commit != c2 || !strings.Contains(st.Refused.Reason, "no approvals") {
		t.Fatalf("after an unapproved commit: %+v", st)
	}
	if in.Access.Policy().Digest != before {
		t.Fatal("the unapproved policy was loaded")
	}
	if n := refusedEntries(t, in); n != 1 {
		t.Fatalf("%d policy.refused entries, want 1", n)
	}

	// An approved commit on top of an unapproved one is still refused: the update before it is not approved.
	c3 := r.commit("[approved] policy: built on an unapproved commit")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c1 || st.Refused == nil || st.Refused.Commit != c3 || !strings.Contains(st.Refused.Reason, c2) {
		t.Fatalf("approved commit on an unapproved one: %+v", st)
	}

	// Taking the unapproved commits out (back to c1) and landing an approved change loads it.
	r.git("reset", "--quiet", "--hard", c1)
	r.edit("approvals.yaml", "description:", "description: reviewed;")
	c4 := r.commit("[approved] policy: reviewed")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c4 || st.Refused != nil {
		t.Fatalf("after an approved change: %+v", st)
	}
	if in.Access.Policy().Digest == before {
		t.Fatal("the approved policy was not loaded")
	}

	// A history that does not descend from the commit in force is refused.
	r.git("reset", "--quiet", "--hard", c1)
	c5 := r.commit("[approved] policy: rewritten history")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c4 || st.Refused == nil || st.Refused.Commit != c5 || !strings.Contains(st.Refused.Reason, "rewritten") {
		t.Fatalf("after a rewrite: %+v", st)
	}
	r.git("reset", "--quiet", "--hard", c4)

	// An approved commit whose policy does not validate is refused.
	r.edit("approvals.yaml", "description:", "no_such_field: 1\n  description:")
	c6 := r.commit("[approved] policy: invalid")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c4 || st.Refused == nil || st.Refused.Commit != c6 || !strings.Contains(st.Refused.Reason, "does not validate") {
		t.Fatalf("after an invalid policy: %+v", st)
	}
	r.git("reset", "--quiet", "--hard", c4)

	// A symbolic link where a policy file would be is refused: its target is not in the commit.
	if err := os.Symlink("/etc/passwd", filepath.Join(r.dir, "policy", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	c7 := r.commit("[approved] policy: a link")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c4 || st.Refused == nil || st.Refused.Commit != c7 || !strings.Contains(st.Refused.Reason, "symbolic link") {
		t.Fatalf("after a symbolic link: %+v", st)
	}
	r.git("reset", "--quiet", "--hard", c4)

	// A deleted ref keeps the policy in force.
	r.git("update-ref", "-d", "refs/heads/main")
	if err := in.ReloadPolicy(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, in); st.Commit != c4 || st.Refused == nil || !strings.Contains(st.Refused.Reason, "deleted") {
		t.Fatalf("after deleting the ref: %+v", st)
	}
	if n := refusedEntries(t, in); n != 6 {
		t.Fatalf("%d policy.refused entries, want 6 (one per refused tip and reason)", n)
	}
}

// TestPolicyFromGitWithoutApprovalsServesThePin: with guarded change's verifier (the default)
// and no approvals in the repository, only the pinned commit loads.
func TestPolicyFromGitWithoutApprovalsServesThePin(t *testing.T) {
	r := newPolicyRepo(t)
	pin := r.git("rev-parse", "HEAD")
	r.edit("approvals.yaml", "description:", "description: weakened;")
	r.commit("[approved] policy: would be approved by the stand-in")
	in := start(t, gitConfig(t, r, pin), server.Options{}, nil)
	defer in.Close()
	if st := status(t, in); st.Commit != pin || st.Refused == nil || !strings.Contains(st.Refused.Reason, "not an approved change") {
		t.Fatalf("%+v", st)
	}
}

func TestPolicyGitConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"policy_dir: x\npolicy_git: {repo: /r, pin: " + strings.Repeat("a", 40) + "}\n", "not both"},
		{"policy_git: {repo: /r, pin: main}\n", "policy_git.pin"},
		{"policy_git: {repo: /r, ref: main, pin: " + strings.Repeat("a", 40) + "}\n", "policy_git.ref"},
		{"policy_git: {repo: /r, dir: ../x, pin: " + strings.Repeat("a", 40) + "}\n", "policy_git.dir"},
		{"policy_git: {pin: " + strings.Repeat("a", 40) + "}\n", "policy_git.repo"},
	} {
		p := filepath.Join(t.TempDir(), "rampart.yaml")
		if err := os.WriteFile(p, []byte("data_dir: /tmp/x\n"+tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := server.LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want one naming %s", tc.yaml, err, tc.want)
		}
	}
}

// TestPolicyFromGitNeverRollsBack: a restart starts from the commit the server last verified,
// not from the pin, so approvals that can no longer be verified (a notes ref lost) do not roll
// the policy back; when that commit is gone from the repository, the server refuses to start.
func TestPolicyFromGitNeverRollsBack(t *testing.T) {
	r := newPolicyRepo(t)
	pin := r.git("rev-parse", "HEAD")
	r.edit("approvals.yaml", "description:", "description: reviewed;")
	c1 := r.commit("[approved] policy: reviewed")
	cfg := gitConfig(t, r, pin)
	in := start(t, cfg, server.Options{PolicyGate: approvedByMessage(r)}, nil)
	digest := in.Access.Policy().Digest
	if st := status(t, in); st.Commit != c1 {
		t.Fatalf("first run: %+v", st)
	}
	in.Close()

	// The approvals of c1 can no longer be verified: the policy in force stays c1's.
	refuseAll := func(ctx context.Context, ref, from, to string) (string, error) {
		return from, &notApproved{to}
	}
	in = start(t, cfg, server.Options{PolicyGate: refuseAll}, nil)
	if st := status(t, in); st.Commit != c1 || st.Refused != nil || in.Access.Policy().Digest != digest {
		t.Fatalf("restart without verifiable approvals: %+v (digest %s, want %s)", st, in.Access.Policy().Digest, digest)
	}
	in.Close()

	// c1 removed from the repository: refuse to start rather than serve the pin.
	r.git("reset", "--quiet", "--hard", pin)
	r.git("reflog", "expire", "--expire=now", "--all")
	r.git("gc", "--quiet", "--prune=now")
	_, err := server.Start(context.Background(), cfg, server.Options{PolicyGate: refuseAll})
	if err == nil || !strings.Contains(err.Error(), "roll the policy back") {
		t.Fatalf("start with the last verified commit gone: %v", err)
	}
}
