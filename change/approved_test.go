package change_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/internal/changetest"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
)

// A policy repository guarding itself: its files under policy/ declare the repository "policy"
// whose main needs M approvals from maintainers.
func selfPolicy(m int) string {
	return strings.NewReplacer("COUNT", string(rune('0'+m))).Replace(`apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec: {admin_group: admins}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [erin]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: maintainers}
spec: {members: [alice, bob, carol, dave]}
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: policy-change}
spec:
  steps: [{name: maintainers, from: [maintainers], count: COUNT}]
---
apiVersion: rampart.dev/v1alpha1
kind: Repository
metadata: {name: policy}
spec:
  refs: [{ref: refs/heads/main, approval: policy-change}]
  email_domains: [example.com]
  git_servers: ["service:git"]
`)
}

type fixture struct {
	t     testing.TB
	ctx   context.Context
	dir   string
	g     *change.Git
	svc   *change.Service
	pol   *policy.Policy
	key   *audit.Ledger
	clock *clocktest.Clock
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	skey, _, err := audit.GenerateKey("test.rampart")
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(ctx, audit.Options{Store: s, SigningKey: skey})
	if err != nil {
		t.Fatal(err)
	}
	s.WatchAppends(l)
	f := &fixture{t: t, ctx: ctx, key: l, clock: clocktest.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))}
	f.svc = change.NewService(change.Options{Store: s, Policy: func() *policy.Policy { return f.pol }, Ledger: l, Now: f.clock.Now})
	f.dir = changetest.Repo(t, filepath.Join(t.TempDir(), "policy"))
	changetest.Commit(t, f.dir, "erin", "the first policy", map[string]string{"policy/p.yaml": selfPolicy(2)})
	f.g = &change.Git{Dir: f.dir}
	f.load("HEAD")
	return f
}

// load makes the policy at rev the policy in force.
func (f *fixture) load(rev string) {
	f.t.Helper()
	c, err := f.g.ResolveCommit(f.ctx, rev)
	if err != nil {
		f.t.Fatal(err)
	}
	if f.pol, err = change.PolicyAt(f.ctx, f.g, c, "policy"); err != nil {
		f.t.Fatal(err)
	}
}

// land files a change of branch into main, has approvers approve it, merges it as pusher through
// Decide and, when allowed, moves main and writes the note as the hooks do. It returns the merge
// commit and the verdict.
func (f *fixture) land(branch, pusher string, approvers ...string) (string, change.Verdict) {
	f.t.Helper()
	tip := changetest.Git(f.t, f.dir, nil, "rev-parse", "main")
	in, err := change.Compute(f.ctx, f.g, "refs/heads/main", branch, func(context.Context) (string, error) { return tip, nil })
	if err != nil {
		f.t.Fatal(err)
	}
	v, err := f.svc.File(f.ctx, change.FileInput{Requester: "alice", Repository: "policy", Ref: "refs/heads/main", Base: in.Base, Source: in.Source, Tree: in.Tree, Paths: in.Paths, Commits: in.Commits})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, a := range approvers {
		if _, err := f.svc.Review(f.ctx, change.ReviewInput{ChangeID: v.Change.ID, Approver: a, Decision: change.Approve, Base: in.Base, Tree: in.Tree, SessionID: "ses-" + a}); err != nil {
			f.t.Fatalf("%s approves: %v", a, err)
		}
	}
	changetest.Git(f.t, f.dir, nil, "checkout", "-q", "--detach", "main")
	changetest.Git(f.t, f.dir, changetest.As(pusher), "merge", "-q", "--no-ff", "-m", "merge "+branch, branch)
	merge := changetest.Git(f.t, f.dir, nil, "rev-parse", "HEAD")
	u, err := change.Facts(f.ctx, f.g, "policy", pusher, change.RefUpdate{Old: tip, New: merge, Ref: "refs/heads/main"})
	if err != nil {
		f.t.Fatal(err)
	}
	verdict, err := f.svc.Decide(f.ctx, "service:git", u)
	if err != nil {
		f.t.Fatal(err)
	}
	if verdict.Allowed {
		changetest.Git(f.t, f.dir, nil, "update-ref", "refs/heads/main", merge, tip)
		if err := f.g.AddNote(f.ctx, change.NotesRef, merge, verdict.Bundle.Marshal()); err != nil {
			f.t.Fatal(err)
		}
	}
	changetest.Git(f.t, f.dir, nil, "checkout", "-q", "main")
	return merge, verdict
}

// branch makes a branch from main with one commit by alice writing files.
func (f *fixture) branch(name string, files map[string]string) {
	f.t.Helper()
	changetest.Git(f.t, f.dir, nil, "checkout", "-q", "-b", name, "main")
	changetest.Commit(f.t, f.dir, "alice", name, files)
	changetest.Git(f.t, f.dir, nil, "checkout", "-q", "main")
}

// Weakening the rules needs approval under the rules in force before the change (invariant 10):
// a commit lowering M from 2 to 1, landed by a server already running the weaker policy with one
// approval, is not Approved under the policy at its parent; with two approvals it is.
func TestApprovedUnderTheRulesAtTheParent(t *testing.T) {
	f := newFixture(t)
	f.branch("readme", map[string]string{"README": "two approvals\n"})
	ok, v := f.land("readme", "erin", "bob", "carol")
	if !v.Allowed {
		t.Fatalf("an ordinary change with two approvals: %+v", v)
	}
	if err := change.Approved(f.ctx, f.g, "policy", "refs/heads/main", ok, f.key.Verifier(), "policy"); err != nil {
		t.Fatalf("Approved(an approved change): %v", err)
	}

	// The weakening, approved by one maintainer, lands only on a server that already runs it.
	f.branch("weaken", map[string]string{"policy/p.yaml": selfPolicy(1)})
	f.load("weaken")
	weak, v := f.land("weaken", "erin", "bob")
	if !v.Allowed {
		t.Fatalf("the weakening under the weakened policy: %+v", v)
	}
	err := change.Approved(f.ctx, f.g, "policy", "refs/heads/main", weak, f.key.Verifier(), "policy")
	if err == nil || !strings.Contains(err.Error(), "quorum not met") || !strings.Contains(err.Error(), "has 1 of 2") {
		t.Fatalf("Approved(a weakening approved once) = %v, want quorum not met under the old rules", err)
	}
	// By the rule the server recorded (not the rules at the parent) it looks approved: which is
	// why a server loading its own policy must pass the policy path.
	if err := change.Approved(f.ctx, f.g, "policy", "refs/heads/main", weak, f.key.Verifier(), ""); err != nil {
		t.Fatalf("Approved(by the recorded rule) = %v", err)
	}
	rep, err := change.VerifyHistory(f.ctx, f.g, change.VerifyOptions{Repository: "policy", Ref: "refs/heads/main", Key: f.key.Verifier(), PolicyPath: "policy",
		Since: changetest.Git(t, f.dir, nil, "rev-parse", ok+"^1")})
	if err != nil || rep.Updates != 2 || len(rep.Violations) != 1 || rep.Violations[0].Commit != weak {
		t.Fatalf("VerifyHistory: %+v, %v", rep, err)
	}

	// The same weakening approved by two maintainers under the old rules: approved.
	f2 := newFixture(t)
	f2.branch("weaken", map[string]string{"policy/p.yaml": selfPolicy(1)})
	weak2, v := f2.land("weaken", "erin", "bob", "carol")
	if !v.Allowed {
		t.Fatalf("the weakening with two approvals: %+v", v)
	}
	if err := change.Approved(f2.ctx, f2.g, "policy", "refs/heads/main", weak2, f2.key.Verifier(), "policy"); err != nil {
		t.Fatalf("Approved(a weakening approved under the old rules): %v", err)
	}
	// Another repository's name, another ref: not approved.
	if err := change.Approved(f2.ctx, f2.g, "infra", "refs/heads/main", weak2, f2.key.Verifier(), ""); err == nil {
		t.Fatal("Approved for another repository")
	}
	if err := change.Approved(f2.ctx, f2.g, "policy", "refs/heads/release", weak2, f2.key.Verifier(), ""); err == nil {
		t.Fatal("Approved for another ref")
	}
	// A key that did not sign the ledger: not approved.
	_, vkey, _ := audit.GenerateKey("other.rampart")
	other, _ := audit.NewVerifier(vkey)
	if err := change.Approved(f2.ctx, f2.g, "policy", "refs/heads/main", weak2, other, ""); err == nil || !strings.Contains(err.Error(), "pinned key") {
		t.Fatalf("Approved with another key: %v", err)
	}
}

// The independence verify recomputes from git: a landing whose recorded parties omit an approver
// who authored a commit of the change (a server that forgot, or a forged rule) does not verify.
func TestVerifyRecomputesPartiesFromGit(t *testing.T) {
	f := newFixture(t)
	changetest.Git(t, f.dir, nil, "checkout", "-q", "-b", "sneaky", "main")
	changetest.Commit(t, f.dir, "alice", "one", map[string]string{"a": "1\n"})
	changetest.Commit(t, f.dir, "bob", "two", map[string]string{"b": "2\n"})
	changetest.Git(t, f.dir, nil, "checkout", "-q", "main")
	// Filed with only alice's commit listed: the server never hears of bob's.
	tip := changetest.Git(t, f.dir, nil, "rev-parse", "main")
	in, err := change.Compute(f.ctx, f.g, "refs/heads/main", "sneaky", func(context.Context) (string, error) { return tip, nil })
	if err != nil {
		t.Fatal(err)
	}
	var onlyAlice []change.Commit
	for _, c := range in.Commits {
		if c.Author == "alice@example.com" {
			onlyAlice = append(onlyAlice, c)
		}
	}
	v, err := f.svc.File(f.ctx, change.FileInput{Requester: "alice", Repository: "policy", Ref: "refs/heads/main", Base: in.Base, Source: in.Source, Tree: in.Tree, Paths: in.Paths, Commits: onlyAlice})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "carol"} {
		if _, err := f.svc.Review(f.ctx, change.ReviewInput{ChangeID: v.Change.ID, Approver: a, Decision: change.Approve, Base: in.Base, Tree: in.Tree}); err != nil {
			t.Fatal(err)
		}
	}
	// A hook that reports only the merge commit (a buggy or compromised one): the server counts bob.
	changetest.Git(t, f.dir, nil, "checkout", "-q", "--detach", "main")
	changetest.Git(t, f.dir, changetest.As("erin"), "merge", "-q", "--no-ff", "-m", "merge", "sneaky")
	merge := changetest.Git(t, f.dir, nil, "rev-parse", "HEAD")
	u, err := change.Facts(f.ctx, f.g, "policy", "erin", change.RefUpdate{Old: tip, New: merge, Ref: "refs/heads/main"})
	if err != nil {
		t.Fatal(err)
	}
	u.Commits = u.Commits[:1] // the merge commit only
	verdict, err := f.svc.Decide(f.ctx, "service:git", u)
	if err != nil || !verdict.Allowed {
		t.Fatalf("decide: %+v, %v", verdict, err)
	}
	changetest.Git(t, f.dir, nil, "update-ref", "refs/heads/main", merge, tip)
	if err := f.g.AddNote(f.ctx, change.NotesRef, merge, verdict.Bundle.Marshal()); err != nil {
		t.Fatal(err)
	}
	err = change.Approved(f.ctx, f.g, "policy", "refs/heads/main", merge, f.key.Verifier(), "")
	if err == nil || !strings.Contains(err.Error(), "bob does not count: is the author of commit") {
		t.Fatalf("Approved(bob approving his own commit) = %v", err)
	}
}
