package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/internal/changetest"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/policy"
)

// Guarded change (package change) against the real database: filing, reviews bound to the base
// and merge tree, independence (author, requester, pusher), landing with its bundle, voiding of
// the ref's other open changes, and every step in the ledger in the same transaction.

func hexID(c byte) string { return strings.Repeat(string(c), 40) }

func testChanges(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	pol, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(changetest.Policy)}})
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := audit.GenerateKey("test.rampart")
	if err != nil {
		t.Fatal(err)
	}
	var alarms []*audit.TamperError
	l := watchedLedger(t, s, skey, &alarms)
	clock := clocktest.New(Epoch)
	svc := change.NewService(change.Options{Store: s, Policy: func() *policy.Policy { return pol }, Ledger: l, Now: clock.Now})

	base, tree, source := hexID('a'), hexID('b'), hexID('c')
	commits := []change.Commit{{ID: source, Parents: []string{base}, Author: "alice@example.com", Committer: "alice@example.com"}}
	in := change.FileInput{Requester: "alice", Repository: "infra", Ref: "refs/heads/main", Base: base, Source: source, Tree: tree, Paths: []string{"x/y"}, Commits: commits}
	v, err := svc.File(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	id := v.Change.ID
	if v.Change.State != change.StatePending || v.Explain == nil || len(v.Explain.Steps) != 1 {
		t.Fatalf("filed: %+v", v)
	}
	// A second change for the same base, to be voided when the first lands.
	other := in
	other.Tree, other.Source = hexID('d'), hexID('e')
	other.Commits = []change.Commit{{ID: hexID('e'), Author: "carol@example.com", Committer: "carol@example.com"}}
	ov, err := svc.File(ctx, other)
	if err != nil {
		t.Fatal(err)
	}

	got, err := s.Change(ctx, id)
	if err != nil || got.Tree != tree || got.Base != base || len(got.Commits) != 1 || got.Commits[0].Author != "alice@example.com" || got.Paths[0] != "x/y" || !got.CreatedAt.Equal(Epoch) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if _, err := s.Change(ctx, "chg-missing"); !errors.Is(err, change.ErrNotFound) {
		t.Fatalf("missing change: %v", err)
	}
	if list, err := s.ListChanges(ctx, change.Filter{Repository: "infra", Ref: "refs/heads/main", Base: base, Tree: tree, States: []change.State{change.StatePending}}); err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("filter by tree: %+v, %v", list, err)
	}

	review := func(approver string, d change.Decision, base, tree string) error {
		_, err := svc.Review(ctx, change.ReviewInput{ChangeID: id, Approver: approver, Decision: d, Base: base, Tree: tree, SessionID: "ses-" + approver})
		return err
	}
	// The author (and requester) may not approve their own change.
	if err := review("alice", change.Approve, base, tree); !errors.Is(err, access.ErrForbidden) {
		t.Fatalf("self-approval: %v", err)
	}
	// An approval for another tree (what the reviewer's checkout computes) is refused.
	if err := review("bob", change.Approve, base, hexID('f')); !errors.Is(err, access.ErrConflict) || !strings.Contains(err.Error(), "have not seen") {
		t.Fatalf("approval of another tree: %v", err)
	}
	if err := review("bob", change.Approve, base, tree); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.ChangeReviews(ctx, id); err != nil || len(rs) != 1 || rs[0].Approver != "bob" || rs[0].SessionID != "ses-bob" || rs[0].Seq == 0 {
		t.Fatalf("reviews: %+v, %v", rs, err)
	}
	if c, _ := s.Change(ctx, id); c.State != change.StateApproved {
		t.Fatalf("state after bob approved: %s", c.State)
	}

	up := change.Update{Repository: "infra", Ref: "refs/heads/main", Old: base, New: hexID('9'), FirstParent: base, Tree: tree, Paths: []string{"x/y"}, Commits: commits}
	// Only the repository's Git server may decide.
	if _, err := svc.Decide(ctx, "service:ci", withPusher(up, "carol")); !errors.Is(err, access.ErrForbidden) {
		t.Fatalf("decide by another client: %v", err)
	}
	// Bob, the only approver, pushing: the pusher never counts.
	verdict, err := svc.Decide(ctx, "service:git", withPusher(up, "bob"))
	if err != nil || verdict.Allowed || !strings.Contains(verdict.Reason, "is the pusher") {
		t.Fatalf("bob pushing his own approval: %+v, %v", verdict, err)
	}
	verdict, err = svc.Decide(ctx, "service:git", withPusher(up, "carol"))
	if err != nil || !verdict.Allowed || verdict.ChangeID != id || verdict.Bundle == nil {
		t.Fatalf("approved update: %+v, %v", verdict, err)
	}
	entries, _, err := change.OpenBundle(verdict.Bundle, l.Verifier())
	if err != nil || len(entries) != 3 || entries[0].Request == nil || entries[1].Review == nil || entries[2].Land == nil || entries[2].Land.Pusher != "carol" {
		t.Fatalf("bundle: %+v, %v", entries, err)
	}
	if c, _ := s.Change(ctx, id); c.State != change.StateLanded || c.LandedAs != up.New || c.LandSeq != entries[2].Seq {
		t.Fatalf("landed change: %+v", c)
	}
	// What CI job identity asks (package ci): the landed commit is approved on that ref of that
	// repository, and nothing else is.
	for _, q := range []struct {
		repo, ref, sha string
		want           bool
	}{{"infra", "refs/heads/main", up.New, true}, {"infra", "refs/heads/dev", up.New, false}, {"other", "refs/heads/main", up.New, false},
		{"infra", "refs/heads/main", base, false}, {"infra", "refs/heads/main", "HEAD", false}} {
		if got, err := svc.Landed(ctx, q.repo, q.ref, q.sha); err != nil || got != q.want {
			t.Fatalf("Landed(%s, %s, %s) = %v, %v; want %v", q.repo, q.ref, q.sha, got, err, q.want)
		}
	}
	if c, _ := s.Change(ctx, ov.Change.ID); c.State != change.StateVoid {
		t.Fatalf("the other change of the old base is %s, want void", c.State)
	}
	// Landed once: the same update again finds no open change.
	if verdict, err := svc.Decide(ctx, "service:git", withPusher(up, "carol")); err != nil || verdict.Allowed {
		t.Fatalf("replayed landing: %+v, %v", verdict, err)
	}
	codes := ledgerCodes(t, s)
	for _, want := range []string{change.CodeRequest, change.CodeApprove, change.CodeRefused, change.CodeLand, change.CodeVoid} {
		if !strings.Contains(codes, want) {
			t.Errorf("ledger lacks %s: %s", want, codes)
		}
	}
	if len(alarms) > 0 {
		t.Fatalf("ledger alarms: %v", alarms[0])
	}

	// Open changes per requester are bounded (invariant 11): max_pending_requests, default 20.
	for i := 0; ; i++ {
		more := in
		more.Tree = fmt.Sprintf("%040x", i+1)
		_, err := svc.File(ctx, more)
		if i < policy.DefaultMaxPendingRequests {
			if err != nil {
				t.Fatalf("filing %d: %v", i+1, err)
			}
			continue
		}
		if !errors.Is(err, access.ErrLimited) || !strings.Contains(err.Error(), "max_pending_requests") {
			t.Fatalf("filing %d past the cap: %v", i+1, err)
		}
		break
	}

	// A filing whose ledger entry cannot be written is refused and leaves nothing behind.
	if h.InjectLedgerFailure != nil {
		h.InjectLedgerFailure(t, s)
		before, _ := s.ListChanges(ctx, change.Filter{})
		fresh := in
		fresh.Requester = "bob"
		if _, err := svc.File(ctx, fresh); !errors.Is(err, access.ErrUnavailable) {
			t.Fatalf("filing without a ledger: %v", err)
		}
		if after, _ := s.ListChanges(ctx, change.Filter{}); len(after) != len(before) {
			t.Fatalf("a change was stored without its ledger entry")
		}
	}
}

func withPusher(u change.Update, pusher string) change.Update { u.Pusher = pusher; return u }

func ledgerCodes(t *testing.T, s interface {
	Entries(ctx context.Context, from int64, limit int) ([]audit.Record, error)
}) string {
	t.Helper()
	recs, err := s.Entries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return strings.Join(out, "\n")
}
