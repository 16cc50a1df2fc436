package suggest_test

import (
	"context"
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

// fakeModel is a stand-in for a language model: it always picks role.
type fakeModel struct{ role string }

func (m fakeModel) Choose(context.Context, suggest.ChoiceInput) (suggest.Choice, error) {
	return suggest.Choice{Role: m.role, Reason: "the model says so"}, nil
}

// breakGlassCatalogue is the reviewers' kind of catalogue: emergency roles with broad rights
// that weigh less than the ordinary role, marked by name, by description, and by an
// emergency-only approval policy; and an ordinary policy that allows break-glass for an hour
// (the default), which must not make its roles break-glass.
func breakGlassCatalogue(t *testing.T) *suggest.Engine {
	return load(t, groupsDoc,
		resourceDoc("weights/orion-base", "critical"), resourceDoc("weights/orion-chat", "critical"), resourceDoc("weights/vega", "critical"),
		resourceDoc("namespaces/oncall", "public"), resourceDoc("namespaces/incident-room", "internal", "incident"),
		approvalDoc("ap-critical", "sensitivity: [critical]", 2, "  break_glass: {allowed: true}\n"),
		approvalDoc("ap-public", "sensitivity: [public]", 1, ""),
		"apiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: incident-response}\nspec:\n  match: {tags: [incident]}\n  steps:\n  - {name: team, from: [team], count: 1}\n  max_duration: 1h\n  break_glass: {allowed: true}\n",
		roleDoc("orion-reader", "Read the orion and vega weights.", testRule{[]string{"read"}, []string{"weights/orion-base", "weights/orion-chat", "weights/vega"}}),
		roleDoc("oncall-access", "Break-glass access for production incidents.",
			testRule{[]string{"read"}, []string{"weights/orion-base"}}, testRule{[]string{"exec"}, []string{"namespaces/oncall"}}),
		roleDoc("emergency-orion-read", "Read orion.", testRule{[]string{"read"}, []string{"weights/orion-base"}}),
		roleDoc("orion-fixer", "紧急修复 orion.", testRule{[]string{"read", "write"}, []string{"weights/orion-base"}}),
		roleDoc("incident-triage", "Triage.", testRule{[]string{"exec"}, []string{"namespaces/incident-room"}}),
		roleDoc("room-operator", "Operate the incident room.", testRule{[]string{"exec", "write"}, []string{"namespaces/incident-room"}},
			testRule{[]string{"read"}, []string{"namespaces/oncall"}}),
	)
}

func roleNames(cs []suggest.Candidate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Role)
	}
	return out
}

// TestBreakGlassIsNeverSuggestedForOrdinaryRequests: break-glass roles that weigh less than the
// ordinary role are left out unless the request is an emergency, and a model cannot bring them
// back.
func TestBreakGlassIsNeverSuggestedForOrdinaryRequests(t *testing.T) {
	e := breakGlassCatalogue(t)
	rk, err := e.Rank("weights/orion-base", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	if got := roleNames(rk.Candidates); strings.Join(got, " ") != "orion-reader" {
		t.Fatalf("ordinary candidates %v, want only orion-reader", got)
	}
	if strings.Join(rk.Withheld, " ") != "emergency-orion-read oncall-access orion-fixer" ||
		!strings.Contains(rk.Explanation, "the break-glass roles emergency-orion-read, oncall-access and orion-fixer are left out: they are for emergencies only") {
		t.Fatalf("withheld %v, explanation %q", rk.Withheld, rk.Explanation)
	}
	rk, _ = e.RankWith("weights/orion-base", []string{"read"}, suggest.RankOptions{Emergency: true})
	if got := roleNames(rk.Candidates); strings.Join(got, " ") != "emergency-orion-read oncall-access orion-reader orion-fixer" {
		t.Fatalf("emergency candidates %v", got)
	}
	if rk.Candidates[0].BreakGlass != "its name says it is for emergencies" || rk.Candidates[1].BreakGlass != "its description says it is for emergencies" ||
		rk.Candidates[2].BreakGlass != "" || rk.Candidates[3].BreakGlass == "" {
		t.Fatalf("break-glass reasons: %+v", rk.Candidates)
	}
	// An emergency-only approval policy (grants of at most 1h, break-glass allowed) marks its
	// roles; the ordinary critical policy, which allows break-glass for the default hour, does not.
	rk, _ = e.Rank("namespaces/incident-room", []string{"exec"})
	if got := roleNames(rk.Candidates); strings.Join(got, " ") != "room-operator" || strings.Join(rk.Withheld, " ") != "incident-triage" {
		t.Fatalf("incident room: candidates %v, withheld %v", got, rk.Withheld)
	}
	rk, _ = e.RankWith("namespaces/incident-room", []string{"exec"}, suggest.RankOptions{Emergency: true})
	if rk.Candidates[0].Role != "incident-triage" || !strings.Contains(rk.Candidates[0].BreakGlass, "approval policy incident-response") {
		t.Fatalf("incident room in an emergency: %+v", rk.Candidates)
	}
	// When only break-glass roles grant it, nothing is suggested and the error says why.
	_, err = e.Rank("weights/orion-base", []string{"write"})
	var nc *suggest.NoCandidateError
	if !errors.As(err, &nc) || strings.Join(nc.BreakGlass, " ") != "orion-fixer" || !strings.Contains(err.Error(), "only the break-glass role orion-fixer does") {
		t.Fatalf("write: %v", err)
	}
	// A sentence: the ordinary role unless it says it is an emergency.
	for emergency, want := range map[bool]string{false: "orion-reader", true: "emergency-orion-read"} {
		s := e.Answer(suggest.Intent{Text: "read orion base", Emergency: emergency, Needs: []suggest.Need{{Actions: []string{"read"}, Words: []string{"orion", "base"}}}})
		if s.Status != suggest.StatusSuggested || s.Target.Candidates[0].Role != want {
			t.Fatalf("emergency %v: %+v", emergency, s)
		}
	}
	// A model that picks a break-glass role for an ordinary request is refused.
	a := &suggest.Advisor{Engine: e, Model: fakeModel{"emergency-orion-read"}}
	adv, err := a.Advise(context.Background(), "weights/orion-base", []string{"read"})
	if err != nil || adv.Role.Role != "orion-reader" || adv.Source != suggest.SourceDeterministic || !strings.Contains(adv.ModelNote, "not one of the candidates") {
		t.Fatalf("model picked break-glass: %+v %v", adv, err)
	}
	// Even were it a candidate, the model check refuses a break-glass pick when the
	// deterministic choice is ordinary (a ranking whose first candidate is ordinary).
	rk, _ = e.RankWith("weights/orion-base", []string{"read"}, suggest.RankOptions{Emergency: true})
	rk.Candidates = []suggest.Candidate{rk.Candidates[2], rk.Candidates[1]}
	if err := e.Verify(rk, "oncall-access"); err == nil || !strings.Contains(err.Error(), "is a break-glass role") {
		t.Fatalf("Verify(oncall-access) = %v", err)
	}
}

// excludedCatalogue: the cheapest reader also writes.
func excludedCatalogue(t *testing.T) *suggest.Engine {
	return load(t, groupsDoc,
		resourceDoc("datasets/prefs", "sensitive"), resourceDoc("datasets/a", "sensitive"), resourceDoc("datasets/b", "sensitive"),
		resourceDoc("datasets/c", "sensitive"), resourceDoc("datasets/d", "sensitive"),
		approvalDoc("ap", "sensitivity: [sensitive]", 1, ""),
		roleDoc("prefs-editor", "Edit prefs.", testRule{[]string{"read", "write"}, []string{"datasets/prefs"}}),
		roleDoc("prefs-readers", "Read prefs and friends.", testRule{[]string{"read"}, []string{"datasets/prefs", "datasets/a", "datasets/b", "datasets/c", "datasets/d"}}),
		roleDoc("prefs-admin", "Manage prefs.", testRule{[]string{"read", "write", "delete"}, []string{"datasets/prefs"}}),
	)
}

// TestExcludedActionsAreNeverGrantedWhenAvoidable: "read, not write" gets the role without write
// even though it weighs more; when every candidate grants it, the explanation says so; a model
// cannot pick the cheaper writer; a need that asks only for what it excludes gets no role.
func TestExcludedActionsAreNeverGrantedWhenAvoidable(t *testing.T) {
	e := excludedCatalogue(t)
	rk, _ := e.Rank("datasets/prefs", []string{"read"})
	if rk.Candidates[0].Role != "prefs-editor" {
		t.Fatalf("without exclusions the lightest is prefs-editor (16 < 20): %v", roleNames(rk.Candidates))
	}
	noWrite := suggest.RankOptions{Exclude: []string{"write"}}
	rk, _ = e.RankWith("datasets/prefs", []string{"read"}, noWrite)
	if got := strings.Join(roleNames(rk.Candidates), " "); got != "prefs-readers prefs-editor prefs-admin" ||
		strings.Join(rk.Candidates[1].Excluded, " ") != "write" || !strings.Contains(rk.Explanation, "roles granting write, which you said you do not want, rank last") {
		t.Fatalf("excluding write: %s, %q", got, rk.Explanation)
	}
	if err := e.Verify(rk, "prefs-editor"); err == nil || !strings.Contains(err.Error(), "which the request said it does not want") {
		t.Fatalf("Verify(prefs-editor) = %v", err)
	}
	rk, _ = e.RankWith("datasets/prefs", []string{"delete"}, noWrite)
	if rk.Candidates[0].Role != "prefs-admin" || !strings.Contains(rk.Explanation, "every candidate also grants write, which you said you do not want") {
		t.Fatalf("delete without write: %+v", rk)
	}
	in := suggest.Intent{Text: "read prefs, not write", Excluded: []string{"write"}, Needs: []suggest.Need{{Actions: []string{"read"}, Words: []string{"prefs"}}}}
	if s := e.Answer(in); s.Status != suggest.StatusSuggested || s.Target.Candidates[0].Role != "prefs-readers" {
		t.Fatalf("answer: %+v", s)
	}
	in = suggest.Intent{Text: "write prefs, not write", Excluded: []string{"write"}, Needs: []suggest.Need{{Actions: []string{"write"}, Words: []string{"prefs"}}}}
	if s := e.Answer(in); s.Status != suggest.StatusNotUnderstood || s.Target != nil || !strings.Contains(s.Message, "asks for write and also says not to") {
		t.Fatalf("contradiction: %+v", s)
	}
}
