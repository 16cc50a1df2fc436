package policy_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/quorumtest"
	"rampart.dev/rampart/policy"
)

// Worlds and cases per world of TestQuorumProperty: 100,000 cases in all.
const (
	propertyWorlds   = 2000
	casesPerWorld    = 50
	minPropertyCases = 100_000
)

// parseWorld parses a world's policy and overlays its directory.
func parseWorld(t *testing.T, w *quorumtest.World) (*policy.Policy, *policy.ApprovalPolicy) {
	t.Helper()
	p, err := policy.Parse([]policy.File{{Name: "world.yaml", Data: []byte(w.YAML)}})
	if err != nil {
		t.Fatalf("generated policy does not parse:\n%v\n%s", err, w.YAML)
	}
	if w.Directory != nil {
		p = p.WithDirectory(w.Directory)
	}
	req, err := p.Requirement("r")
	if err != nil || req.Policy.Name != "main" {
		t.Fatalf("role r: %v, governed by %v\n%s", err, req, w.YAML)
	}
	return p, req.Policy
}

// A random case: who files, for whom, and who approves (in any order, some twice, parties and
// outsiders among them).
func randomCase(r *rand.Rand) (requester, beneficiary string, approvers []string) {
	all := quorumtest.Subjects()
	requester = all[r.IntN(len(all))]
	beneficiary = requester
	if r.IntN(2) == 0 {
		beneficiary = all[r.IntN(len(all))]
	}
	pool := append(append([]string(nil), quorumtest.People...), requester, beneficiary, quorumtest.Outsider)
	for _, i := range r.Perm(len(pool))[:r.IntN(len(pool)+1)] {
		approvers = append(approvers, pool[i])
	}
	if len(approvers) > 0 && r.IntN(4) == 0 {
		approvers = append(approvers, approvers[r.IntN(len(approvers))])
	}
	return requester, beneficiary, approvers
}

// TestQuorumProperty compares EligibleSteps, Tally and Explain with the reference model of
// internal/quorumtest (a brute force over assignments of approvers to step slots) on 100,000
// random cases. Replay a failure with RAMPART_QUORUM_SEED=<seed>.
func TestQuorumProperty(t *testing.T) {
	seed := quorumtest.Seed(t)
	r := rand.New(rand.NewPCG(seed, 0))
	cases := 0
	for wi := 0; wi < propertyWorlds; wi++ {
		w := quorumtest.NewWorld(r)
		p, ap := parseWorld(t, w)
		for ci := 0; ci < casesPerWorld; ci++ {
			requester, beneficiary, approvers := randomCase(r)
			where := func() string {
				return fmt.Sprintf("seed %d (replay with RAMPART_QUORUM_SEED=%[1]d), world %d, case %d: %s for %s, approvers %v\n%s", seed, wi, ci, requester, beneficiary, approvers, w.YAML)
			}
			checkCase(t, p, ap, w, requester, beneficiary, approvers, where)
			cases++
		}
		if t.Failed() {
			return
		}
	}
	if cases < minPropertyCases {
		t.Fatalf("only %d cases", cases)
	}
}

func checkCase(t *testing.T, p *policy.Policy, ap *policy.ApprovalPolicy, w *quorumtest.World, requester, beneficiary string, approvers []string, where func() string) {
	t.Helper()
	// Eligibility, approver by approver.
	for _, a := range append(quorumtest.Subjects(), requester, beneficiary) {
		got, why := p.EligibleSteps(ap, a, requester, beneficiary)
		want := w.Eligible(a, requester, beneficiary)
		if !slices.Equal(got, want) || (len(got) == 0) != (why != "") {
			t.Fatalf("EligibleSteps(%s) = %v %q, reference %v; %s", a, got, why, want, where())
		}
	}
	// The tally: satisfied exactly when the brute force fills every slot, as many slots filled
	// as the brute force's best, each by an eligible approver counted once.
	tally := p.Tally(ap, requester, beneficiary, approvers)
	best := w.MaxMatching(approvers, requester, beneficiary)
	if tally.Satisfied != (best == len(w.Slots())) {
		t.Fatalf("Tally.Satisfied = %v, brute force fills %d of %d slots; %s", tally.Satisfied, best, len(w.Slots()), where())
	}
	filled, seen := 0, map[string]bool{}
	for i, st := range tally.Steps {
		if len(st.Counted) > st.Need {
			t.Fatalf("step %d counts %v, needs %d; %s", i, st.Counted, st.Need, where())
		}
		for _, a := range st.Counted {
			if seen[a] || !slices.Contains(w.Eligible(a, requester, beneficiary), i) {
				t.Fatalf("step %d counts %s, who is counted twice or not eligible for it; %s", i, a, where())
			}
			seen[a] = true
			filled++
		}
	}
	if filled != best {
		t.Fatalf("Tally fills %d slots, the brute force %d: the matching is not maximum; %s", filled, best, where())
	}
	for _, ig := range tally.Ignored {
		if seen[ig.Approver] || ig.Why == "" {
			t.Fatalf("ignored %+v is also counted, or has no reason; %s", ig, where())
		}
		seen[ig.Approver] = true
	}
	distinct := slices.Clone(approvers)
	sort.Strings(distinct)
	if distinct = slices.Compact(distinct); len(seen) != len(distinct) {
		t.Fatalf("Tally accounts for %d approvers of %d; %s", len(seen), len(distinct), where())
	}
	// Explain: whether it may be filed, who is eligible for each step, whether it can ever be
	// approved.
	e, err := p.Explain(requester, beneficiary, "r")
	if err != nil {
		t.Fatalf("Explain: %v; %s", err, where())
	}
	mayFile := w.MayFile(requester, beneficiary)
	if e.MayFile != mayFile || e.Beneficiary != beneficiary {
		t.Fatalf("Explain.MayFile = %v (%s), reference %v; %s", e.MayFile, e.Filing, mayFile, where())
	}
	everyone := w.Everyone()
	for i, st := range e.Steps {
		var want []string
		for _, m := range everyone {
			if slices.Contains(w.Eligible(m, requester, beneficiary), i) && inAny(w, m, w.Main.Steps[i].From) {
				want = append(want, m)
			}
		}
		sort.Strings(want)
		if strings.Join(st.Eligible, ",") != strings.Join(want, ",") {
			t.Fatalf("Explain step %d eligible %v, reference %v; %s", i, st.Eligible, want, where())
		}
	}
	if want := mayFile && w.Satisfied(everyone, requester, beneficiary); e.Satisfiable != want {
		t.Fatalf("Explain.Satisfiable = %v, reference %v; %s", e.Satisfiable, want, where())
	}
}

func inAny(w *quorumtest.World, s string, groups []string) bool {
	for _, g := range groups {
		if w.In(s, g) {
			return true
		}
	}
	return false
}

// The reference's brute force itself, on cases small enough to check by hand.
func TestQuorumReferenceByHand(t *testing.T) {
	w := &quorumtest.World{
		Members:     map[string][]string{"g0": {"p0", "p1"}, "g1": {"p1"}},
		Sensitivity: "sensitive",
		Main:        quorumtest.ApprovalPolicy{Steps: []quorumtest.Step{{From: []string{"g0"}, Count: 1}, {From: []string{"g1"}, Count: 1}}},
	}
	for _, c := range []struct {
		approvers []string
		want      int
	}{{nil, 0}, {[]string{"p1"}, 1}, {[]string{"p1", "p1"}, 1}, {[]string{"p1", "p0"}, 2}, {[]string{"p0", "p1"}, 2}, {[]string{"p0", "p9"}, 1}} {
		if got := w.MaxMatching(c.approvers, "p9", "p9"); got != c.want {
			t.Errorf("MaxMatching(%v) = %d, want %d", c.approvers, got, c.want)
		}
	}
	if w.Satisfied([]string{"p1"}, "p9", "p9") || !w.Satisfied([]string{"p1", "p0"}, "p9", "p9") || w.Satisfied([]string{"p1", "p0"}, "p0", "p0") {
		t.Fatal("Satisfied disagrees with MaxMatching")
	}
}
