package suggest_test

import (
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// load builds an engine from YAML documents (resources, roles, approval policies, groups).
func load(t testing.TB, docs ...string) *suggest.Engine {
	t.Helper()
	pol, err := policy.Load(fstest.MapFS{"policy.yaml": {Data: []byte(strings.Join(docs, "\n---\n"))}})
	if err != nil {
		t.Fatal(err)
	}
	return suggest.New(pol)
}

func resourceDoc(name, sensitivity string, tags ...string) string {
	return fmt.Sprintf("apiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata: {name: %s}\nspec:\n  kind: thing\n  sensitivity: %s\n  owners: [team]\n  tags: [%s]\n  description: %q",
		name, sensitivity, strings.Join(tags, ", "), "the "+strings.ReplaceAll(name, "/", " "))
}

type testRule struct {
	actions, resources []string
}

func roleDoc(name, description string, rules ...testRule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: %s}\nspec:\n  description: %q\n  rules:\n", name, description)
	for _, r := range rules {
		fmt.Fprintf(&b, "  - actions: [%s]\n    resources: [%s]\n", quoteAll(r.actions), quoteAll(r.resources))
	}
	return b.String()
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}

func approvalDoc(name, match string, count int, extra string) string {
	return fmt.Sprintf("apiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: %s}\nspec:\n  match: {%s}\n  steps:\n  - {name: team, from: [team], count: %d}\n  max_duration: 8h\n%s",
		name, match, count, extra)
}

const groupsDoc = `apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: team}
spec:
  members: [ann, ben, cat, dan]
---
apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec:
  admin_group: team
  auditor_group: team`

// The documented privilege formula and order, computed independently of rank.go.
var (
	refActionWeight = map[string]float64{"read": 1, "connect": 1, "use": 1, "write": 3, "trigger": 3, "deploy": 4, "exec": 6, "delete": 6, "admin": 8}
	refTierWeight   = map[string]float64{"public": 1, "internal": 2, "sensitive": 4, "critical": 8}
	refTiers        = []string{"critical", "sensitive", "internal", "public"}
)

type refRole struct {
	name       string
	pairs      map[[2]string]bool // action, resource
	privilege  float64
	byTier     map[string]int
	approvals  int
	breakGlass bool
}

// TestPrivilegeOrderMatchesBruteForce builds random catalogues, computes every role's privilege
// and the documented order (privilege; then fewer pairs at critical, sensitive, internal,
// public; then fewer approvals; then name) by brute force, and compares them with Rank for
// every (resource, action), with and without emergency.
func TestPrivilegeOrderMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	// How often each rule of the order decided between neighbours: the test must exercise all.
	decided := map[string]int{}
	actionPool := []string{"read", "write", "exec", "admin", "delete", "deploy", "trigger", "connect", "use", "annotate"}
	sens := []string{"public", "internal", "sensitive", "critical"}
	for round := range 150 {
		nRes := 3 + rng.Intn(6)
		resSens, strict := map[string]string{}, map[string]bool{}
		docs := []string{groupsDoc}
		var resNames []string
		for i := range nRes {
			name := fmt.Sprintf("res/r%d", i)
			resSens[name] = sens[rng.Intn(len(sens))]
			resNames = append(resNames, name)
			if rng.Intn(3) == 0 {
				strict[name] = true
				docs = append(docs, resourceDoc(name, resSens[name], "strict"))
			} else {
				docs = append(docs, resourceDoc(name, resSens[name]))
			}
		}
		docs = append(docs, approvalDoc("ap-strict", "tags: [strict]", 4, ""))
		counts := map[string]int{}
		for _, s := range sens {
			counts[s] = 1 + rng.Intn(3)
			docs = append(docs, approvalDoc("ap-"+s, "sensitivity: ["+s+"]", counts[s], ""))
		}
		universe := map[string]bool{}
		var refs []*refRole
		var ruleSets [][]testRule
		nRoles := 3 + rng.Intn(10)
		for i := range nRoles {
			var rules []testRule
			switch {
			case i > 0 && rng.Intn(5) == 0:
				rules = ruleSets[rng.Intn(len(ruleSets))] // an exact copy: only the name breaks the tie
			case i > 0 && rng.Intn(3) == 0:
				// A twin on other resources of the same tiers: approvals may break the tie.
				for _, r := range ruleSets[rng.Intn(len(ruleSets))] {
					twin := testRule{actions: r.actions}
					for _, res := range r.resources {
						var same []string
						for _, o := range resNames {
							if resSens[o] == resSens[res] && !hasString(twin.resources, o) {
								same = append(same, o)
							}
						}
						if len(same) > 0 {
							twin.resources = append(twin.resources, same[rng.Intn(len(same))])
						}
					}
					rules = append(rules, twin)
				}
			default:
				for range 1 + rng.Intn(3) {
					var r testRule
					if rng.Intn(8) == 0 {
						r.actions = []string{"*"}
					} else {
						for _, k := range rng.Perm(len(actionPool))[:1+rng.Intn(3)] {
							r.actions = append(r.actions, actionPool[k])
						}
					}
					for _, k := range rng.Perm(nRes)[:1+rng.Intn(min(3, nRes))] {
						r.resources = append(r.resources, resNames[k])
					}
					rules = append(rules, r)
				}
			}
			ruleSets = append(ruleSets, rules)
			for _, r := range rules {
				for _, a := range r.actions {
					if a != "*" {
						universe[a] = true
					}
				}
			}
			name, desc := fmt.Sprintf("role-%02d", i), "an ordinary role"
			bg := false
			switch rng.Intn(6) {
			case 0:
				name, bg = fmt.Sprintf("emergency-role-%02d", i), true
			case 1:
				desc, bg = "Break glass access for incidents", true
			}
			docs = append(docs, roleDoc(name, desc, rules...))
			refs = append(refs, &refRole{name: name, breakGlass: bg})
		}
		// Two roles of equal privilege that differ by tier: read on base plus read on a critical
		// resource (1+8) against read on base plus admin on a public one (1+8).
		var crit, pub []string
		for _, r := range resNames {
			switch resSens[r] {
			case "critical":
				crit = append(crit, r)
			case "public":
				pub = append(pub, r)
			}
		}
		if len(crit) > 0 && len(pub) > 1 {
			base := resNames[rng.Intn(nRes)]
			p := pub[rng.Intn(len(pub))]
			for p == base {
				p = pub[rng.Intn(len(pub))]
			}
			c := crit[rng.Intn(len(crit))]
			for k, rules := range [][]testRule{
				{{actions: []string{"read"}, resources: []string{base}}, {actions: []string{"read"}, resources: []string{c}}},
				{{actions: []string{"read"}, resources: []string{base}}, {actions: []string{"admin"}, resources: []string{p}}},
			} {
				name := fmt.Sprintf("tier-twin-%d", k)
				universe["read"], universe["admin"] = true, true
				ruleSets = append(ruleSets, rules)
				docs = append(docs, roleDoc(name, "an ordinary role", rules...))
				refs = append(refs, &refRole{name: name})
			}
		}
		e := load(t, docs...)
		for i, rr := range refs {
			rr.pairs, rr.byTier = map[[2]string]bool{}, map[string]int{}
			maxCount := 0
			for _, r := range ruleSets[i] {
				acts := r.actions
				if acts[0] == "*" || len(acts) > 1 && hasStar(acts) {
					acts = nil
					for a := range universe {
						acts = append(acts, a)
					}
				}
				for _, res := range r.resources {
					maxCount = max(maxCount, counts[resSens[res]])
					if strict[res] {
						maxCount = max(maxCount, 4)
					}
					for _, a := range acts {
						p := [2]string{a, res}
						if rr.pairs[p] {
							continue
						}
						rr.pairs[p] = true
						w, ok := refActionWeight[a]
						if !ok {
							w = 3
						}
						rr.privilege += w * refTierWeight[resSens[res]]
						rr.byTier[resSens[res]]++
					}
				}
			}
			req, err := e.Policy().Requirement(rr.name)
			if err != nil {
				t.Fatal(err)
			}
			rr.approvals = req.Policy.TotalApprovals()
			if rr.approvals != maxCount {
				t.Fatalf("round %d: %s needs %d approvals, expected the strictest of its resources' policies (%d)", round, rr.name, rr.approvals, maxCount)
			}
		}
		less := func(a, b *refRole) bool {
			if a.privilege != b.privilege {
				return a.privilege < b.privilege
			}
			for _, tier := range refTiers {
				if a.byTier[tier] != b.byTier[tier] {
					return a.byTier[tier] < b.byTier[tier]
				}
			}
			if a.approvals != b.approvals {
				return a.approvals < b.approvals
			}
			return a.name < b.name
		}
		for _, res := range resNames {
			for a := range universe {
				for _, emergency := range []bool{false, true} {
					var want []*refRole
					for _, rr := range refs {
						if rr.pairs[[2]string{a, res}] && (emergency || !rr.breakGlass) {
							want = append(want, rr)
						}
					}
					sort.Slice(want, func(i, j int) bool { return less(want[i], want[j]) })
					for i := 1; i < len(want); i++ {
						decided[decidedBy(want[i-1], want[i])]++
					}
					rk, err := e.RankWith(res, []string{a}, suggest.RankOptions{Emergency: emergency})
					if len(want) == 0 {
						var nc *suggest.NoCandidateError
						if !errors.As(err, &nc) {
							t.Fatalf("round %d: %s on %s (emergency %v): no role grants it, got %+v, %v", round, a, res, emergency, rk.Candidates, err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("round %d: %s on %s: %v", round, a, res, err)
					}
					var got, exp []string
					for _, c := range rk.Candidates {
						got = append(got, fmt.Sprintf("%s:%g", c.Role, c.Privilege))
						if (c.BreakGlass != "") != refs[indexOf(refs, c.Role)].breakGlass {
							t.Fatalf("round %d: %s break-glass %q, expected %v", round, c.Role, c.BreakGlass, !refs[indexOf(refs, c.Role)].breakGlass)
						}
					}
					for _, rr := range want {
						exp = append(exp, fmt.Sprintf("%s:%g", rr.name, rr.privilege))
					}
					if strings.Join(got, " ") != strings.Join(exp, " ") {
						t.Fatalf("round %d: %s on %s (emergency %v):\n got %v\nwant %v", round, a, res, emergency, got, exp)
					}
					// The model check accepts exactly the roles that are no worse than the first.
					for _, rr := range want {
						err := e.Verify(rk, rr.name)
						worse := rr.privilege > want[0].privilege || (rr.privilege == want[0].privilege && tierHeavier(rr, want[0])) ||
							(rr.breakGlass && !want[0].breakGlass)
						if (err != nil) != worse {
							if err == nil || !strings.Contains(err.Error(), "grants more than") {
								t.Fatalf("round %d: Verify(%s) = %v on %s %s; worse than %s: %v", round, rr.name, err, a, res, want[0].name, worse)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("neighbours ordered by: %v", decided)
	for _, rule := range []string{"privilege", "tier", "approvals", "name"} {
		if decided[rule] < 5 {
			t.Errorf("the random catalogues let %q decide only %d times; the test does not exercise it", rule, decided[rule])
		}
	}
}

func decidedBy(a, b *refRole) string {
	switch {
	case a.privilege != b.privilege:
		return "privilege"
	case tierHeavier(a, b) || tierHeavier(b, a):
		return "tier"
	case a.approvals != b.approvals:
		return "approvals"
	}
	return "name"
}

func hasString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasStar(acts []string) bool {
	for _, a := range acts {
		if a == "*" {
			return true
		}
	}
	return false
}

func indexOf(refs []*refRole, name string) int {
	for i, r := range refs {
		if r.name == name {
			return i
		}
	}
	panic(name)
}

// tierHeavier reports whether a grants more pairs than b at the highest tier where they differ.
func tierHeavier(a, b *refRole) bool {
	for _, tier := range refTiers {
		if a.byTier[tier] != b.byTier[tier] {
			return a.byTier[tier] > b.byTier[tier]
		}
	}
	return false
}
