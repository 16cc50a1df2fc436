package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/quorumtest"
	"rampart.dev/rampart/policy"
)

// WorkflowPropertyCases is how many random requests testQuorumProperty files on each store. It
// is far fewer than the 100,000 cases of the policy package's property test: every case here
// is several real transactions. The policy test covers the matching; this one proves the
// workflow decides with it.
const WorkflowPropertyCases = 500

// testQuorumProperty files random requests under random policies (internal/quorumtest) and
// reviews them one approver at a time through access.Service on the real store, checking each
// answer against the reference model: filing is refused exactly when the model says it may
// not be filed; an approval is refused exactly when the model says the approver is excluded or
// in no step's group; and the request is approved exactly when the model's brute force can
// fill every step with the approvals so far. Replay a failure with RAMPART_QUORUM_SEED=<seed>.
func testQuorumProperty(t *testing.T, h Harness) {
	seed := quorumtest.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := newEnv(t, h)
	cases, filed, activated, approvals, refusals := 0, 0, 0, 0, 0
	for world := 0; cases < WorkflowPropertyCases; world++ {
		w := quorumtest.NewWorld(rng)
		pol, err := policy.Parse([]policy.File{{Name: "world.yaml", Data: []byte(w.YAML)}})
		if err != nil {
			t.Fatalf("generated policy:\n%v\n%s", err, w.YAML)
		}
		if w.Directory != nil {
			pol = pol.WithDirectory(w.Directory)
		}
		svc := access.New(e.store, pol, access.Options{Now: e.clock.Now})
		for k := 0; k < 5; k++ {
			cases++
			all := quorumtest.Subjects()
			requester, beneficiary := all[rng.IntN(len(all))], ""
			if rng.IntN(2) == 0 {
				beneficiary = all[rng.IntN(len(all))]
			}
			ben := beneficiary
			if ben == "" {
				ben = requester
			}
			var approvers []string
			pool := append(append([]string(nil), quorumtest.People...), requester, ben, quorumtest.Outsider)
			for _, i := range rng.Perm(len(pool)) {
				approvers = append(approvers, pool[i])
			}
			where := func() string {
				return fmt.Sprintf("seed %d (replay with RAMPART_QUORUM_SEED=%[1]d), world %d: %s for %s, approvers in order %v\n%s", seed, world, requester, ben, approvers, w.YAML)
			}
			c, err := svc.Create(e.ctx, access.CreateInput{Requester: requester, Beneficiary: beneficiary, Role: "r", Reason: "property"})
			if mayFile := w.MayFile(requester, ben); (err == nil) != mayFile || (err != nil && !errors.Is(err, access.ErrForbidden)) {
				t.Fatalf("Create: %v, reference may file: %v; %s", err, mayFile, where())
			}
			if err != nil {
				continue
			}
			filed++
			var counted []string
			approved := false
			for _, a := range approvers {
				r, err := svc.Review(e.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve})
				eligible := len(w.Eligible(a, requester, ben)) > 0
				switch {
				case !eligible:
					if !errors.Is(err, access.ErrForbidden) && !errors.Is(err, access.ErrMissing) {
						t.Fatalf("approval by %s, whom the reference excludes: %v; %s", a, err, where())
					}
					refusals++
					continue
				case approved:
					if !errors.Is(err, access.ErrConflict) {
						t.Fatalf("approval by %s after activation: %v; %s", a, err, where())
					}
					continue
				case err != nil:
					t.Fatalf("approval by %s, eligible in the reference: %v; %s", a, err, where())
				}
				approvals++
				if !slices.Contains(counted, a) {
					counted = append(counted, a)
				}
				want := w.Satisfied(counted, requester, ben)
				if (r.State == access.Approved) != want {
					t.Fatalf("after approvals %v the request is %s, reference satisfied: %v; %s", counted, r.State, want, where())
				}
				approved = want
				if approved {
					activated++
				}
			}
			v, err := svc.Get(e.ctx, c.Request.ID, requester)
			if err != nil {
				t.Fatal(err)
			}
			if v.Tally == nil || v.Tally.Satisfied != w.Satisfied(counted, requester, ben) || (v.Grant != nil) != approved {
				t.Fatalf("view %+v disagrees with the reference; %s", v, where())
			}
			// Withdraw what is left pending: the cases share one store, and the cap on pending
			// requests per person (tested in Limits) is not part of the model.
			if !approved {
				if _, err := svc.Cancel(e.ctx, c.Request.ID, requester); err != nil {
					t.Fatalf("cancel: %v; %s", err, where())
				}
			}
		}
	}
	t.Logf("seed %d: %d cases, %d filed, %d activated; %d approvals accepted, %d refused", seed, cases, filed, activated, approvals, refusals)
	if filed < cases/4 || activated < cases/20 {
		t.Fatalf("the generator exercises too little of the workflow: %d cases, %d filed, %d activated", cases, filed, activated)
	}
}
