package policy_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/quorumtest"
	"rampart.dev/rampart/policy"
)

// Pairs of policies TestDiffNeverMissesAWeakening compares, and the least share of them that
// must be weakenings (so that the test cannot pass by never generating one).
const (
	diffPairs        = 3000
	minWeakenedShare = 0.2
)

// parseDiffWorld parses a world's policy with its directory, and returns the world as the
// reference must see it: the reference models the policy that governs role r as Main, so when
// the second policy governs (an edit made main the looser) the two are swapped. It fails when a
// mutation made the policy invalid (a step needing more people than its groups have).
func parseDiffWorld(w *quorumtest.World) (*policy.Policy, *quorumtest.World, error) {
	p, err := policy.Parse([]policy.File{{Name: "world.yaml", Data: []byte(w.YAML)}})
	if err != nil {
		return nil, nil, err
	}
	if w.Directory != nil {
		p = p.WithDirectory(w.Directory)
	}
	req, err := p.Requirement("r")
	if err != nil {
		return nil, nil, err
	}
	switch req.Policy.Name {
	case "main":
		return p, w, nil
	case "extra":
		m := w.Clone()
		m.Main, *m.Extra = *w.Extra, w.Main
		return p, m, nil
	}
	return nil, nil, fmt.Errorf("role r is governed by %s", req.Policy.Name)
}

// TestDiffNeverMissesAWeakening is the promise of Compare (invariant 10): a change that lets
// some request be approved under the new policy that could not be under the old one is reported
// WEAKENED in the approval section of the role. It draws random policies (internal/quorumtest:
// groups with declared, directory and identity-provider members, workloads and patterns,
// steps, exclusions, request_for, a second matching policy) and edits each a little; a brute
// force over every requester, beneficiary and set of approvers (quorumtest.Weaker) says whether
// the edit let some request through. Replay a failure with RAMPART_QUORUM_SEED=<seed>; soak with
// RAMPART_DIFF_PAIRS=<pairs>.
func TestDiffNeverMissesAWeakening(t *testing.T) {
	seed := quorumtest.Seed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	want := diffPairs
	if v := os.Getenv("RAMPART_DIFF_PAIRS"); v != "" { // a longer soak: RAMPART_DIFF_PAIRS=100000
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RAMPART_DIFF_PAIRS=%q is not a positive number", v)
		}
		want = n
	}
	var pairs, weaker, flagged, unchanged, swapped int
	for pairs < want {
		old := quorumtest.NewWorld(r)
		if r.IntN(2) == 0 {
			old.WithIdP(r)
		}
		po, oldModel, err := parseDiffWorld(old)
		if err != nil {
			continue
		}
		var nw, newModel *quorumtest.World
		var edits []string
		var pn *policy.Policy
		for try := 0; try < 20 && pn == nil; try++ {
			nw, edits = quorumtest.Mutate(r, old)
			pn, newModel, _ = parseDiffWorld(nw)
		}
		if pn == nil {
			continue
		}
		pairs++
		// The reference must be a model of both sides (claims and swaps included): it agrees
		// with Tally and Explain, on more cases where the second policy governs.
		cases := 1
		if oldModel != old || newModel != nw {
			swapped++
			cases = 10
		}
		checkModel(t, r, po, oldModel, cases, func() string { return fmt.Sprintf("seed %d, pair %d, old", seed, pairs) })
		checkModel(t, r, pn, newModel, cases, func() string { return fmt.Sprintf("seed %d, pair %d, new", seed, pairs) })
		d := policy.Compare(po, pn)
		weakened := false
		for _, c := range d.Find(policy.SectionApproval, "role", "r") {
			weakened = weakened || c.Verdict == policy.Weakened
		}
		if weakened && d.Verdict != policy.Weakened {
			t.Fatalf("the approval section says WEAKENED and the diff's verdict is %s", d.Verdict)
		}
		if w, ok := quorumtest.Weaker(oldModel, newModel); ok {
			weaker++
			if !weakened {
				t.Fatalf("seed %d (replay with RAMPART_QUORUM_SEED=%[1]d), pair %d: edits %v let %s file for %s and be approved by %v under the new policy, not under the old, and the diff does not say role r is WEAKENED:\n%s\n--- old\n%s\n--- new\n%s",
					seed, pairs, edits, w.Requester, w.Beneficiary, w.Approvers, renderDiff(d), old.YAML, nw.YAML)
			}
		} else if weakened {
			flagged++ // reported weaker than the brute force finds: allowed, counted
		}
		if old.YAML == nw.YAML && fmt.Sprint(old.Directory) == fmt.Sprint(nw.Directory) {
			unchanged++
			if len(d.Changes) != 0 {
				t.Fatalf("seed %d: the same policy twice gives changes:\n%s", seed, renderDiff(d))
			}
		}
	}
	t.Logf("seed %d: %d pairs (%d where the second policy governs on one side), %d weaker by brute force (all reported), %d more reported weaker than the brute force finds, %d unchanged",
		seed, pairs, swapped, weaker, flagged, unchanged)
	if float64(weaker) < minWeakenedShare*float64(pairs) {
		t.Fatalf("only %d of %d pairs are weakenings: the generator no longer tests the diff", weaker, pairs)
	}
}

// checkModel compares the reference model w with policy p (the identity provider's claims
// applied as a directory) on random cases.
func checkModel(t *testing.T, r *rand.Rand, p *policy.Policy, w *quorumtest.World, cases int, where func() string) {
	t.Helper()
	dir := map[string][]string{}
	for s, gs := range w.Directory {
		dir[s] = append(dir[s], gs...)
	}
	for s, claims := range w.Claims {
		dir[s] = append(dir[s], p.MapIdPGroups(claims)...)
	}
	pc := p.WithDirectory(dir)
	req, err := pc.Requirement("r")
	if err != nil {
		t.Fatalf("%s: %v", where(), err)
	}
	for range cases {
		requester, beneficiary, approvers := randomCase(r)
		checkCase(t, pc, req.Policy, w, requester, beneficiary, approvers, func() string {
			return fmt.Sprintf("%s: %s for %s, approvers %v\n%s", where(), requester, beneficiary, approvers, w.YAML)
		})
	}
}

func renderDiff(d *policy.Diff) string {
	var b strings.Builder
	for _, c := range d.Changes {
		fmt.Fprintf(&b, "%-12s %s %s/%s %s: %s\n", c.Verdict.Label(), c.Section, c.Kind, c.Name, c.Field, c.Message)
	}
	return b.String()
}
