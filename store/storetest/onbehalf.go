package storetest

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// demoWith returns the demo policy with edit applied to each file's text (nil: unchanged) and
// the extra documents added as one more file.
func demoWith(t *testing.T, edit func(name, text string) string, extra string) *policy.Policy {
	t.Helper()
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		if edit != nil {
			files[i].Data = []byte(edit(f.Name, string(f.Data)))
		}
	}
	if extra != "" {
		files = append(files, policy.File{Name: "extra.yaml", Data: []byte(extra)})
	}
	pol, err := policy.Parse(files)
	if err != nil {
		t.Fatalf("test policy:\n%v", err)
	}
	return pol
}

// addRequestFor gives the demo's critical-weights policy one more request_for rule.
func addRequestFor(rule string) func(name, text string) string {
	return func(name, text string) string {
		if name != "approvals.yaml" {
			return text
		}
		const anchor = "  - requesters: [group:researchers]\n    owned_workloads: true\n"
		i := strings.Index(text, anchor)
		if i < 0 {
			panic("the demo critical-weights policy has no request_for rule to add to")
		}
		i += len(anchor)
		return text[:i] + rule + text[i:]
	}
}

// mustRequirement returns the approval policy that governs requests for role.
func mustRequirement(t *testing.T, pol *policy.Policy, role string) *policy.ApprovalPolicy {
	t.Helper()
	req, err := pol.Requirement(role)
	if err != nil {
		t.Fatal(err)
	}
	return req.Policy
}

// envWith is newEnv under pol.
func envWith(t *testing.T, h Harness, pol *policy.Policy) *env {
	t.Helper()
	e := newEnv(t, h)
	e.pol = pol
	e.svc = access.New(e.store, pol, access.Options{Now: e.clock.Now})
	return e
}

// decide loads a decision index from the store and asks it.
func (e *env) decide(subject, action, resource string) authz.Decision {
	e.t.Helper()
	ix := authz.New(e.store, e.svc.Policy(), authz.Options{Now: e.clock.Now, MaxStaleness: time.Hour})
	if err := ix.Load(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return ix.Check(authz.Query{Subject: subject, Action: action, Resource: resource})
}

// testOnBehalf: requests filed for someone else (issue 11, item 1; invariant 1).
func testOnBehalf(t *testing.T, h Harness) {
	weightsFor := func(beneficiary string) access.CreateInput {
		in := weightsRequest()
		in.Beneficiary = beneficiary
		return in
	}

	t.Run("RequestForDefaultsToYourself", func(t *testing.T) {
		e := newEnv(t, h)
		// The demo lets researchers file only for themselves and the workloads they own.
		e.refused(access.ErrForbidden, `no request_for rule of approval policy "critical-weights" lets alice file for bob`,
			func() error { _, err := e.svc.Create(e.ctx, weightsFor("bob")); return err })
		// bob, a weights owner, may file for nobody else.
		e.refused(access.ErrForbidden, "lets people file requests only for themselves",
			func() error {
				_, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "bob", Beneficiary: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "x"})
				return err
			})
		// and not for a research workload he does not own.
		e.refused(access.ErrForbidden, "lets bob file for k8s:dev/research/evaluator",
			func() error {
				in := weightsFor("k8s:dev/research/evaluator")
				in.Requester = "bob"
				_, err := e.svc.Create(e.ctx, in)
				return err
			})
	})

	// The attack of issue 11, item 1: alice files for bob; carol (bob's own group) and dave
	// approve; bob was allowed, while `policy explain --requester bob` said his own request could
	// never be approved. Here request_for lets alice file for weights owners, so what stops the
	// attack is the exclusion of the beneficiary's groups, on for every critical resource.
	t.Run("AttackOnBehalfOfAnOwner", func(t *testing.T) {
		pol := demoWith(t, addRequestFor("  - requesters: [group:researchers]\n    beneficiaries: [group:weights-owners]\n"), "")
		e := envWith(t, h, pol)
		req := e.create(weightsFor("bob"))
		// carol is no eligible approver, so to her the request does not exist (404); the
		// tally says why her approval cannot count.
		e.refused(access.ErrMissing, "not visible to carol",
			func() error { _, err := e.review(req.ID, "carol", access.Approve); return err })
		if ig := pol.Tally(mustRequirement(t, pol, "weights-reader-frontier-7"), "alice", "bob", []string{"carol"}).Ignored; len(ig) != 1 ||
			ig[0].Why != `shares group "weights-owners" with the beneficiary` {
			t.Fatalf("why carol does not count: %+v", ig)
		}
		e.refused(access.ErrForbidden, "is the beneficiary",
			func() error { _, err := e.review(req.ID, "bob", access.Approve); return err })
		if r := e.mustReview(req.ID, "dave", access.Approve); r.State != access.Pending {
			t.Fatalf("the security approval alone activated the request: %s", r.State)
		}
		if d := e.decide("bob", "read", "weights/frontier-7"); d.Allowed {
			t.Fatalf("bob is allowed through a request filed for him: %+v", d)
		}
		// The workflow and explain agree: neither bob's own request nor alice's for him can be
		// approved, and explain names carol's tie to bob.
		for _, requester := range []string{"bob", "alice"} {
			x, err := pol.Explain(requester, "bob", "weights-reader-frontier-7")
			if err != nil {
				t.Fatal(err)
			}
			if x.Satisfiable || len(x.Steps[0].Eligible) != 0 {
				t.Fatalf("explain says %s's request for bob could be approved: %+v", requester, x.Steps)
			}
		}
		v, err := e.svc.Get(e.ctx, req.ID, "alice")
		if err != nil || v.Tally.Satisfied {
			t.Fatalf("the tally of alice's request for bob: %+v %v", v.Tally, err)
		}
	})

	t.Run("ForAnOwnedWorkload", func(t *testing.T) {
		// carol, the only data steward, owns the eval runner: she may not approve a request
		// for it, even under sensitive-data, which excludes nobody's groups but the
		// requester's. The owners of a machine are who it acts for.
		pol := demoWith(t, func(name, text string) string {
			if name != "approvals.yaml" {
				return text
			}
			return strings.Replace(text, "  exclude: [requester_groups]\n", "  exclude: [requester_groups]\n  request_for: [{requesters: [alice], beneficiaries: [\"k8s:dev/evals/runner\"]}]\n", 1)
		}, `apiVersion: rampart.dev/v1alpha1
kind: Workload
metadata: {name: eval-pipeline}
spec:
  subjects: ["k8s:dev/evals/runner"]
  owners: [data-stewards]
`)
		e := envWith(t, h, pol)
		const runner = "k8s:dev/evals/runner"
		req := e.create(access.CreateInput{Requester: "alice", Beneficiary: runner, Role: "dataset-reader-eval-suite-v3", Reason: "nightly evals"})
		e.refused(access.ErrMissing, "not visible to carol",
			func() error { _, err := e.review(req.ID, "carol", access.Approve); return err })
		if _, why := pol.EligibleSteps(mustRequirement(t, pol, "dataset-reader-eval-suite-v3"), "carol", "alice", runner); why != `owns the beneficiary k8s:dev/evals/runner (a member of its owner group "data-stewards")` {
			t.Fatalf("why carol may not approve: %q", why)
		}
		if d := e.decide(runner, "read", "datasets/eval-suite-v3"); d.Allowed {
			t.Fatalf("the workload is allowed: %+v", d)
		}

		const wl = "k8s:dev/research/evaluator"
		// A researcher files for her own research workload under the demo policy; an owner
		// and security approve it.
		e = newEnv(t, h)
		req = e.create(weightsFor(wl))
		e.mustReview(req.ID, "bob", access.Approve)
		if r := e.mustReview(req.ID, "dave", access.Approve); r.State != access.Approved {
			t.Fatalf("a researcher's request for her own workload: %s", r.State)
		}
		if d := e.decide(wl, "read", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("the workload is not allowed after approval: %+v", d)
		}
	})

	t.Run("UnownedWorkloadFailsSafe", func(t *testing.T) {
		// request_for lets alice file for a namespace no Workload declares: under a critical
		// policy nobody could be shown independent of that workload, so filing is refused...
		pol := demoWith(t, addRequestFor("  - requesters: [alice]\n    beneficiaries: [\"k8s:dev/scratch/*\"]\n"), "")
		e := envWith(t, h, pol)
		e.refused(access.ErrForbidden, "no Workload document declares who owns k8s:dev/scratch/job",
			func() error { _, err := e.svc.Create(e.ctx, weightsFor("k8s:dev/scratch/job")); return err })
		x, err := pol.Explain("alice", "k8s:dev/scratch/job", "weights-reader-frontier-7")
		if err != nil || x.MayFile || x.Satisfiable {
			t.Fatalf("explain of the unowned workload: %+v %v", x, err)
		}
		// ...and a request filed while the workload was declared cannot be approved once the
		// declaration is gone.
		const wl = "k8s:dev/research/evaluator"
		req := e.create(weightsFor(wl))
		undeclared := demoWith(t, func(name, text string) string {
			if name == "workloads.yaml" {
				return strings.Replace(text, `"k8s:*/research/*", `, "", 1)
			}
			return text
		}, "")
		if err := e.svc.LoadPolicy(e.ctx, undeclared, "test", "undeclared"); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"bob", "dave"} {
			e.refused(access.ErrMissing, "not visible to "+a,
				func() error { _, err := e.review(req.ID, a, access.Approve); return err })
			if _, why := undeclared.EligibleSteps(mustRequirement(t, undeclared, "weights-reader-frontier-7"), a, "alice", wl); !strings.Contains(why, "cannot be shown independent of the beneficiary k8s:dev/research/evaluator") {
				t.Fatalf("why %s may not approve: %q", a, why)
			}
		}
		// An admin sees it, and is told why it is stuck.
		if v, err := e.svc.Get(e.ctx, req.ID, "erin"); err != nil || v.Tally.Satisfied {
			t.Fatalf("admin view: %+v %v", v, err)
		}
	})

	t.Run("BreakGlassOnlyForYourself", func(t *testing.T) {
		// Even where request_for lets alice file for bob, break-glass is for oneself.
		pol := demoWith(t, func(name, text string) string {
			if name != "approvals.yaml" {
				return text
			}
			return strings.Replace(text, "  exclude: [requester_groups]\n", "  exclude: [requester_groups]\n  request_for: [{requesters: [alice], beneficiaries: [bob]}]\n", 1)
		}, "")
		e := envWith(t, h, pol)
		e.refused(access.ErrForbidden, "break-glass access can only be taken for yourself",
			func() error {
				_, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "alice", Beneficiary: "bob", Role: "dataset-reader-eval-suite-v3", Reason: "incident", BreakGlass: true})
				return err
			})
	})

	t.Run("RenewalFollowsRequestFor", func(t *testing.T) {
		e := newEnv(t, h)
		const wl = "k8s:dev/research/evaluator"
		req := e.create(weightsFor(wl))
		e.mustReview(req.ID, "bob", access.Approve)
		r := e.mustReview(req.ID, "dave", access.Approve)
		if _, err := e.svc.Renew(e.ctx, r.GrantID, "alice", time.Hour, "more"); err != nil {
			t.Fatalf("the owner renews for her workload: %v", err)
		}
		// The policy stops letting researchers file for their workloads: alice may no longer
		// renew for it.
		selfOnly := demoWith(t, func(name, text string) string {
			return strings.ReplaceAll(text, "  request_for:\n  - requesters: [group:researchers]\n    owned_workloads: true\n", "")
		}, "")
		if err := e.svc.LoadPolicy(e.ctx, selfOnly, "test", "self-only"); err != nil {
			t.Fatal(err)
		}
		e.refused(access.ErrForbidden, "lets people file requests only for themselves",
			func() error { _, err := e.svc.Renew(e.ctx, r.GrantID, "alice", time.Hour, "more"); return err })
	})
}
