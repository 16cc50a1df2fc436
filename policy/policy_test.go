package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

func loadDemo(t testing.TB) *policy.Policy {
	t.Helper()
	p, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatalf("demo policy does not load:\n%v", err)
	}
	return p
}

func TestDemoPolicy(t *testing.T) {
	p := loadDemo(t)
	if len(p.Digest) != 64 {
		t.Fatalf("digest %q", p.Digest)
	}
	req, err := p.Requirement("weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if req.Policy.Name != "critical-weights" || req.Policy.TotalApprovals() != 2 {
		t.Fatalf("weights reader governed by %q needing %d", req.Policy.Name, req.Policy.TotalApprovals())
	}
	if !p.Allows("weights-reader-frontier-7", "read", "weights/frontier-7") {
		t.Fatal("reader role does not allow read")
	}
	if p.Allows("weights-reader-frontier-7", "write", "weights/frontier-7") {
		t.Fatal("reader role allows write")
	}
	if p.Allows("weights-reader-frontier-7", "read", "weights/frontier-8") {
		t.Fatal("role allows a resource outside the catalogue")
	}
	st := p.StandingRoles("alice")
	// The sandbox, and the research team's secrets (issue 16).
	if len(st) != 2 || st[0].Role != "secrets-research" || st[1].Role != "sandbox-developer" {
		t.Fatalf("alice standing roles: %+v", st)
	}
	if !p.IsAdmin("erin") || p.IsAdmin("alice") || !p.IsAuditor("erin") {
		t.Fatal("admin/auditor membership wrong")
	}
	if got := p.RolesGranting("read", "weights/frontier-7"); !slices.Equal(got, []string{"weights-reader-frontier-7", "weights-writer-frontier-7"}) {
		t.Fatalf("RolesGranting(read) = %v", got)
	}
	if got := p.RolesGranting("write", "weights/frontier-7"); !slices.Equal(got, []string{"weights-writer-frontier-7"}) {
		t.Fatalf("RolesGranting(write) = %v", got)
	}
}

func TestExplain(t *testing.T) {
	p := loadDemo(t)
	e, err := p.Explain("alice", "", "weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if e.Policy != "critical-weights" || !e.Satisfiable || e.MaxDuration != "8h" || e.MinDuration != "1s" {
		t.Fatalf("explanation: %+v", e)
	}
	if got := strings.Join(e.Steps[0].Eligible, ","); got != "bob,carol" {
		t.Fatalf("owner step eligible = %s", got)
	}
	if got := strings.Join(e.Steps[1].Eligible, ","); got != "dave" {
		t.Fatalf("security step eligible = %s", got)
	}
	// bob asking: he is an owner, so owners are excluded (requester_groups) but carol shares the
	// group with him too; only carol... no: carol is in weights-owners like bob, so excluded.
	e, err = p.Explain("bob", "", "weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if e.Satisfiable {
		t.Fatalf("bob's request should not be satisfiable: every other owner shares his group: %+v", e.Steps)
	}
	if _, err := p.Explain("alice", "", "no-such-role"); err == nil {
		t.Fatal("explain of an unknown role succeeded")
	}
}

func TestTally(t *testing.T) {
	p := loadDemo(t)
	req, _ := p.Requirement("weights-reader-frontier-7")
	ap := req.Policy
	cases := []struct {
		name      string
		requester string
		approvers []string
		want      bool
	}{
		{"owner and security", "alice", []string{"bob", "dave"}, true},
		{"two owners, no security", "alice", []string{"bob", "carol"}, false},
		{"only security", "alice", []string{"dave"}, false},
		{"self approval never counts", "dave", []string{"dave", "bob"}, false},
		{"duplicate approvals count once", "alice", []string{"bob", "bob", "bob"}, false},
		{"outsider does not count", "alice", []string{"bob", "erin"}, false},
		{"same-group approver excluded", "carol", []string{"bob", "dave"}, false},
		{"nobody", "alice", nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := p.Tally(ap, c.requester, c.requester, c.approvers)
			if got.Satisfied != c.want {
				t.Fatalf("Satisfied = %v, want %v (%+v)", got.Satisfied, c.want, got)
			}
		})
	}
}

// One person in the groups of two steps must count once, and the matching must still find a
// full assignment when one exists. Tally considers approvers in name order, so the names are
// chosen to defeat a greedy count: "both" (in a and b) comes first and takes step a's slot;
// "only-a" then finds step a full. Only the augmenting path (both moves to b) satisfies it.
func TestTallyOverlappingGroups(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "both", "only-a")+groupDoc("b", "both")+resourceDoc("r/1", "critical")+roleDoc("r1", "r/1")+`
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: two}
spec:
  match: {resources: ["r/**"]}
  steps:
  - {from: [a], count: 1}
  - {from: [b], count: 1}
  max_duration: 1h
`)
	req, _ := p.Requirement("r1")
	ap := req.Policy
	if p.Tally(ap, "req", "req", []string{"both"}).Satisfied {
		t.Fatal("one approver satisfied two steps")
	}
	for _, order := range [][]string{{"both", "only-a"}, {"only-a", "both"}} {
		tally := p.Tally(ap, "req", "req", order)
		if !tally.Satisfied || tally.Steps[0].Counted[0] != "only-a" || tally.Steps[1].Counted[0] != "both" {
			t.Fatalf("approvers %v: the matching did not find only-a→a, both→b: %+v", order, tally)
		}
	}
}

func TestMatchPattern(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"weights/frontier-7", "weights/frontier-7", true},
		{"weights/*", "weights/frontier-7", true},
		{"weights/*", "weights/a/b", false},
		{"weights/**", "weights/a/b", true},
		{"weights/**", "weights", true},
		{"**", "a/b/c", true},
		{"a/**/c", "a/c", true},
		{"a/**/c", "a/x/y/c", true},
		{"a/**/c", "a/x/y/d", false},
		{"weights/frontier-*", "weights/frontier-7", true},
		{"weights/*-7", "weights/frontier-7", true},
		{"weights/*-7", "weights/frontier-8", false},
		{"w*s/*", "weights/x", true},
		{"datasets/*", "weights/x", false},
	}
	for _, c := range cases {
		if got := policy.MatchPattern(c.pat, c.name); got != c.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}

func TestMatchPatternIsNotExponential(t *testing.T) {
	pat := strings.Repeat("**/", 15) + "z"
	name := strings.Repeat("a/", 15) + "b"
	start := time.Now()
	if policy.MatchPattern(pat, name) {
		t.Fatal("matched")
	}
	seg := strings.Repeat("*a", 60) + "b"
	if policy.MatchPattern(seg, strings.Repeat("a", 200)) {
		t.Fatal("matched")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestResourceNames(t *testing.T) {
	good := []string{"weights/frontier-7", "a", "egress/api.example.com:443", "datasets/eval_v3"}
	bad := []string{"", "/weights", "weights/", "weights//x", "weights/../secrets", "./x", "Weights/x",
		"weights/x y", "weights/%2e%2e", "weights/-x", "weights/x\x00", "weights\\x", strings.Repeat("a/", 20) + "a",
		strings.Repeat("a", 300)}
	for _, n := range good {
		if err := policy.ValidateResourceName(n); err != nil {
			t.Errorf("%q refused: %v", n, err)
		}
	}
	for _, n := range bad {
		if err := policy.ValidateResourceName(n); err == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

func TestSubjects(t *testing.T) {
	good := []string{"alice", "a.b@example.com", "k8s:prod/ml/trainer", "service:egress-gateway"}
	bad := []string{"", "Alice", "k8s:prod/ml", "k8s:prod/ml/Trainer", "service:", "group:x", "a b", "-x",
		// The ledger's name for Rampart itself (audit.SystemActor): a person so named would be
		// logged as the system.
		"rampart"}
	for _, s := range good {
		if err := policy.ValidateSubject(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
	for _, s := range bad {
		if err := policy.ValidateSubject(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestConditions(t *testing.T) {
	p := loadDemo(t)
	req, err := p.Requirement("dataset-reader-eval-suite-v3")
	if err != nil {
		t.Fatal(err)
	}
	ok := p.Facts(req, "alice", "alice", "eval", false, false)
	if err := req.Policy.CheckConditions(ok); err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	bad := p.Facts(req, "bob", "bob", "eval", false, false)
	err = req.Policy.CheckConditions(bad)
	var ce *policy.ConditionError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "only researchers and security") {
		t.Fatalf("bob not refused with the condition's message: %v", err)
	}
}

func TestConditionTypes(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x")+resourceDoc("r/1", "sensitive")+roleDoc("r1", "r/1")+`
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: short}
spec:
  match: {sensitivity: [sensitive]}
  steps: [{from: [a], count: 1}]
  max_duration: 8h
  conditions:
  - expression: request.duration <= duration('2h') || request.reason.contains('incident')
    message: more than 2h needs an incident reason
`)
	req, _ := p.Requirement("r1")
	f := p.Facts(req, "u", "u", "routine", false, false)
	f.Duration = time.Hour
	if err := req.Policy.CheckConditions(f); err != nil {
		t.Fatal(err)
	}
	f.Duration = 3 * time.Hour
	if err := req.Policy.CheckConditions(f); err == nil {
		t.Fatal("3h routine accepted")
	}
	f.Reason = "incident 12"
	if err := req.Policy.CheckConditions(f); err != nil {
		t.Fatal(err)
	}
}

const settingsDoc = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec: {admin_group: a}
`

func groupDoc(name string, members ...string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: " + name + "}\nspec: {members: [" + strings.Join(members, ", ") + "]}\n"
}

func resourceDoc(name, sens string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata: {name: " + name + "}\nspec: {kind: thing, sensitivity: " + sens + "}\n"
}

func roleDoc(name, pattern string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: " + name + "}\nspec:\n  rules: [{actions: [read], resources: [\"" + pattern + "\"]}]\n"
}

// stepUpDoc is an approval policy over resources of one sensitivity, one approver from group a,
// with a require_step_up line (line 9 of the document) written as given.
func stepUpDoc(name, sens, stepUp string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: " + name + "}\nspec:\n" +
		"  match: {sensitivity: [" + sens + "]}\n  steps: [{from: [a], count: 1}]\n  max_duration: 8h\n  require_step_up: " + stepUp + "\n"
}

func mustParse(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return p
}

// Each bad policy must be refused with an error naming the file, the line and the field path.
const k8sRoleDoc = "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: k}\nspec:\n  rules: [{actions: [read], resources: [r/1]}]\n  kubernetes:\n"

func resourceK8s(name, k8s string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata: {name: " + name + "}\nspec:\n  kind: weights\n  sensitivity: critical\n  kubernetes:\n" + k8s
}

func TestValidationErrors(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/1")
	cases := []struct {
		name string
		src  string
		want string // substring: "p.yaml:LINE:COL: path: message"
	}{
		{"unknown field", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec:\n  members: [a]\n  memebers: [b]\n",
			`p.yaml:27:3: spec.memebers: unknown field "memebers"`},
		{"wrong type", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec:\n  members: alice\n",
			`p.yaml:26:12: spec.members: expected a list`},
		{"bad apiVersion", "apiVersion: v1\nkind: Group\nmetadata: {name: g}\n", `p.yaml:1:1: apiVersion: apiVersion is "v1"`},
		{"unknown kind", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Grop\nmetadata: {name: g}\n", `p.yaml:23:1: kind: unknown kind "Grop"`},
		{"standing critical", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: StandingBinding\nmetadata: {name: b}\nspec:\n  subjects: [group:a]\n  roles: [r1]\n",
			`p.yaml:27:11: spec.roles[0]: role "r1" reaches critical resource "r/1"`},
		{"unknown group in step", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps:\n  - from: [sec]\n    count: 1\n  max_duration: 1h\n",
			`spec.steps[0].from[0]: group "sec" is not declared`},
		{"impossible count", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps:\n  - from: [a]\n    count: 3\n  max_duration: 1h\n",
			`spec.steps[0].count: count is 3 but the groups "a" have only 2 members`},
		{"missing max", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps: [{from: [a], count: 1}]\n",
			`spec.max_duration: max_duration is required`},
		{"bad duration", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps: [{from: [a], count: 1}]\n  max_duration: 8 hours\n",
			`spec.max_duration: "8 hours" is not a duration`},
		{"bad CEL", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps: [{from: [a], count: 1}]\n  max_duration: 1h\n  conditions:\n  - expression: request.nope == 1\n",
			`spec.conditions[0].expression: CEL:`},
		{"non-bool CEL", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: ap}\nspec:\n  match: {sensitivity: [critical]}\n  steps: [{from: [a], count: 1}]\n  max_duration: 1h\n  conditions:\n  - expression: request.reason\n",
			`must be true or false`},
		{"pattern matches nothing", base + roleDoc("r2", "r/2"), `spec.rules[0].resources[0]: pattern "r/2" matches no declared resource`},
		{"path trick", base + resourceDoc("r/../x", "public"), `metadata.name: resource name "r/../x" contains a ".." segment`},
		{"duplicate", base + groupDoc("a", "z"), `metadata.name: Group "a" is declared twice`},
		{"duplicate key", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec:\n  members: [a]\n  members: [b]\n",
			`spec.members: field "members" appears twice`},
		{"alias", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: g}\nspec:\n  members: &m [a]\n",
			`anchors and aliases are not allowed`},
		{"syntax", "a: [b\n", `p.yaml:1: YAML syntax: did not find expected`},
		{"no settings", groupDoc("a", "x"), `no Settings document`},
		{"typo suggestion", base + "---\napiVersion: rampart.dev/v1alpha1\nkind: StandingBinding\nmetadata: {name: b}\nspec:\n  subjects: [x]\n  roles: [r11]\n",
			`did you mean "r1"?`},
		{"bad member", base + groupDoc("b", "Bob"), `spec.members[0]: user name "Bob"`},
		{"reserved member", base + groupDoc("b", "x", "rampart"), `p.yaml:25:21: spec.members[1]: user name "rampart" is reserved`},
		// require_step_up: a duration between 1m and 24h, refused at file:line:column otherwise.
		{"step-up zero", base + stepUpDoc("ap", "critical", "0s"), `p.yaml:29:3: spec.require_step_up: require_step_up must be a duration such as 10m`},
		{"step-up empty", base + stepUpDoc("ap", "critical", ""), `p.yaml:29:3: spec.require_step_up: require_step_up must be a duration`},
		{"step-up null", base + stepUpDoc("ap", "critical", "null"), `p.yaml:29:3: spec.require_step_up: require_step_up must be a duration`},
		{"step-up negative", base + stepUpDoc("ap", "critical", "-10m"), `p.yaml:29:20: spec.require_step_up: duration "-10m" is negative`},
		{"step-up too short", base + stepUpDoc("ap", "critical", "59s"), `p.yaml:29:3: spec.require_step_up: require_step_up 59s is shorter than 1m`},
		{"step-up sub-second", base + stepUpDoc("ap", "critical", "1ns"), `spec.require_step_up: require_step_up 1ns is shorter than 1m`},
		{"step-up too long", base + stepUpDoc("ap", "critical", "24h0m1s"), `p.yaml:29:3: spec.require_step_up: require_step_up 24h0m1s is longer than 24h`},
		{"step-up words", base + stepUpDoc("ap", "critical", "ten minutes"), `p.yaml:29:20: spec.require_step_up: "ten minutes" is not a duration`},
		{"step-up bare number", base + stepUpDoc("ap", "critical", "600"), `spec.require_step_up: "600" is not a duration`},
		{"step-up list", base + stepUpDoc("ap", "critical", "[10m]"), `p.yaml:29:20: spec.require_step_up: expected a single value`},
		{"step-up bool", base + stepUpDoc("ap", "critical", "true"), `spec.require_step_up: "true" is not a duration`},
		{"step-up misspelt", base + strings.Replace(stepUpDoc("ap", "critical", "10m"), "require_step_up", "require_stepup", 1), `p.yaml:29:3: spec.require_stepup: unknown field "require_stepup"`},
		{"step-up twice", base + stepUpDoc("ap", "critical", "10m") + "  require_step_up: 1h\n", `p.yaml:30:3: spec.require_step_up: field "require_step_up" appears twice`},
		// Kubernetes sections of roles and settings.
		{"k8s both", base + k8sRoleDoc + "    cluster_role: view\n    rules: [{resources: [pods], verbs: [get]}]\n", `spec.kubernetes: give cluster_role`},
		{"k8s neither", base + k8sRoleDoc + "    namespaces: [ml]\n", `spec.kubernetes: give cluster_role (an existing ClusterRole to bind) or rules`},
		{"k8s bad namespace", base + k8sRoleDoc + "    cluster_role: view\n    namespaces: [ML_team]\n", `spec.kubernetes.namespaces[0]: "ML_team" is not a namespace name`},
		{"k8s twice", base + k8sRoleDoc + "    cluster_role: view\n    namespaces: [ml, ml]\n", `spec.kubernetes.namespaces[1]: namespace "ml" is listed twice`},
		{"k8s bad verb", base + k8sRoleDoc + "    rules: [{resources: [pods], verbs: [read]}]\n", `spec.kubernetes.rules[0].verbs[0]: unknown verb "read"`},
		{"k8s no resources", base + k8sRoleDoc + "    rules: [{verbs: [get]}]\n", `spec.kubernetes.rules[0].resources: list at least one resource`},
		{"k8s bad cluster role", base + k8sRoleDoc + "    cluster_role: Cluster Admin\n", `spec.kubernetes.cluster_role: "Cluster Admin" is not a Kubernetes object name`},
		{"k8s unknown field", base + k8sRoleDoc + "    cluster_role: view\n    namespace: ml\n", `spec.kubernetes.namespace: unknown field "namespace"`},
		{"k8s resource no objects", base + resourceK8s("r/2", "    namespace: research\n"), `spec.kubernetes: name at least one of persistent_volume_claims`},
		{"k8s resource bad namespace", base + resourceK8s("r/2", "    namespace: Research\n    secrets: [s]\n"), `spec.kubernetes.namespace: "Research" is not a namespace name`},
		{"k8s resource bad claim", base + resourceK8s("r/2", "    namespace: research\n    persistent_volume_claims: [Weights_1]\n"), `spec.kubernetes.persistent_volume_claims[0]: "Weights_1" is not a Kubernetes object name`},
		{"k8s claim held twice", base + resourceK8s("r/2", "    namespace: research\n    persistent_volume_claims: [w]\n") + resourceK8s("r/3", "    namespace: research\n    persistent_volume_claims: [w]\n"),
			`spec.kubernetes.persistent_volume_claims[0]: persistent_volume_claims "w" in namespace research already holds resource "r/2"`},
		{"k8s bad snapshot", base + resourceK8s("r/2", "    namespace: research\n    volume_snapshots: [Nightly]\n"), `spec.kubernetes.volume_snapshots[0]: "Nightly" is not a Kubernetes object name`},
		{"k8s snapshot held twice", base + resourceK8s("r/2", "    namespace: research\n    volume_snapshots: [s]\n") + resourceK8s("r/3", "    namespace: research\n    volume_snapshots: [s]\n"),
			`spec.kubernetes.volume_snapshots[0]: volume_snapshots "s" in namespace research already holds resource "r/2"`},
		{"k8s bad controller", strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {admission: {workload_controllers: [\"job controller\"]}}}", 1), `spec.kubernetes.admission.workload_controllers[0]: "job controller" is not a Kubernetes user name`},
		{"k8s bad registry", strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {admission: {allowed_registries: [\"reg/x@sha256\"]}}}", 1), `spec.kubernetes.admission.allowed_registries[0]: "reg/x@sha256" is not a registry prefix`},
		{"k8s bad gateway cidr", strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {egress: {gateway_cidrs: [10.0.0.300/32]}}}", 1), `spec.kubernetes.egress.gateway_cidrs[0]: "10.0.0.300/32" is not a CIDR`},
		{"k8s gateway half", strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {egress: {gateway_namespace: rampart}}}", 1), `spec.kubernetes.egress: gateway_namespace and gateway_pod_labels go together`},
		{"k8s drift", strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {drift: delete}}", 1), `spec.kubernetes.drift: drift must be report or enforce, not "delete"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(c.src)}})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not contain %q:\n%v", c.want, err)
			}
			var list strictyaml.Errors
			var one *strictyaml.Error
			if !errors.As(err, &list) && !errors.As(err, &one) {
				t.Fatalf("error is %T, want strictyaml errors", err)
			}
		})
	}
}

// All errors are reported at once, not only the first.
func TestValidationReportsEveryError(t *testing.T) {
	src := settingsDoc + groupDoc("a", "x") + resourceDoc("r/1", "bogus") + roleDoc("r1", "r/9")
	_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(src)}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"unknown sensitivity", "matches no declared resource"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestStrictest(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x", "y")+resourceDoc("r/1", "critical")+roleDoc("r1", "r/1")+`
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: loose}
spec:
  match: {resources: ["r/**"]}
  steps: [{from: [a], count: 1}]
  max_duration: 1h
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: strict}
spec:
  match: {sensitivity: [critical]}
  steps: [{from: [a], count: 2}]
  max_duration: 8h
`)
	req, err := p.Requirement("r1")
	if err != nil {
		t.Fatal(err)
	}
	if req.Policy.Name != "strict" || len(req.Matched) != 2 {
		t.Fatalf("applied %q of %d", req.Policy.Name, len(req.Matched))
	}
}

// A role reaching a critical resource that no approval policy matches, and an internal one a
// lax policy does, used to be requestable under the lax policy: one approver from anyone's group
// granted the critical resource too (invariant 1). Such a role is not requestable now, and the
// refusal names the uncovered resource.
func TestRoleWithUncoveredResourceNotRequestable(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x", "y")+resourceDoc("w/crown", "critical")+resourceDoc("w/notes", "internal")+`
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: both}
spec:
  rules: [{actions: [read], resources: ["w/*"]}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: lax}
spec:
  match: {sensitivity: [internal]}
  steps: [{from: [a], count: 1}]
  max_duration: 8h
`+roleDoc("notes", "w/notes"))
	_, err := p.Requirement("both")
	var nr *policy.NotRequestableError
	if !errors.As(err, &nr) || !strings.Contains(err.Error(), `"w/crown"`) || strings.Contains(err.Error(), `"w/notes"`) {
		t.Fatalf("a role reaching an uncovered critical resource: %v", err)
	}
	// A role whose every resource is covered stays requestable under the same policy.
	if req, err := p.Requirement("notes"); err != nil || req.Policy.Name != "lax" {
		t.Fatalf("a covered role: %+v %v", req, err)
	}
}

func TestStepUpBoundsAccepted(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/1")
	for _, c := range []struct {
		text string
		want time.Duration
	}{{"1m", time.Minute}, {"10m", 10 * time.Minute}, {"1h30m", 90 * time.Minute}, {"24h", 24 * time.Hour}} {
		p := mustParse(t, base+stepUpDoc("ap", "critical", c.text))
		ap, _ := p.ApprovalPolicy("ap")
		req, err := p.Requirement("r1")
		if err != nil {
			t.Fatal(err)
		}
		if ap.RequireStepUp.Std() != c.want || req.StepUp != c.want || req.StepUpPolicy != "ap" {
			t.Fatalf("require_step_up: %s: policy %s, requirement %s from %q", c.text, ap.RequireStepUp.Std(), req.StepUp, req.StepUpPolicy)
		}
	}
	// Left out: no step-up.
	p := mustParse(t, base+strings.Replace(stepUpDoc("ap", "critical", ""), "  require_step_up: \n", "", 1))
	if req, _ := p.Requirement("r1"); req.StepUp != 0 || req.StepUpPolicy != "" {
		t.Fatalf("no require_step_up, yet the requirement asks for %s from %q", req.StepUp, req.StepUpPolicy)
	}
	if e, _ := p.Explain("x", "", "r1"); e.RequireStepUp != "" {
		t.Fatalf("explain shows step-up %q", e.RequireStepUp)
	}
}

// A require_step_up that fails to decode is reported once, where it is, not again as missing.
func TestStepUpReportedOnce(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/1")
	for _, v := range []string{"-10m", "ten minutes", "[10m]", "{a: b}"} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(base + stepUpDoc("ap", "critical", v))}})
		var list strictyaml.Errors
		if !errors.As(err, &list) || len(list) != 1 || list[0].Path != "spec.require_step_up" {
			t.Errorf("require_step_up: %s: want exactly one error at spec.require_step_up, got:\n%v", v, err)
		}
	}
}

// When several approval policies match, the shortest require_step_up of all of them applies,
// even when the policy chosen for quorum (the strictest) sets a longer one or none at all.
func TestStepUpStrictestWins(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y", "z") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/1") + `---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: quorum}
spec:
  match: {resources: ["r/**"]}
  steps: [{from: [a], count: 2}]
  max_duration: 8h
`
	p := mustParse(t, base+stepUpDoc("loose", "critical", "1h")+stepUpDoc("tight", "critical", "10m")+stepUpDoc("middle", "critical", "30m"))
	req, err := p.Requirement("r1")
	if err != nil {
		t.Fatal(err)
	}
	if req.Policy.Name != "quorum" || len(req.Matched) != 4 {
		t.Fatalf("chosen %q of %d; the two-approver policy must still decide the quorum", req.Policy.Name, len(req.Matched))
	}
	if req.StepUp != 10*time.Minute || req.StepUpPolicy != "tight" {
		t.Fatalf("step-up %s from %q, want the shortest, 10m from tight", req.StepUp, req.StepUpPolicy)
	}
	e, err := p.Explain("x", "", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if e.RequireStepUp != "10m" || e.StepUpPolicy != "tight" {
		t.Fatalf("explain: require_step_up %q from %q", e.RequireStepUp, e.StepUpPolicy)
	}
	// Order of declaration does not matter.
	q := mustParse(t, base+stepUpDoc("tight", "critical", "10m")+stepUpDoc("middle", "critical", "30m")+stepUpDoc("loose", "critical", "1h"))
	if r, _ := q.Requirement("r1"); r.StepUp != 10*time.Minute || r.StepUpPolicy != "tight" {
		t.Fatalf("reordered: %s from %q", r.StepUp, r.StepUpPolicy)
	}
}

// In the strictness order, policies otherwise equal are told apart by step-up: required beats
// not required, shorter beats longer.
func TestStricterStepUp(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x", "y")+resourceDoc("r/1", "critical")+roleDoc("r1", "r/1")+
		stepUpDoc("b-ten", "critical", "10m")+stepUpDoc("c-hour", "critical", "1h")+
		strings.Replace(stepUpDoc("a-none", "critical", ""), "  require_step_up: \n", "", 1))
	get := func(n string) *policy.ApprovalPolicy { ap, _ := p.ApprovalPolicy(n); return ap }
	none, ten, hour := get("a-none"), get("b-ten"), get("c-hour")
	for _, c := range []struct {
		a, b *policy.ApprovalPolicy
		want bool
	}{{ten, none, true}, {none, ten, false}, {ten, hour, true}, {hour, ten, false}, {hour, none, true}, {none, hour, false}} {
		if got := policy.Stricter(c.a, c.b); got != c.want {
			t.Errorf("Stricter(%s, %s) = %v", c.a.Name, c.b.Name, got)
		}
	}
	if req, _ := p.Requirement("r1"); req.Policy.Name != "b-ten" || req.StepUpPolicy != "b-ten" {
		t.Fatalf("chosen %q, step-up from %q; want b-ten for both", req.Policy.Name, req.StepUpPolicy)
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{settingsDoc, settingsDoc + groupDoc("a", "x") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/*"),
		settingsDoc + groupDoc("a", "x") + resourceDoc("r/1", "critical") + roleDoc("r1", "r/*") + stepUpDoc("ap", "critical", "10m"),
		"a: [b\n", "---\n---\n", "apiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: r}\nspec: {rules: [{actions: ['*'], resources: ['**']}]}\n",
		partiesBase + workloadDoc("w", `["k8s:*/ml/*", "service:ci"]`, "[b]") + approvalDoc("p", "r/**", "  exclude: [beneficiary_groups]\n  request_for:\n  - requesters: [group:a, \"k8s:dev/*/*\"]\n    beneficiaries: [z]\n    owned_workloads: true\n")} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := policy.Parse([]policy.File{{Name: "fuzz.yaml", Data: data}})
		if err == nil {
			// A policy that parses must answer questions without panicking.
			for _, r := range p.Roles() {
				req, err := p.Requirement(r.Name)
				def := p.RoleDefinition(r.Name)
				for _, res := range p.RoleResources(r.Name) {
					if p.Allows(r.Name, "read", res.Name) != p.AllowsPinned(def, r.Name, "read", res.Name) {
						t.Fatalf("role %s: its own definition disagrees with it on read %s", r.Name, res.Name)
					}
				}
				if err != nil {
					continue
				}
				for _, who := range []string{"x", "z", "k8s:dev/ml/t", "service:ci"} {
					_ = p.MayRequestFor(req, "x", who)
					_, _ = p.EligibleSteps(req.Policy, "y", "x", who)
					if _, err := p.Explain("x", who, r.Name); err != nil {
						t.Fatalf("explain %s for %s: %v", r.Name, who, err)
					}
				}
			}
			return
		}
		if err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

// Groups learned from the identity provider join the declared members for every purpose.
func TestWithDirectory(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x", "y")+`---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: sre}
spec:
  members: []
  idp_groups: [entra-sre-oncall, 5f1c-object-id]
`+resourceDoc("r/1", "internal")+roleDoc("r1", "r/1")+`---
apiVersion: rampart.dev/v1alpha1
kind: StandingBinding
metadata: {name: sre-r1}
spec: {subjects: [group:sre], roles: [r1]}
`)
	if got := p.MapIdPGroups([]string{"unrelated", "5f1c-object-id"}); len(got) != 1 || got[0] != "sre" {
		t.Fatalf("MapIdPGroups = %v", got)
	}
	if p.InGroup("zoe", "sre") || len(p.StandingRoles("zoe")) != 0 {
		t.Fatal("zoe is in sre before any sign-in")
	}
	q := p.WithDirectory(map[string][]string{"zoe": {"sre", "no-such-group"}})
	if !q.InGroup("zoe", "sre") || len(q.StandingRoles("zoe")) != 1 || q.Digest != p.Digest {
		t.Fatalf("directory overlay: groups %v standing %v", q.GroupsOf("zoe"), q.StandingRoles("zoe"))
	}
	if q.InGroup("zoe", "no-such-group") {
		t.Fatal("a group the policy does not declare was added")
	}
	if !q.InGroup("x", "a") || p.InGroup("zoe", "sre") {
		t.Fatal("the overlay lost declared members or changed the original")
	}
}

// Snapshots are protected objects like claims, and the workload controllers have a default
// that an explicit list replaces.
func TestKubernetesProtectedSnapshotsAndControllers(t *testing.T) {
	base := settingsDoc + groupDoc("a", "x", "y") + resourceK8s("r/1", "    namespace: research\n    persistent_volume_claims: [w]\n    volume_snapshots: [w-nightly]\n")
	p := mustParse(t, base)
	if got := p.ProtectedVolumes("research")["VolumeSnapshot/w-nightly"]; got.Resource != "r/1" || got.Kind != "VolumeSnapshot" {
		t.Fatalf("snapshot: %+v", got)
	}
	if got := p.ProtectedNamespaces(); !slices.Equal(got, []string{"research"}) {
		t.Fatalf("ProtectedNamespaces = %v", got)
	}
	if got := p.Kubernetes().Admission.Controllers(); !slices.Equal(got, policy.DefaultWorkloadControllers) {
		t.Fatalf("default controllers: %v", got)
	}
	p = mustParse(t, strings.Replace(base, "spec: {admin_group: a}", "spec: {admin_group: a, kubernetes: {admission: {workload_controllers: []}}}", 1))
	if got := p.Kubernetes().Admission.Controllers(); got == nil || len(got) != 0 {
		t.Fatalf("an empty list trusts no controller, got %v", got)
	}
}

// In the demo, changing a pipeline — its workflow file, its definition (ci.yaml) or its secret
// bindings (bindings.yaml) — and triggering it by hand need pipeline-changes: a security
// engineer AND a weights owner (issue 16). The pipeline's secret is bound to the pipeline alone.
func TestDemoPipelineChangesNeedTwoParties(t *testing.T) {
	p := loadDemo(t)
	for _, c := range []struct{ repo, path string }{
		{"acme-infra", ".github/workflows/deploy.yml"},
		{"rampart-policy", "ci.yaml"},
		{"rampart-policy", "bindings.yaml"},
	} {
		req, err := p.ChangeRequirement(c.repo, "refs/heads/main", []string{c.path})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, r := range req.Rules {
			names = append(names, r.Approval)
		}
		if !slices.Contains(names, "pipeline-changes") {
			t.Errorf("a change of %s in %s needs %v, not pipeline-changes", c.path, c.repo, names)
		}
		groups := map[string]bool{}
		for _, st := range req.Policy.Steps {
			for _, g := range st.From {
				groups[g] = true
			}
		}
		if !groups["security"] || !groups["weights-owners"] || req.Policy.TotalApprovals() < 3 {
			t.Errorf("a change of %s in %s: steps %+v, want security AND a weights owner beside the reviewer", c.path, c.repo, req.Policy.Steps)
		}
		// Nobody the author could be approves: alice's change still has eligible approvers,
		// and dave (the only security engineer) cannot approve his own.
		if e, err := p.ExplainChange(c.repo, "refs/heads/main", []string{c.path}, []policy.ChangeParty{{Subject: "alice", Role: "author"}}); err != nil || !e.Satisfiable {
			t.Errorf("alice's change of %s is not satisfiable: %+v %v", c.path, e, err)
		}
		if e, err := p.ExplainChange(c.repo, "refs/heads/main", []string{c.path}, []policy.ChangeParty{{Subject: "dave", Role: "author"}}); err != nil || e.Satisfiable {
			t.Errorf("dave could have his own change of %s approved: %+v %v", c.path, e, err)
		}
	}
	// A change elsewhere needs only the reviewer.
	if req, err := p.ChangeRequirement("rampart-policy", "refs/heads/main", []string{"roles.yaml"}); err != nil || req.Policy.TotalApprovals() != 1 {
		t.Errorf("a change of roles.yaml: %+v %v", req, err)
	}
	req, err := p.Requirement("pipeline-trigger-infra-deploy")
	if err != nil {
		t.Fatal(err)
	}
	if req.Policy.Name != "pipeline-changes" || req.Policy.TotalApprovals() != 2 {
		t.Fatalf("the trigger role is governed by %q needing %d", req.Policy.Name, req.Policy.TotalApprovals())
	}
	pipe := policy.PipelineSubject("github", "acme/infra/deploy.yml")
	if !standingAllows(p, pipe, "read", "secrets/deploy/cluster-kubeconfig") {
		t.Fatal("the deploy pipeline cannot read its kubeconfig")
	}
	if standingAllows(p, "alice", "read", "secrets/deploy/cluster-kubeconfig") || standingAllows(p, pipe, "read", "secrets/deploy/registry-token") {
		t.Fatal("the pipeline's secret binding reaches beyond the pipeline, or the pipeline beyond its secret")
	}
}

func standingAllows(p *policy.Policy, subject, action, resource string) bool {
	for _, st := range p.StandingRoles(subject) {
		if p.Allows(st.Role, action, resource) {
			return true
		}
	}
	return false
}
