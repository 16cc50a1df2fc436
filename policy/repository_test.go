package policy_test

import (
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
)

const repoBase = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec: {admin_group: admins}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [erin]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: maintainers}
spec: {members: [alice, bob, carol]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: security}
spec: {members: [dave, frank]}
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: one-maintainer}
spec:
  steps: [{name: maintainer, from: [maintainers], count: 1}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: two-security}
spec:
  steps: [{name: security, from: [security], count: 2}]
  require_step_up: 10m
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: one-security}
spec:
  steps: [{name: security, from: [security], count: 1}]
  exclude: [requester_groups]
---
apiVersion: rampart.dev/v1alpha1
kind: Repository
metadata: {name: infra}
spec:
  refs:
  - {ref: refs/heads/main, approval: one-maintainer}
  - {ref: refs/heads/release/*, approval: one-maintainer}
  paths:
  - {path: policy/**, approval: two-security}
  - {path: policy/*.yaml, approval: one-security}
  - {path: deploy/**, approval: one-security}
  email_domains: [example.com]
`

func parseRepo(t *testing.T, extra string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(repoBase + extra)}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChangeRequirementRules(t *testing.T) {
	p := parseRepo(t, "")
	for _, tc := range []struct {
		ref   string
		paths []string
		want  string // policies, in order
		err   string
	}{
		{ref: "refs/heads/main", want: "one-maintainer"},
		{ref: "refs/heads/main", paths: []string{"README.md"}, want: "one-maintainer"},
		// The strictest of the rules matching a path: two-security outranks one-security.
		{ref: "refs/heads/main", paths: []string{"policy/x.yaml"}, want: "one-maintainer+two-security"},
		{ref: "refs/heads/release/2", paths: []string{"deploy/a/b.yaml", "policy/x.yaml", "docs/x"}, want: "one-maintainer+one-security+two-security"},
		{ref: "refs/heads/dev", err: "matches none of its protected refs"},
		{ref: "refs/heads/release/2/x", err: "matches none"},
	} {
		req, err := p.ChangeRequirement("infra", tc.ref, tc.paths)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %v: error %v, want %q", tc.ref, tc.paths, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s %v: %v", tc.ref, tc.paths, err)
		}
		if req.Policy.Name != tc.want {
			t.Errorf("%s %v: policies %s, want %s", tc.ref, tc.paths, req.Policy.Name, tc.want)
		}
	}
	req, _ := p.ChangeRequirement("infra", "refs/heads/main", []string{"policy/x.yaml", "deploy/y"})
	if req.StepUp.String() != "10m0s" || req.StepUpPolicy != "two-security" || !req.Rule().ExcludeGroups || req.Policy.TotalApprovals() != 4 {
		t.Errorf("combined: step-up %v from %q, rule %+v", req.StepUp, req.StepUpPolicy, req.Rule())
	}
	if _, err := p.ChangeRequirement("infar", "refs/heads/main", nil); err == nil || !strings.Contains(err.Error(), `did you mean "infra"`) {
		t.Errorf("unknown repository: %v", err)
	}
}

// One person counts once across every rule a change needs; parties never count.
func TestTallyChangeIndependence(t *testing.T) {
	p := parseRepo(t, "")
	req, _ := p.ChangeRequirement("infra", "refs/heads/main", []string{"policy/x.yaml"})
	parties := []policy.ChangeParty{{Subject: "alice", Role: "the author of commit 1234567"}, {Subject: "bob", Role: policy.PartyRequester}}
	tally := p.TallyChange(req.Policy, parties, []string{"alice", "bob", "dave", "frank"})
	if tally.Satisfied {
		t.Fatalf("satisfied without an independent maintainer: %+v", tally)
	}
	if got := tally.Ignored[0]; got.Approver != "alice" || !strings.Contains(got.Why, "is the author of commit 1234567") {
		t.Errorf("ignored: %+v", tally.Ignored)
	}
	if !p.TallyChange(req.Policy, parties, []string{"carol", "dave", "frank"}).Satisfied {
		t.Errorf("carol, dave and frank should satisfy it")
	}
	// requester_groups (one-security on deploy/**): nobody sharing a group with a party.
	req, _ = p.ChangeRequirement("infra", "refs/heads/main", []string{"deploy/x"})
	tally = p.TallyChange(req.Policy, []policy.ChangeParty{{Subject: "frank", Role: policy.PartyPusher}}, []string{"carol", "dave"})
	if tally.Satisfied || !strings.Contains(tally.Ignored[0].Why, `shares group "security" with frank, the pusher`) {
		t.Errorf("a pusher's group-mate counted: %+v", tally)
	}
	e, err := p.ExplainChange("infra", "refs/heads/main", []string{"deploy/x"}, []policy.ChangeParty{{Subject: "frank", Role: policy.PartyPusher}})
	if err != nil || e.Satisfiable || len(e.Steps) != 2 || len(e.Steps[1].Eligible) != 0 {
		t.Errorf("explain: %+v %v", e, err)
	}
}

func TestRepositoryValidation(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"refs: []", "p.yaml:58:3: spec.refs: list the protected refs"},
		{"refs: [{ref: heads/main, approval: one-maintainer}]", "must be a full ref name starting with refs/"},
		{"refs: [{ref: refs/heads/main, approval: one-maintainr}]", `approval policy "one-maintainr" is not declared; declare it with kind: ApprovalPolicy; did you mean "one-maintainer"?`},
		{"refs: [{ref: refs/heads/main, approval: one-maintainer}]\n  paths: [{path: /etc/x, approval: two-security}]", "starts with '/'"},
		{"refs: [{ref: refs/heads/main, approval: one-maintainer}]\n  paths: [{path: a/../b, approval: two-security}]", `contains a ".." segment`},
		{"refs: [{ref: refs/heads/main, approval: one-maintainer}]\n  paths: [{path: a/**b, approval: two-security}]", "must be a whole segment"},
		{"refs: [{ref: refs/heads/main, approval: one-maintainer}]\n  email_domains: [Example.com]", "email domain"},
		{"refs: [{ref: refs/heads/ma..in, approval: one-maintainer}]", "Git refuses"},
	} {
		src := repoBase + "---\napiVersion: rampart.dev/v1alpha1\nkind: Repository\nmetadata: {name: other}\nspec:\n  " + tc.doc + "\n"
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(src)}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
	}
	// An approval policy no Repository names still needs match and max_duration.
	src := strings.Replace(repoBase, "  - {path: deploy/**, approval: one-security}\n", "", 1)
	src = strings.Replace(src, "  - {path: policy/*.yaml, approval: one-security}\n", "", 1)
	if _, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(src)}}); err == nil || !strings.Contains(err.Error(), "match selects nothing") {
		t.Errorf("an unused change-only policy: %v", err)
	}
	// A change-only policy covers no resource.
	p := parseRepo(t, "---\napiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata: {name: res/x}\nspec: {kind: thing, sensitivity: internal}\n---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: r}\nspec: {rules: [{actions: [read], resources: [res/x]}]}\n")
	if _, err := p.Requirement("r"); err == nil {
		t.Errorf("a change-only policy covered a role")
	}
}

func TestIdentitySubject(t *testing.T) {
	for in, want := range map[string]string{
		"Alice@Example.com": "alice", "alice@other.org": "alice@other.org", "bob@example.com ": "bob",
		"rampart@example.com": "", "k8s:x@example.com": "", "a b@x": "",
	} {
		got, ok := policy.IdentitySubject(in, []string{"example.com"})
		if got != want || ok != (want != "") {
			t.Errorf("IdentitySubject(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// FuzzMatchGlob compares MatchGlob with a plain recursive matcher written from the documented
// rule.
func FuzzMatchGlob(f *testing.F) {
	for _, s := range [][2]string{{"policy/**", "policy/a/b.yaml"}, {"a/*/c", "a/b/c"}, {"**/x.yaml", "x.yaml"}, {"refs/heads/release/*", "refs/heads/release/1"}, {"a*b*c", "aXbYc"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, path string) {
		if len(pattern) > 64 || len(path) > 64 || policy.ValidatePathPattern(pattern) != nil {
			return
		}
		if got, want := policy.MatchGlob(pattern, path), refGlob(strings.Split(pattern, "/"), strings.Split(path, "/")); got != want {
			t.Fatalf("MatchGlob(%q, %q) = %v, want %v", pattern, path, got, want)
		}
	})
}

func refGlob(pat, segs []string) bool {
	if len(pat) == 0 {
		return len(segs) == 0
	}
	if pat[0] == "**" {
		for i := 0; i <= len(segs); i++ {
			if refGlob(pat[1:], segs[i:]) {
				return true
			}
		}
		return false
	}
	return len(segs) > 0 && globSeg(pat[0], segs[0]) && refGlob(pat[1:], segs[1:])
}

func globSeg(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if globSeg(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && s[0] == p[0] && globSeg(p[1:], s[1:])
}
