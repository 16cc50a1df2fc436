package policy_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"rampart.dev/rampart/internal/quorumtest"
	"rampart.dev/rampart/policy"
)

// TestChangeQuorumProperty compares ChangeEligibleSteps, TallyChange, RuleTally (the offline
// count from a recorded rule and memberships) and ExplainChange with the reference model of
// internal/quorumtest on random worlds: a repository whose ref rule is the world's main policy,
// random parties (people and machines: authors, requester, pusher) and approvers. Replay a
// failure with RAMPART_QUORUM_SEED=<seed>.
func TestChangeQuorumProperty(t *testing.T) {
	seed := quorumtest.Seed(t)
	r := rand.New(rand.NewPCG(seed, 1))
	cases := 0
	for wi := 0; wi < 1000; wi++ {
		w := quorumtest.NewWorld(r)
		yaml := w.YAML + "---\napiVersion: rampart.dev/v1alpha1\nkind: Repository\nmetadata: {name: repo}\nspec:\n  refs: [{ref: refs/heads/main, approval: main}]\n"
		p, err := policy.Parse([]policy.File{{Name: "world.yaml", Data: []byte(yaml)}})
		if err != nil {
			t.Fatalf("generated policy does not parse: %v\n%s", err, yaml)
		}
		if w.Directory != nil {
			p = p.WithDirectory(w.Directory)
		}
		req, err := p.ChangeRequirement("repo", "refs/heads/main", []string{"a/b"})
		if err != nil {
			t.Fatal(err)
		}
		all := quorumtest.Subjects()
		for ci := 0; ci < 50; ci++ {
			var parties []policy.ChangeParty
			var subjects []string
			for _, i := range r.Perm(len(all))[:r.IntN(4)] {
				parties = append(parties, policy.ChangeParty{Subject: all[i], Role: "the author of commit x"})
				subjects = append(subjects, all[i])
			}
			var approvers []string
			pool := append(append([]string(nil), quorumtest.People...), quorumtest.Outsider)
			pool = append(pool, subjects...)
			for _, i := range r.Perm(len(pool))[:r.IntN(len(pool)+1)] {
				approvers = append(approvers, pool[i])
			}
			where := func() string {
				return fmt.Sprintf("seed %d (replay with RAMPART_QUORUM_SEED=%[1]d), world %d, case %d: parties %v, approvers %v\n%s", seed, wi, ci, subjects, approvers, yaml)
			}
			for _, a := range approvers {
				steps, why := p.ChangeEligibleSteps(req.Policy, a, parties)
				if want := w.ChangeEligible(a, subjects); !slices.Equal(steps, want) {
					t.Fatalf("ChangeEligibleSteps(%s) = %v (%s), reference %v\n%s", a, steps, why, want, where())
				}
			}
			want := w.ChangeSatisfied(approvers, subjects)
			if got := p.TallyChange(req.Policy, parties, approvers).Satisfied; got != want {
				t.Fatalf("TallyChange satisfied=%v, reference %v\n%s", got, want, where())
			}
			membership, owners := p.ChangeFacts(approvers, parties)
			if rt := policy.RuleTally(req.Rule(), membership, owners, parties, approvers).Satisfied; rt != want {
				t.Fatalf("RuleTally satisfied=%v, reference %v\n%s", rt, want, where())
			}
			e, err := p.ExplainChange("repo", "refs/heads/main", []string{"a/b"}, parties)
			if err != nil {
				t.Fatal(err)
			}
			if wantE := w.ChangeSatisfied(quorumtest.Subjects(), subjects); e.Satisfiable != wantE {
				t.Fatalf("ExplainChange satisfiable=%v, reference %v\n%s", e.Satisfiable, wantE, where())
			}
			cases++
		}
	}
	t.Logf("%d cases", cases)
}
