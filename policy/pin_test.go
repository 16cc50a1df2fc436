package policy_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/quorumtest"
	"rampart.dev/rampart/policy"
)

// refMatch is an independent glob matcher for the reference: plain backtracking over segments
// ("**" any number of segments, "*" within a segment any run of characters), exponential and
// obviously right on the tiny names used here.
func refMatch(pat, name []string) bool {
	if len(pat) == 0 {
		return len(name) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if refMatch(pat[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	return len(name) > 0 && refSeg(pat[0], name[0]) && refMatch(pat[1:], name[1:])
}

func refSeg(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if refSeg(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && p[0] == s[0] && refSeg(p[1:], s[1:])
}

// refAllows: some rule names the action (or "*") and a pattern matching the resource, which is
// in the catalogue.
func refAllows(rules []policy.Rule, catalogue []string, action, resource string) bool {
	if !slices.Contains(catalogue, resource) {
		return false
	}
	for _, r := range rules {
		if !slices.Contains(r.Actions, action) && !slices.Contains(r.Actions, "*") {
			continue
		}
		for _, p := range r.Resources {
			if refMatch(strings.Split(p, "/"), strings.Split(resource, "/")) {
				return true
			}
		}
	}
	return false
}

var (
	pinNames    = []string{"a/x", "a/y", "a/x/1", "b/x", "b/y/2", "c"}
	pinPatterns = []string{"a/*", "a/**", "**", "*/x", "b/**", "a/x", "c", "*/y/*", "a/x*"}
	pinActions  = []string{"read", "write", "exec", "*"}
	// Actions asked about: every named one, and one no policy names.
	pinAsked = []string{"read", "write", "exec", "delete"}
)

// randomRole draws a catalogue and a role over it whose every pattern matches something there
// (validation requires it).
func randomRole(r *rand.Rand) (catalogue []string, rules []policy.Rule) {
	for _, n := range pinNames {
		if r.IntN(3) != 0 {
			catalogue = append(catalogue, n)
		}
	}
	if len(catalogue) == 0 {
		catalogue = []string{"c"}
	}
	for i := 1 + r.IntN(3); i > 0; i-- {
		var rule policy.Rule
		for _, a := range r.Perm(len(pinActions))[:1+r.IntN(2)] {
			rule.Actions = append(rule.Actions, pinActions[a])
		}
		for _, p := range r.Perm(len(pinPatterns))[:1+r.IntN(2)] {
			for _, n := range catalogue {
				if refMatch(strings.Split(pinPatterns[p], "/"), strings.Split(n, "/")) {
					rule.Resources = append(rule.Resources, pinPatterns[p])
					break
				}
			}
		}
		if len(rule.Resources) > 0 {
			rules = append(rules, rule)
		}
	}
	if len(rules) == 0 {
		rules = []policy.Rule{{Actions: []string{"read"}, Resources: []string{catalogue[0]}}}
	}
	return catalogue, rules
}

func rolePolicy(t *testing.T, catalogue []string, rules []policy.Rule) *policy.Policy {
	t.Helper()
	var b strings.Builder
	b.WriteString(settingsDoc + groupDoc("a", "x"))
	for _, n := range catalogue {
		b.WriteString(resourceDoc(n, "critical"))
	}
	rj, _ := json.Marshal(rules)
	fmt.Fprintf(&b, "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: role}\nspec:\n  rules: %s\n", rj)
	p, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(b.String())}})
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return p
}

// A grant approved under one policy and judged under another allows exactly what both the
// definition it pinned and the current one allow: checked against a brute force over every
// resource of either catalogue (and one of neither) and every action, including one no policy
// names, on random catalogues and roles. Narrowing therefore applies at once and broadening
// never reaches the old grant; "*" gives every action on what the grant reached; a glob reaches
// only what it matched when the grant was approved.
func TestAllowsPinnedReference(t *testing.T) {
	seed := quorumtest.Seed(t)
	r := rand.New(rand.NewPCG(seed, 2))
	for i := 0; i < 3000; i++ {
		catA, rulesA := randomRole(r)
		catB, rulesB := randomRole(r)
		then, now := rolePolicy(t, catA, rulesA), rolePolicy(t, catB, rulesB)
		def := then.RoleDefinition("role")
		// The pinned definition survives storage: JSON round trip, same digest, same answers.
		raw, _ := json.Marshal(def)
		var stored policy.RoleDefinition
		if err := json.Unmarshal(raw, &stored); err != nil || stored.Digest() != def.Digest() {
			t.Fatalf("seed %d: the definition does not survive a JSON round trip: %v", seed, err)
		}
		for _, res := range append(append(slices.Clone(pinNames), "d/nowhere"), catB...) {
			for _, a := range pinAsked {
				want := refAllows(rulesA, catA, a, res) && refAllows(rulesB, catB, a, res)
				if got := now.AllowsPinned(&stored, "role", a, res); got != want {
					t.Fatalf("seed %d case %d: approved for %v over %v, now %v over %v: %s on %s = %v, reference %v",
						seed, i, rulesA, catA, rulesB, catB, a, res, got, want)
				}
				// Unpinned (from before pinning): the current definition alone.
				if got, want := now.AllowsPinned(nil, "role", a, res), refAllows(rulesB, catB, a, res); got != want {
					t.Fatalf("seed %d case %d: unpinned %s on %s = %v, reference %v", seed, i, a, res, got, want)
				}
			}
		}
		// The digest changes exactly when what the role allows or how it binds changes (or its
		// rules as written).
		if same := then.RoleDefinition("role").Digest() == now.RoleDefinition("role").Digest(); same != (slices.EqualFunc(rulesA, rulesB, ruleEqual) && sameReach(then, now)) {
			t.Fatalf("seed %d case %d: digests equal %v for %v/%v and %v/%v", seed, i, same, rulesA, catA, rulesB, catB)
		}
	}
}

func ruleEqual(a, b policy.Rule) bool {
	return slices.Equal(a.Actions, b.Actions) && slices.Equal(a.Resources, b.Resources)
}

func sameReach(p, q *policy.Policy) bool {
	a, _ := json.Marshal(p.RoleDefinition("role").Reach)
	b, _ := json.Marshal(q.RoleDefinition("role").Reach)
	return string(a) == string(b)
}

func TestDefinitionChanges(t *testing.T) {
	changed, added, removed := policy.DefinitionChanges(map[string]string{"a": "1", "b": "2", "c": "3"}, map[string]string{"a": "1", "b": "9", "d": "4"})
	if !slices.Equal(changed, []string{"b"}) || !slices.Equal(added, []string{"d"}) || !slices.Equal(removed, []string{"c"}) {
		t.Fatalf("changed %v added %v removed %v", changed, added, removed)
	}
}

// The demo's weights reader, broadened with write: the digest changes, the old definition does
// not give write, and the kubernetes section is compared exactly.
func TestRoleDefinitionDemo(t *testing.T) {
	p := loadDemo(t)
	def := p.RoleDefinition("weights-reader-frontier-7")
	if def == nil || !def.Allows("read", "weights/frontier-7") || def.Allows("write", "weights/frontier-7") || def.Allows("read", "datasets/eval-suite-v3") {
		t.Fatalf("definition %+v", def)
	}
	role, _ := p.Role("weights-reader-frontier-7")
	if !def.SameKubernetes(role.Kubernetes) {
		t.Fatal("the definition's kubernetes section differs from the role's")
	}
	other := *role.Kubernetes
	other.Namespaces = []string{"research", "default"}
	if def.SameKubernetes(&other) || def.SameKubernetes(nil) {
		t.Fatal("a different kubernetes section compares equal")
	}
	if p.RoleDefinition("no-such-role") != nil {
		t.Fatal("a definition for an unknown role")
	}
}
