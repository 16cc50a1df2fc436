package policy_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// edit replaces the first occurrence of Old by New in one file of the demo policy.
type edit struct{ File, Old, New string }

// demoWith returns the demo policy with edits applied.
func demoWith(t *testing.T, edits ...edit) *policy.Policy {
	t.Helper()
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		found := false
		for i := range files {
			if files[i].Name != e.File {
				continue
			}
			s := string(files[i].Data)
			if !strings.Contains(s, e.Old) {
				t.Fatalf("%s has no %q", e.File, e.Old)
			}
			files[i].Data = []byte(strings.Replace(s, e.Old, e.New, 1))
			found = true
		}
		if !found {
			t.Fatalf("the demo policy has no file %s", e.File)
		}
	}
	p, err := policy.Parse(files)
	if err != nil {
		t.Fatalf("edited demo policy: %v", err)
	}
	return p
}

// want is one change a case expects.
type want struct {
	section policy.Section
	kind    string
	name    string
	field   string
	verdict policy.Verdict
}

func TestCompare(t *testing.T) {
	const reader, dataset = "weights-reader-frontier-7", "dataset-reader-eval-suite-v3"
	stepUp := func(d string) edit {
		return edit{"approvals.yaml", "  max_duration: 8h\n", "  max_duration: 8h\n  require_step_up: " + d + "\n"}
	}
	for _, c := range []struct {
		name    string
		old     []edit
		new     []edit
		verdict policy.Verdict
		want    []want
	}{
		{name: "a description", new: []edit{{"groups.yaml", "Research staff who run", "People who run"}}, verdict: policy.Neutral,
			want: []want{{policy.SectionDefinition, "group", "researchers", "description", policy.Neutral}}},
		{name: "longer maximum duration", new: []edit{{"approvals.yaml", "max_duration: 8h", "max_duration: 24h"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "max_duration", policy.Weakened}, {policy.SectionDefinition, "approval_policy", "critical-weights", "max_duration", policy.Weakened}}},
		{name: "shorter maximum duration", new: []edit{{"approvals.yaml", "max_duration: 8h", "max_duration: 4h"}}, verdict: policy.Strengthened,
			want: []want{{policy.SectionApproval, "role", reader, "max_duration", policy.Strengthened}}},
		{name: "break-glass enabled", new: []edit{{"approvals.yaml", "  break_glass:\n    allowed: false", "  break_glass:\n    allowed: true"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "break_glass", policy.Weakened}}},
		{name: "renewal disabled", new: []edit{{"approvals.yaml", "renewable: true", "renewable: false"}}, verdict: policy.Strengthened,
			want: []want{{policy.SectionApproval, "role", reader, "renewable", policy.Strengthened}}},
		{name: "reason no longer required", new: []edit{{"approvals.yaml", "  renewable: true\n  require_reason: true\n  break_glass:\n    allowed: true", "  renewable: true\n  require_reason: false\n  break_glass:\n    allowed: true"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", dataset, "require_reason", policy.Weakened}}},
		{name: "exclusion removed", new: []edit{{"approvals.yaml", "exclude: [requester_groups]", "exclude: []"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", dataset, "independence", policy.Weakened}, {policy.SectionDefinition, "approval_policy", "sensitive-data", "exclude", policy.Weakened}}},
		{name: "condition removed", new: []edit{{"approvals.yaml", "  conditions:\n  - expression: \"'researchers' in request.requester_groups || request.requester_groups.exists(g, g == 'security')\"\n    message: only researchers and security may request dataset access\n", ""}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", dataset, "conditions", policy.Weakened}}},
		{name: "request_for widened", new: []edit{{"approvals.yaml", "requesters: [group:researchers]", "requesters: [group:researchers, group:security]"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "filing", policy.Weakened}, {policy.SectionDefinition, "approval_policy", "critical-weights", "request_for", policy.Weakened}}},
		{name: "a step dropped", new: []edit{{"approvals.yaml", "  - name: security\n    from: [security]\n    count: 1\n  # beneficiary", "  # beneficiary"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "quorum", policy.Weakened}, {policy.SectionDefinition, "approval_policy", "critical-weights", "steps", policy.Weakened}, {policy.SectionAccess, "subject", "dave", "approver", policy.Neutral}}},
		{name: "a step added", old: []edit{{"approvals.yaml", "  - name: security\n    from: [security]\n    count: 1\n  # beneficiary", "  # beneficiary"}}, verdict: policy.Strengthened,
			want: []want{{policy.SectionApproval, "role", reader, "quorum", policy.Strengthened}, {policy.SectionAccess, "subject", "dave", "approver", policy.Neutral}}},
		// One source makes mallory an owner of the research workloads (a declared member of
		// their owner group), another a requester (anyone the identity provider puts in
		// ml-research is a researcher): together she may now file for them. Found by
		// TestDiffNeverMissesAWeakening (RAMPART_QUORUM_SEED=42), which checked ownership and
		// selection source by source.
		{name: "an owner who may be a requester through the identity provider",
			old: []edit{{"workloads.yaml", "owners: [researchers]", "owners: [data-stewards]"}},
			new: []edit{{"workloads.yaml", "owners: [researchers]", "owners: [data-stewards]"}, {"groups.yaml", "members: [carol]", "members: [carol, mallory]"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "filing", policy.Weakened}}},
		{name: "higher M", new: []edit{{"approvals.yaml", "from: [weights-owners]\n    count: 1", "from: [weights-owners]\n    count: 2"}}, verdict: policy.Strengthened,
			want: []want{{policy.SectionApproval, "role", reader, "quorum", policy.Strengthened}}},
		{name: "a new approver", new: []edit{{"groups.yaml", "members: [bob, carol]", "members: [bob, carol, mallory]"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "quorum", policy.Weakened}, {policy.SectionAccess, "subject", "mallory", "approver", policy.Neutral}}},
		{name: "a new administrator", new: []edit{{"groups.yaml", "members: [erin]", "members: [erin, alice]"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionAccess, "subject", "alice", "admin", policy.Weakened}}},
		{name: "lower sensitivity", new: []edit{{"resources.yaml", "sensitivity: critical", "sensitivity: sensitive"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionReach, "resource", "weights/frontier-7", "sensitivity", policy.Weakened}}},
		{name: "more actions", new: []edit{{"roles.yaml", "  - actions: [read]\n    resources: [weights/frontier-7]", "  - actions: [read, write]\n    resources: [weights/frontier-7]"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionReach, "role", reader, "actions", policy.Weakened}}},
		{name: "a new egress destination", new: []edit{{"egress.yaml", "  - host: arxiv.org\n", "  - host: arxiv.org\n  - host: example.com\n"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionAccess, "subject", "alice", "egress", policy.Weakened}}},
		{name: "image digests no longer required", new: []edit{{"settings.yaml", "require_digest: true", "require_digest: false"}}, verdict: policy.Weakened,
			want: []want{{policy.SectionDefinition, "settings", "settings", "kubernetes.admission.require_digest", policy.Weakened}}},
		{name: "step-up required", new: []edit{stepUp("5m")}, verdict: policy.Strengthened,
			want: []want{{policy.SectionApproval, "role", reader, "step_up", policy.Strengthened}}},
		{name: "step-up lengthened", old: []edit{stepUp("5m")}, new: []edit{stepUp("30m")}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "step_up", policy.Weakened}, {policy.SectionDefinition, "approval_policy", "critical-weights", "require_step_up", policy.Weakened}}},
		{name: "step-up removed", old: []edit{stepUp("5m")}, verdict: policy.Weakened,
			want: []want{{policy.SectionApproval, "role", reader, "step_up", policy.Weakened}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := policy.Compare(demoWith(t, c.old...), demoWith(t, c.new...))
			if d.Verdict != c.verdict {
				t.Errorf("verdict %s, want %s\n%s", d.Verdict, c.verdict, renderDiff(d))
			}
			for _, w := range c.want {
				found := false
				for _, ch := range d.Find(w.section, w.kind, w.name) {
					if ch.Field == w.field {
						found = true
						if ch.Verdict != w.verdict || ch.Message == "" {
							t.Errorf("%s %s/%s %s: %s %q, want %s", w.section, w.kind, w.name, w.field, ch.Verdict, ch.Message, w.verdict)
						}
					}
				}
				if !found {
					t.Errorf("no change %s %s/%s %s in\n%s", w.section, w.kind, w.name, w.field, renderDiff(d))
				}
			}
			if d.Weakened+d.Strengthened+d.Neutral != len(d.Changes) {
				t.Errorf("counts %d+%d+%d for %d changes", d.Weakened, d.Strengthened, d.Neutral, len(d.Changes))
			}
		})
	}
}

func TestCompareSamePolicy(t *testing.T) {
	p := demoWith(t)
	d := policy.Compare(p, demoWith(t))
	if d.Verdict != policy.Neutral || len(d.Changes) != 0 || d.Changes == nil || d.OldDigest != p.Digest || d.NewDigest != p.Digest {
		t.Fatalf("the same policy twice: %+v", d)
	}
}

// TestCompareDeterministic: the same pair gives the same Diff, byte for byte, whatever the
// order maps are walked in.
func TestCompareDeterministic(t *testing.T) {
	old := demoWith(t)
	new := demoWith(t, edit{"groups.yaml", "members: [bob, carol]", "members: [carol, mallory]"}, edit{"approvals.yaml", "max_duration: 8h", "max_duration: 24h"})
	first, _ := json.Marshal(policy.Compare(old, new))
	for range 20 {
		again, _ := json.Marshal(policy.Compare(old, new))
		if string(again) != string(first) {
			t.Fatalf("two runs differ:\n%s\n%s", first, again)
		}
	}
}

// TestDiffShape pins the JSON field names that scripts and `rampart change show` rely on
// (docs/policy.md, "Policy diff").
func TestDiffShape(t *testing.T) {
	d := policy.Compare(demoWith(t), demoWith(t, edit{"approvals.yaml", "max_duration: 8h", "max_duration: 24h"}))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if got, want := sortedKeys(top), []string{"changes", "neutral", "new_digest", "old_digest", "strengthened", "verdict", "weakened"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff fields %v, want %v", got, want)
	}
	first := top["changes"].([]any)[0].(map[string]any)
	if got, want := sortedKeys(first), []string{"field", "kind", "message", "name", "new", "old", "section", "verdict"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Change fields %v, want %v", got, want)
	}
	if top["verdict"] != "weakened" {
		t.Fatalf("verdict %v", top["verdict"])
	}
}

func sortedKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Past maxMachineReps combinations of machine-pattern literals the diff does not enumerate
// machines; any change to Workloads then counts as weakening (fail safe).
func TestCompareTooManyMachinePatterns(t *testing.T) {
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	many := func(owner string) []policy.File {
		var b strings.Builder
		for i := range 30 {
			fmt.Fprintf(&b, "---\napiVersion: rampart.dev/v1alpha1\nkind: Workload\nmetadata: {name: w%d}\nspec:\n  subjects: [\"k8s:c%d/*/*\", \"k8s:*/ns%d/*\", \"k8s:*/*/sa%d\"]\n  owners: [%s]\n", i, i, i, i, owner)
		}
		return append(slices.Clone(files), policy.File{Name: "many.yaml", Data: []byte(b.String())})
	}
	old, err := policy.Parse(many("researchers"))
	if err != nil {
		t.Fatal(err)
	}
	new, err := policy.Parse(many("security"))
	if err != nil {
		t.Fatal(err)
	}
	d := policy.Compare(old, new)
	found := false
	for _, c := range d.Find(policy.SectionApproval, "role", "weights-reader-frontier-7") {
		found = found || (c.Field == "independence" && c.Verdict == policy.Weakened && strings.Contains(c.Message, "too many to check"))
	}
	if !found {
		t.Fatalf("a change to Workloads with too many pattern combinations is not WEAKENED as such:\n%s", renderDiff(d))
	}
}
