package policy_test

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/policy"
)

// partiesBase: groups a (x, y) and b (z), one critical and one internal resource, a role on each.
var partiesBase = settingsDoc + groupDoc("a", "x", "y") + groupDoc("b", "z") + resourceDoc("r/1", "critical") + resourceDoc("s/1", "internal") +
	roleDoc("r1", "r/1") + roleDoc("s1", "s/1")

func approvalDoc(name, match, extra string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: " + name + "}\nspec:\n  match: {resources: [\"" + match + "\"]}\n" +
		"  steps: [{from: [a], count: 1}]\n  max_duration: 1h\n" + extra
}

func workloadDoc(name, subjects, owners string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: Workload\nmetadata: {name: " + name + "}\nspec:\n  subjects: " + subjects + "\n  owners: " + owners + "\n"
}

// Every new field is refused at file:line:column with its path and what to do.
func TestPartiesValidation(t *testing.T) {
	// partiesBase is 36 lines; an approvalDoc's extra starts on line 45, a workload's subjects
	// are on line 42.
	cases := []struct{ name, src, want string }{
		{"unknown exclusion", partiesBase + approvalDoc("p", "r/**", "  exclude: [beneficiary_group]\n"),
			`p.yaml:45:13: spec.exclude[0]: unknown exclusion "beneficiary_group"; use requester, beneficiary, requester_groups or beneficiary_groups`},
		{"request_for without requesters", partiesBase + approvalDoc("p", "r/**", "  request_for: [{beneficiaries: [x]}]\n"),
			`p.yaml:45:17: spec.request_for[0].requesters: list who may file requests for others`},
		{"request_for without beneficiaries", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [x]\n"),
			`p.yaml:46:5: spec.request_for[0].beneficiaries: list for whom they may file`},
		{"request_for unknown group", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [group:c]\n    beneficiaries: [x]\n"),
			`p.yaml:46:18: spec.request_for[0].requesters[0]: group "c" is not declared`},
		{"request_for bad subject", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [x]\n    beneficiaries: [Bob]\n"),
			`p.yaml:47:21: spec.request_for[0].beneficiaries[0]: user name "Bob"`},
		{"request_for person pattern", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [\"*\"]\n    beneficiaries: [x]\n"),
			`spec.request_for[0].requesters[0]: "*": only machine subjects (k8s:…, service:…) may be patterns`},
		{"request_for reserved user", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [rampart]\n    beneficiaries: [x]\n"),
			`spec.request_for[0].requesters[0]: user name "rampart" is reserved`},
		{"request_for unknown field", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [x]\n    for: [y]\n"),
			`p.yaml:47:5: spec.request_for[0].for: unknown field "for"`},
		{"owned_workloads not a bool", partiesBase + approvalDoc("p", "r/**", "  request_for:\n  - requesters: [x]\n    owned_workloads: yes please\n"),
			`spec.request_for[0].owned_workloads`},
		{"workload without owners", partiesBase + "---\napiVersion: rampart.dev/v1alpha1\nkind: Workload\nmetadata: {name: w}\nspec:\n  subjects: [\"k8s:dev/ml/*\"]\n",
			`p.yaml:42:3: spec.owners: list the groups whose members own these workloads`},
		{"workload unknown owner", partiesBase + workloadDoc("w", `["k8s:dev/ml/*"]`, "[c]"),
			`p.yaml:43:12: spec.owners[0]: group "c" is not declared; declare it with kind: Group`},
		{"workload person", partiesBase + workloadDoc("w", "[alice]", "[a]"),
			`p.yaml:42:14: spec.subjects[0]: "alice" is a person; a Workload declares machine subjects`},
		{"workload bad pattern", partiesBase + workloadDoc("w", `["k8s:dev/*ml/x"]`, "[a]"),
			`p.yaml:42:14: spec.subjects[0]: workload pattern "k8s:dev/*ml/x"`},
		{"workload short pattern", partiesBase + workloadDoc("w", `["k8s:dev/*"]`, "[a]"),
			`spec.subjects[0]: workload pattern "k8s:dev/*" must look like k8s:<cluster>/<namespace>/<serviceaccount>`},
		{"workload service pattern", partiesBase + workloadDoc("w", `["service:ci-*"]`, "[a]"),
			`spec.subjects[0]: service pattern "service:ci-*": write service:* for every API client, or name one`},
		{"workload twice", partiesBase + workloadDoc("w", `["service:ci"]`, "[a]") + workloadDoc("w", `["service:cd"]`, "[a]"),
			`metadata.name: Workload "w" is declared twice`},
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
		})
	}
}

func TestMatchSubject(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{"k8s:dev/ml/trainer", "k8s:dev/ml/trainer", true},
		{"k8s:*/ml/*", "k8s:prod/ml/trainer", true},
		{"k8s:*/ml/*", "k8s:prod/mlx/trainer", false},
		{"k8s:*/*/*", "service:ci", false},
		{"service:*", "service:ci", true},
		{"service:*", "k8s:dev/ml/x", false},
		{"alice", "alice", true},
		{"alice", "alicia", false},
		{"k8s:dev/*/x", "k8s:dev/a/b/x", false},
	}
	for _, c := range cases {
		if got := policy.MatchSubject(c.pattern, c.subject); got != c.want {
			t.Errorf("MatchSubject(%q, %q) = %v", c.pattern, c.subject, got)
		}
	}
}

// A pattern that validates matches exactly the subjects that are equal to it segment by
// segment outside its "*" segments; nothing panics on hostile input.
func FuzzSubjectPattern(f *testing.F) {
	for _, s := range [][2]string{{"k8s:*/ml/*", "k8s:prod/ml/t"}, {"service:*", "service:ci"}, {"alice", "alice"}, {"k8s:a/*/", "k8s:a/b/"}, {"*", "x"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, subject string) {
		perr := policy.ValidateSubjectPattern(pattern)
		got := policy.MatchSubject(pattern, subject)
		if perr != nil || policy.ValidateSubject(subject) != nil {
			return
		}
		if !strings.Contains(pattern, "*") {
			if got != (pattern == subject) {
				t.Fatalf("MatchSubject(%q, %q) = %v for a pattern without '*'", pattern, subject, got)
			}
			return
		}
		// Reference: replace each "*" segment with the subject's segment and compare.
		want := false
		if policy.SubjectKind(pattern) == policy.SubjectKind(subject) {
			pk, sk := strings.SplitN(pattern, ":", 2), strings.SplitN(subject, ":", 2)
			ps, ss := strings.Split(pk[1], "/"), strings.Split(sk[1], "/")
			if len(ps) == len(ss) {
				want = true
				for i := range ps {
					want = want && (ps[i] == "*" || ps[i] == ss[i])
				}
			}
		}
		if got != want {
			t.Fatalf("MatchSubject(%q, %q) = %v, want %v", pattern, subject, got, want)
		}
	})
}

// beneficiary_groups is on for every role that reaches a critical resource, whatever the
// governing policy's exclude says and whether or not that policy itself matches the critical
// resource; elsewhere only where the policy asks for it.
func TestBeneficiaryGroupsOnForCritical(t *testing.T) {
	p := mustParse(t, partiesBase+roleDoc("both", "*/1")+approvalDoc("crit", "r/**", "")+approvalDoc("internal", "s/**", "")+
		// A stricter policy that matches only the internal resource of role "both".
		"---\napiVersion: rampart.dev/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: strict}\nspec:\n  match: {resources: [\"s/**\"]}\n"+
		"  steps: [{from: [a], count: 1}, {from: [b], count: 1}]\n  max_duration: 1h\n")
	for role, want := range map[string]bool{"r1": true, "both": true, "s1": false} {
		req, err := p.Requirement(role)
		if err != nil {
			t.Fatal(err)
		}
		if got := req.Policy.ExcludesBeneficiaryGroups(); got != want {
			t.Errorf("role %s under %s: beneficiary_groups %v, want %v", role, req.Policy.Name, got, want)
		}
	}
	if req, _ := p.Requirement("both"); req.Policy.Name != "strict" {
		t.Fatalf("role both is governed by %s", req.Policy.Name)
	}
	// The policies themselves are unchanged: the exclusion belongs to the role's requirement.
	if ap, _ := p.ApprovalPolicy("crit"); ap.ExcludesBeneficiaryGroups() {
		t.Fatal("the declared policy was changed")
	}
}

// Explain takes the beneficiary and says what the workflow would do, with the functions it uses.
func TestExplainBeneficiary(t *testing.T) {
	p := loadDemo(t)
	// alice may not file for bob under the demo policy.
	e, err := p.Explain("alice", "bob", "weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if e.MayFile || e.Satisfiable || !strings.Contains(e.Filing, `no request_for rule of approval policy "critical-weights" lets alice file for bob`) {
		t.Fatalf("alice for bob: %+v", e)
	}
	// Nobody can approve bob's access: carol shares his group, whoever files.
	if len(e.Steps[0].Eligible) != 0 || e.Steps[0].Excluded[1].Why != `shares group "weights-owners" with the beneficiary` {
		t.Fatalf("owner step for bob: %+v", e.Steps[0])
	}
	// alice may file for the research workloads she owns, and bob and dave could approve.
	e, err = p.Explain("alice", "k8s:dev/research/evaluator", "weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if !e.MayFile || !e.Satisfiable || strings.Join(e.BeneficiaryOwners, ",") != "researchers" ||
		strings.Join(e.Steps[0].Eligible, ",") != "bob,carol" || strings.Join(e.Exclusions, ",") != "requester,beneficiary,owners of a machine requester or beneficiary,requester_groups,beneficiary_groups" {
		t.Fatalf("alice for her workload: %+v", e)
	}
	if _, err := p.Explain("alice", "Bob", "weights-reader-frontier-7"); err == nil || !strings.Contains(err.Error(), "beneficiary: user name \"Bob\"") {
		t.Fatalf("a bad beneficiary: %v", err)
	}
}

// Explain lists members the identity provider brought (WithDirectory), as the workflow counts
// them.
func TestExplainSeesDirectoryMembers(t *testing.T) {
	p := loadDemo(t).WithDirectory(map[string][]string{"gina": {"security"}})
	e, err := p.Explain("alice", "", "weights-reader-frontier-7")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Steps[1].Eligible, ","); got != "dave,gina" {
		t.Fatalf("security step eligible = %s; the workflow would count gina", got)
	}
}

func TestBeneficiaryGroupsCondition(t *testing.T) {
	p := mustParse(t, partiesBase+approvalDoc("p", "s/**", "  conditions:\n  - expression: \"!('a' in request.beneficiary_groups)\"\n"))
	req, _ := p.Requirement("s1")
	if err := req.Policy.CheckConditions(p.Facts(req, "z", "x", "", false, false)); err == nil {
		t.Fatal("a beneficiary in group a passed")
	}
	if err := req.Policy.CheckConditions(p.Facts(req, "x", "z", "", false, false)); err != nil {
		t.Fatal(err)
	}
}

// The limits of invariant 11 have defaults and bounds, refused at file:line:column.
func TestLimitSettings(t *testing.T) {
	p := mustParse(t, settingsDoc+groupDoc("a", "x"))
	if s := p.Settings(); s.MaxPendingRequests != policy.DefaultMaxPendingRequests || s.BreakGlassCooldown.Std() != policy.DefaultBreakGlassCooldown {
		t.Fatalf("defaults: %+v", s)
	}
	set := func(extra string) string {
		return "apiVersion: rampart.dev/v1alpha1\nkind: Settings\nmetadata: {name: settings}\nspec:\n  admin_group: a\n" + extra + groupDoc("a", "x")
	}
	p = mustParse(t, set("  max_pending_requests: 3\n  break_glass_cooldown: 1h\n"))
	if s := p.Settings(); s.MaxPendingRequests != 3 || s.BreakGlassCooldown.Std() != time.Hour {
		t.Fatalf("set: %+v", s)
	}
	for extra, want := range map[string]string{
		"  max_pending_requests: 0\n":     "p.yaml:6:3: spec.max_pending_requests: max_pending_requests must be between 1 and 1000 (it is 0)",
		"  max_pending_requests: 5000\n":  "p.yaml:6:3: spec.max_pending_requests: max_pending_requests must be between 1 and 1000 (it is 5000)",
		"  max_pending_requests: many\n":  "p.yaml:6:25: spec.max_pending_requests",
		"  break_glass_cooldown: 0s\n":    "p.yaml:6:3: spec.break_glass_cooldown: break_glass_cooldown must be between 1m and 720h (it is 0s)",
		"  break_glass_cooldown: 10s\n":   "spec.break_glass_cooldown: break_glass_cooldown must be between 1m and 720h (it is 10s)",
		"  break_glass_cooldown: 9000h\n": "spec.break_glass_cooldown: break_glass_cooldown must be between 1m and 720h (it is 9000h)",
	} {
		_, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(set(extra))}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", extra, err, want)
		}
	}
}
