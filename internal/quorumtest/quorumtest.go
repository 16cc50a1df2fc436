// Package quorumtest generates random policies, parties and approvers, and holds a reference
// model of who may approve what that is written from the documentation (docs/policy.md, "Who
// counts" and "Requests for someone else"), independently of package policy. Its matching is a
// brute force over every assignment of approvers to step slots. The property tests of policy
// (Tally, EligibleSteps, Explain) and of the workflow (access.Service over real stores, in
// store/storetest) compare the code under test with it, so that regressing the quorum matching
// or an exclusion (invariant 1) fails a test.
package quorumtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Seed returns the seed for a property test: RAMPART_QUORUM_SEED when set (to replay a
// failure), otherwise the clock. Tests print it with every failure.
func Seed(t testing.TB) uint64 {
	t.Helper()
	if v := os.Getenv("RAMPART_QUORUM_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RAMPART_QUORUM_SEED=%q is not a number", v)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// The universe every world draws from: seven people, four machines, one outsider.
var (
	People   = []string{"p0", "p1", "p2", "p3", "p4", "p5", "p6"}
	Machines = []string{"k8s:c1/ns0/w0", "k8s:c1/ns0/w1", "k8s:c2/ns1/w2", "service:s0"}
	// Outsider belongs to no group.
	Outsider = "p9"
	groups   = []string{"g0", "g1", "g2", "g3", "g4"}
	// ClaimOnly people are named nowhere in the policy: they belong to groups only through
	// the identity-provider groups they sign in with.
	ClaimOnly = []string{"q0", "q1"}
	idpGroups = []string{"i0", "i1", "i2"}
	patterns  = []string{"k8s:c1/ns0/*", "k8s:*/ns1/*", "k8s:*/*/*", "service:*"}
)

// Subjects returns every subject a world knows, outsider included.
func Subjects() []string {
	return append(append(append([]string(nil), People...), Machines...), Outsider)
}

// Step is one approval step of the model.
type Step struct {
	From  []string
	Count int
}

// Rule is one request_for rule of the model.
type Rule struct {
	Requesters, Beneficiaries []string
	Owned                     bool
}

// ApprovalPolicy is the model of one approval policy.
type ApprovalPolicy struct {
	Name                             string
	Steps                            []Step
	RequesterGroups, BeneficiaryGrps bool
	RequestFor                       []Rule
}

// Workload is the model of one Workload declaration.
type Workload struct {
	Subjects, Owners []string
}

// World is a random policy: its YAML and its model. The role "r" reaches one resource
// "res/x" of sensitivity Sensitivity; Main governs it, and Extra (when set) is a looser policy
// that also matches it.
type World struct {
	Members     map[string][]string // group → members
	Workloads   []Workload
	Sensitivity string
	Main        ApprovalPolicy
	Extra       *ApprovalPolicy
	// Directory, when set, is overlaid on the parsed policy (policy.WithDirectory): subjects
	// brought into groups by the identity provider. Members already includes it.
	Directory map[string][]string
	// IdP, when set, maps groups to identity-provider groups (a Group's idp_groups), and Claims
	// says which identity-provider groups each subject signs in with (ClaimOnly people are
	// known only that way). Claims is the provider's state, not the policy's: it is not part of
	// YAML, and Members does not include it (see In). NewWorld leaves both unset; WithIdP sets
	// them.
	IdP    map[string][]string
	Claims map[string][]string
	YAML   string
}

// NewWorld draws a world from r.
func NewWorld(r *rand.Rand) *World {
	w := &World{Members: map[string][]string{}}
	for _, g := range groups {
		w.Members[g] = pick(r, People, 1+r.IntN(3))
		if r.IntN(5) == 0 { // now and then a machine is a member too
			w.Members[g] = append(w.Members[g], Machines[r.IntN(len(Machines))])
			sort.Strings(w.Members[g])
		}
	}
	for i := r.IntN(3); i > 0; i-- {
		wl := Workload{Owners: pick(r, groups, 1+r.IntN(2))}
		for j := 1 + r.IntN(2); j > 0; j-- {
			if r.IntN(2) == 0 {
				wl.Subjects = append(wl.Subjects, Machines[r.IntN(len(Machines))])
			} else {
				wl.Subjects = append(wl.Subjects, patterns[r.IntN(len(patterns))])
			}
		}
		w.Workloads = append(w.Workloads, wl)
	}
	w.Sensitivity = []string{"critical", "sensitive"}[r.IntN(2)]
	w.Main = randomPolicy(r, "main", w.Members, 1+r.IntN(3), 5)
	if total(w.Main) >= 2 && r.IntN(3) == 0 {
		extra := randomPolicy(r, "extra", w.Members, 1, 1)
		w.Extra = &extra
	}
	if r.IntN(2) == 0 {
		w.Directory = map[string][]string{}
		for i := r.IntN(3); i > 0; i-- {
			s, g := People[r.IntN(len(People))], groups[r.IntN(len(groups))]
			if !slices.Contains(w.Members[g], s) {
				w.Directory[s] = append(w.Directory[s], g)
				w.Members[g] = append(w.Members[g], s)
				sort.Strings(w.Members[g])
			}
		}
	}
	w.YAML = w.render()
	return w
}

func pick(r *rand.Rand, from []string, n int) []string {
	var out []string
	for _, i := range r.Perm(len(from))[:n] {
		out = append(out, from[i])
	}
	sort.Strings(out)
	return out
}

func total(ap ApprovalPolicy) int {
	n := 0
	for _, s := range ap.Steps {
		n += s.Count
	}
	return n
}

// randomPolicy draws steps (at most maxSlots approvals in all; a step never needs more people
// than its groups declare, which validation refuses), exclusions and request_for rules.
func randomPolicy(r *rand.Rand, name string, members map[string][]string, steps, maxSlots int) ApprovalPolicy {
	ap := ApprovalPolicy{Name: name, RequesterGroups: r.IntN(2) == 0, BeneficiaryGrps: r.IntN(3) == 0}
	slots := 0
	for i := 0; i < steps && slots < maxSlots; i++ {
		from := pick(r, groups, 1+r.IntN(2))
		distinct := map[string]bool{}
		for _, g := range from {
			for _, m := range members[g] {
				distinct[m] = true
			}
		}
		count := min(1+r.IntN(2), len(distinct), maxSlots-slots)
		ap.Steps = append(ap.Steps, Step{From: from, Count: count})
		slots += count
	}
	for i := r.IntN(3); i > 0; i-- {
		var rule Rule
		for j := 1 + r.IntN(2); j > 0; j-- {
			rule.Requesters = append(rule.Requesters, selector(r))
		}
		rule.Owned = r.IntN(2) == 0
		for j := r.IntN(3); j > 0 || (j == 0 && !rule.Owned && len(rule.Beneficiaries) == 0); j-- {
			rule.Beneficiaries = append(rule.Beneficiaries, selector(r))
		}
		ap.RequestFor = append(ap.RequestFor, rule)
	}
	return ap
}

func selector(r *rand.Rand) string {
	switch r.IntN(4) {
	case 0:
		return "group:" + groups[r.IntN(len(groups))]
	case 1:
		return patterns[r.IntN(len(patterns))]
	case 2:
		return Machines[r.IntN(len(Machines))]
	default:
		return People[r.IntN(len(People))]
	}
}

func quote(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func (w *World) render() string {
	var b strings.Builder
	doc := func(kind, name, spec string) {
		fmt.Fprintf(&b, "---\napiVersion: rampart.dev/v1alpha1\nkind: %s\nmetadata: {name: %s}\nspec:\n%s", kind, name, spec)
	}
	doc("Settings", "settings", "  admin_group: g0\n")
	declared := map[string][]string{} // the policy declares members; the directory adds the rest
	for g, ms := range w.Members {
		for _, m := range ms {
			if !slices.Contains(w.Directory[m], g) {
				declared[g] = append(declared[g], m)
			}
		}
	}
	for _, g := range groups {
		spec := "  members: " + quote(declared[g]) + "\n"
		if len(w.IdP[g]) > 0 {
			spec += "  idp_groups: " + quote(w.IdP[g]) + "\n"
		}
		doc("Group", g, spec)
	}
	for i, wl := range w.Workloads {
		doc("Workload", fmt.Sprintf("wl%d", i), "  subjects: "+quote(wl.Subjects)+"\n  owners: "+quote(wl.Owners)+"\n")
	}
	doc("Resource", "res/x", "  kind: thing\n  sensitivity: "+w.Sensitivity+"\n  tags: [t]\n")
	doc("Role", "r", "  rules: [{actions: [read], resources: [res/x]}]\n")
	renderPolicy := func(ap ApprovalPolicy, match string) {
		var s strings.Builder
		fmt.Fprintf(&s, "  match: %s\n  steps:\n", match)
		for _, st := range ap.Steps {
			fmt.Fprintf(&s, "  - {from: %s, count: %d}\n", quote(st.From), st.Count)
		}
		ex := []string{"requester", "beneficiary"}
		if ap.RequesterGroups {
			ex = append(ex, "requester_groups")
		}
		if ap.BeneficiaryGrps {
			ex = append(ex, "beneficiary_groups")
		}
		fmt.Fprintf(&s, "  exclude: %s\n  max_duration: 8h\n", quote(ex))
		if len(ap.RequestFor) > 0 {
			s.WriteString("  request_for:\n")
			for _, rf := range ap.RequestFor {
				fmt.Fprintf(&s, "  - requesters: %s\n    beneficiaries: %s\n    owned_workloads: %v\n", quote(rf.Requesters), quote(rf.Beneficiaries), rf.Owned)
			}
		}
		doc("ApprovalPolicy", ap.Name, s.String())
	}
	renderPolicy(w.Main, "{resources: [res/x]}")
	if w.Extra != nil {
		renderPolicy(*w.Extra, "{tags: [t]}")
	}
	return b.String()
}
