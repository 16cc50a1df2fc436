package change_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/internal/changetest"
)

// The offline hook decides from approvals bundles signed by the ledger, as the server would, and
// refuses whatever it cannot verify.
func TestOfflineDecider(t *testing.T) {
	f := newFixture(t)
	f.branch("readme", map[string]string{"README": "offline\n"})
	tip := changetest.Git(t, f.dir, nil, "rev-parse", "main")
	in, err := change.Compute(f.ctx, f.g, "refs/heads/main", "readme", func(context.Context) (string, error) { return tip, nil })
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.svc.File(f.ctx, change.FileInput{Requester: "alice", Repository: "policy", Ref: "refs/heads/main", Base: in.Base, Source: in.Source, Tree: in.Tree, Paths: in.Paths, Commits: in.Commits})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "carol"} {
		if _, err := f.svc.Review(f.ctx, change.ReviewInput{ChangeID: v.Change.ID, Approver: a, Decision: change.Approve, Base: in.Base, Tree: in.Tree}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := f.svc.Bundle(f.ctx, v.Change.ID)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, v.Change.ID+".json"), b.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	changetest.Git(t, f.dir, nil, "checkout", "-q", "--detach", "main")
	changetest.Git(t, f.dir, changetest.As("erin"), "merge", "-q", "--no-ff", "-m", "merge", "readme")
	merge := changetest.Git(t, f.dir, nil, "rev-parse", "HEAD")
	facts := func(pusher string) change.Update {
		u, err := change.Facts(f.ctx, f.g, "policy", pusher, change.RefUpdate{Old: tip, New: merge, Ref: "refs/heads/main"})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	d := &change.OfflineDecider{Policy: f.pol, Bundles: dir, Key: f.key.Verifier()}
	if verdict, err := d.Decide(f.ctx, facts("erin")); err != nil || !verdict.Allowed || verdict.ChangeID != v.Change.ID {
		t.Fatalf("offline, approved: %+v, %v", verdict, err)
	}
	if verdict, err := d.Decide(f.ctx, facts("bob")); err != nil || verdict.Allowed || !strings.Contains(verdict.Reason, "is the pusher") {
		t.Fatalf("offline, the approver pushes: %+v, %v", verdict, err)
	}
	// Another tree (one more commit merged): no bundle approves it.
	changetest.Git(t, f.dir, nil, "checkout", "-q", "readme")
	changetest.Commit(t, f.dir, "alice", "more", map[string]string{"README": "more\n"})
	changetest.Git(t, f.dir, nil, "checkout", "-q", "--detach", "main")
	changetest.Git(t, f.dir, changetest.As("erin"), "merge", "-q", "--no-ff", "-m", "merge", "readme")
	other := changetest.Git(t, f.dir, nil, "rev-parse", "HEAD")
	u2, err := change.Facts(f.ctx, f.g, "policy", "erin", change.RefUpdate{Old: tip, New: other, Ref: "refs/heads/main"})
	if err != nil {
		t.Fatal(err)
	}
	if verdict, err := d.Decide(f.ctx, u2); err != nil || verdict.Allowed {
		t.Fatalf("offline, another tree: %+v, %v", verdict, err)
	}
	// A key that did not sign the bundle: refused, and the reason names the bundle.
	_, vkey, _ := audit.GenerateKey("other.rampart")
	otherKey, _ := audit.NewVerifier(vkey)
	d2 := &change.OfflineDecider{Policy: f.pol, Bundles: dir, Key: otherKey}
	if verdict, err := d2.Decide(f.ctx, facts("erin")); err != nil || verdict.Allowed || !strings.Contains(verdict.Reason, v.Change.ID+".json") {
		t.Fatalf("offline, another key: %+v, %v", verdict, err)
	}
	// A corrupted bundle: refused.
	if err := os.WriteFile(filepath.Join(dir, v.Change.ID+".json"), b.Marshal()[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	if verdict, err := d.Decide(f.ctx, facts("erin")); err != nil || verdict.Allowed || !strings.Contains(verdict.Reason, "unreadable bundles") {
		t.Fatalf("offline, a corrupted bundle: %+v, %v", verdict, err)
	}
	// Deletion and rewrites: refused without looking at bundles.
	u := facts("erin")
	u.New = strings.Repeat("0", len(u.New))
	if verdict, _ := d.Decide(f.ctx, u); verdict.Allowed {
		t.Fatal("offline, deletion allowed")
	}
}
