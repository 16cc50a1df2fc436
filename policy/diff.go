package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Invariant 10, the guard is guarded: a change to the policy is approved by people who read
// what it does. Compare computes that: not the text that changed, but the effective change —
// who gains or loses which role, what each role reaches, and what a request for each role
// needs — each marked WEAKENED, strengthened or neutral.
//
// The one promise that matters: a change that lets some request be approved under the new
// policy that could not be under the old one is never reported as neutral. Compare decides with
// sufficient conditions that are proved to imply "no weaker" (docs/policy.md, "Policy diff");
// whatever it cannot prove no weaker it reports as WEAKENED, saying why. It may therefore call a
// harmless change WEAKENED, never the reverse. TestDiffNeverMissesAWeakening holds it to this
// against a brute force over random pairs of policies.

// Verdict says which way a change moves security.
type Verdict string

// Verdicts, from the least to the most severe. A change is neutral when it is proved to change
// no access and no requirement, strengthened when it is proved only to take away, and weakened
// otherwise.
const (
	Neutral      Verdict = "neutral"
	Strengthened Verdict = "strengthened"
	Weakened     Verdict = "weakened"
)

func (v Verdict) rank() int {
	switch v {
	case Neutral:
		return 0
	case Strengthened:
		return 1
	}
	return 2 // Weakened, and anything unknown: fail safe
}

// Label is the verdict as printed for people: WEAKENED in capitals, so that it stands out.
func (v Verdict) Label() string {
	if v == Weakened {
		return "WEAKENED"
	}
	return string(v)
}

// worse returns the more severe of two verdicts.
func worse(a, b Verdict) Verdict {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Section groups the changes of a Diff by what they are about.
type Section string

// Sections, in the order a Diff lists them.
const (
	// SectionApproval: per role, what a request for it needs (the effective approval policy:
	// quorum, who is independent, who may file for whom, durations, step-up, conditions).
	SectionApproval Section = "approval"
	// SectionAccess: per subject, what they gain or lose: standing roles, admin and auditor
	// rights, the roles they may approve, egress destinations.
	SectionAccess Section = "access"
	// SectionReach: per role, the resources and actions it gives and its Kubernetes binding;
	// per resource, its sensitivity and the cluster objects it protects.
	SectionReach Section = "reach"
	// SectionDefinition: every declared object added, removed or edited, field by field.
	SectionDefinition Section = "definition"
)

var sectionOrder = map[Section]int{SectionApproval: 0, SectionAccess: 1, SectionReach: 2, SectionDefinition: 3}

// Change is one effective or declared change. Its shape is stable: scripts and `rampart change
// show` rely on it (docs/policy.md, "Policy diff").
type Change struct {
	Verdict Verdict `json:"verdict"`
	Section Section `json:"section"`
	// Kind and Name say what the change is about: a subject (a person, a machine, the members
	// of an identity-provider group, "default" for unidentified egress callers), or a declared
	// object: role, resource, group, approval_policy, standing_binding, egress_policy,
	// workload, settings, repository, detection_rule.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Field is the aspect (approval: requestable, quorum, independence, filing, max_duration,
	// …; access: standing_role, admin, auditor, approver, egress; reach: actions, sensitivity,
	// kubernetes, protects) or, in the definition section, the field path as written in YAML.
	Field string `json:"field"`
	// Old and New render the value before and after ("" when absent).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
	// Message says, for people, what changed and why it has its verdict.
	Message string `json:"message"`
}

// Diff is the effective difference between two policies, computed by Compare.
type Diff struct {
	// OldDigest and NewDigest are the policies' Digests.
	OldDigest string `json:"old_digest"`
	NewDigest string `json:"new_digest"`
	// Verdict is the most severe verdict of any change: weakened if any change weakens;
	// neutral when nothing changed.
	Verdict Verdict `json:"verdict"`
	// Weakened, Strengthened and Neutral count the changes of each verdict.
	Weakened     int `json:"weakened"`
	Strengthened int `json:"strengthened"`
	Neutral      int `json:"neutral"`
	// Changes, ordered by section (approval, access, reach, definition), then kind, name and
	// field. Never nil.
	Changes []Change `json:"changes"`
}

// Find returns the changes of a section about one object or subject, in order.
func (d *Diff) Find(section Section, kind, name string) []Change {
	var out []Change
	for _, c := range d.Changes {
		if c.Section == section && c.Kind == kind && c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// Compare returns the effective difference from old to new. Both must be policies returned by
// Parse (possibly WithDirectory: group members are taken as compiled). Compare is pure and
// deterministic: the same two policies always give the same Diff. A change that lets some
// request be approved under new that could not be under old is never reported neutral or
// strengthened (docs/policy.md, "Policy diff").
func Compare(old, new *Policy) *Diff {
	d := newDiffer(old, new)
	d.compareApprovals()
	d.compareAccess()
	d.compareReach()
	d.compareDefinitions()
	out := &Diff{OldDigest: old.Digest, NewDigest: new.Digest, Verdict: Neutral, Changes: d.changes}
	if out.Changes == nil {
		out.Changes = []Change{}
	}
	sort.SliceStable(out.Changes, func(i, j int) bool {
		a, b := out.Changes[i], out.Changes[j]
		if sectionOrder[a.Section] != sectionOrder[b.Section] {
			return sectionOrder[a.Section] < sectionOrder[b.Section]
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Field < b.Field
	})
	for _, c := range out.Changes {
		out.Verdict = worse(out.Verdict, c.Verdict)
		switch c.Verdict {
		case Weakened:
			out.Weakened++
		case Strengthened:
			out.Strengthened++
		default:
			out.Neutral++
		}
	}
	return out
}

// differ holds both policies, the subjects the diff reasons about, and the changes found.
type differ struct {
	o, n    *side
	u       *universe
	changes []Change
}

func newDiffer(old, new *Policy) *differ {
	d := &differ{o: newSide(old), n: newSide(new)}
	d.u = newUniverse(d.o, d.n)
	return d
}

func (d *differ) add(c Change) { d.changes = append(d.changes, c) }

// setMinus returns the elements of a not in b, sorted and without duplicates.
func setMinus(a, b []string) []string {
	in := make(map[string]bool, len(b))
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
			in[x] = true
		}
	}
	sort.Strings(out)
	return out
}

// sortedSet returns the keys of a set, sorted.
func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// subset reports whether every element of a is in b.
func subset(a, b map[string]bool) bool {
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// examples joins up to n items, saying how many more there are.
func examples(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// sameStrings reports whether two lists hold the same set of strings.
func sameStrings(a, b []string) bool {
	return len(setMinus(a, b)) == 0 && len(setMinus(b, a)) == 0
}
