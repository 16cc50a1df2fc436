package quorumtest

import (
	"slices"
	"strings"
)

// The reference model. Each function restates a rule of docs/policy.md in the plainest form,
// without the policy package's data structures, so that the two can disagree.

func isMachine(s string) bool {
	return strings.HasPrefix(s, "k8s:") || strings.HasPrefix(s, "service:")
}

// In reports whether s is a member of group g: declared (or through the directory), or
// signing in with an identity-provider group that g maps.
func (w *World) In(s, g string) bool {
	if slices.Contains(w.Members[g], s) {
		return true
	}
	for _, c := range w.Claims[s] {
		if slices.Contains(w.IdP[g], c) {
			return true
		}
	}
	return false
}

// members returns everyone in group g, those who are there by their claims included.
func (w *World) members(g string) []string {
	out := slices.Clone(w.Members[g])
	for s := range w.Claims {
		if !slices.Contains(out, s) && w.In(s, g) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func (w *World) groupsOf(s string) []string {
	var out []string
	for _, g := range groups {
		if w.In(s, g) {
			out = append(out, g)
		}
	}
	return out
}

func share(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// matches: a subject pattern whose "*" segments match any one segment.
func matches(pattern, subject string) bool {
	if pattern == subject {
		return true
	}
	pk, pr, ok1 := strings.Cut(pattern, ":")
	sk, sr, ok2 := strings.Cut(subject, ":")
	if !ok1 || !ok2 || pk != sk {
		return false
	}
	ps, ss := strings.Split(pr, "/"), strings.Split(sr, "/")
	if len(ps) != len(ss) {
		return false
	}
	for i := range ps {
		if ps[i] != "*" && ps[i] != ss[i] {
			return false
		}
	}
	return true
}

// Owners returns the owner groups of a machine: every group named by a Workload declaration
// that lists it or a pattern it matches.
func (w *World) Owners(s string) []string {
	var out []string
	if !isMachine(s) {
		return nil
	}
	for _, wl := range w.Workloads {
		hit := false
		for _, p := range wl.Subjects {
			hit = hit || matches(p, s)
		}
		if hit {
			for _, g := range wl.Owners {
				if !slices.Contains(out, g) {
					out = append(out, g)
				}
			}
		}
	}
	return out
}

// BeneficiaryGroups: on where the policy says so, and always for a critical resource.
func (w *World) BeneficiaryGroups() bool {
	return w.Main.BeneficiaryGrps || w.Sensitivity == "critical"
}

// Excluded reports whether approver may never count on a request by requester for beneficiary.
func (w *World) Excluded(approver, requester, beneficiary string) bool {
	if approver == requester || approver == beneficiary {
		return true
	}
	type side struct {
		subject string
		groups  bool
	}
	sides := []side{{requester, w.Main.RequesterGroups || (requester == beneficiary && w.BeneficiaryGroups())}}
	if beneficiary != requester {
		sides = append(sides, side{beneficiary, w.BeneficiaryGroups()})
	}
	mine := w.groupsOf(approver)
	for _, sd := range sides {
		owners := w.Owners(sd.subject)
		// The people who own a machine party never count.
		if share(mine, owners) {
			return true
		}
		if !sd.groups {
			continue
		}
		if isMachine(sd.subject) && len(owners) == 0 {
			return true // nobody can be shown independent of an undeclared machine
		}
		if share(mine, w.groupsOf(sd.subject)) {
			return true
		}
		for _, g := range owners {
			for _, o := range w.members(g) {
				if share(mine, w.groupsOf(o)) {
					return true
				}
			}
		}
	}
	return false
}

// Eligible returns the steps of the main policy approver may count towards.
func (w *World) Eligible(approver, requester, beneficiary string) []int {
	if w.Excluded(approver, requester, beneficiary) {
		return nil
	}
	var out []int
	for i, st := range w.Main.Steps {
		for _, g := range st.From {
			if w.In(approver, g) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

func (w *World) selects(sel, s string) bool {
	if g, ok := strings.CutPrefix(sel, "group:"); ok {
		return w.In(s, g)
	}
	return matches(sel, s)
}

func (w *World) allows(ap ApprovalPolicy, requester, beneficiary string) bool {
	for _, rf := range ap.RequestFor {
		who := false
		for _, s := range rf.Requesters {
			who = who || w.selects(s, requester)
		}
		if !who {
			continue
		}
		for _, s := range rf.Beneficiaries {
			if w.selects(s, beneficiary) {
				return true
			}
		}
		if rf.Owned {
			for _, g := range w.Owners(beneficiary) {
				if w.In(requester, g) {
					return true
				}
			}
		}
	}
	return false
}

// MayFile reports whether requester may file the request for beneficiary.
func (w *World) MayFile(requester, beneficiary string) bool {
	if w.BeneficiaryGroups() && isMachine(beneficiary) && len(w.Owners(beneficiary)) == 0 {
		return false
	}
	rg := w.Main.RequesterGroups || (requester == beneficiary && w.BeneficiaryGroups())
	if rg && isMachine(requester) && len(w.Owners(requester)) == 0 {
		return false
	}
	if requester == beneficiary {
		return true
	}
	if !w.allows(w.Main, requester, beneficiary) {
		return false
	}
	return w.Extra == nil || w.allows(*w.Extra, requester, beneficiary)
}

// Slots returns the step of each approval slot: step i appears Count times.
func (w *World) Slots() []int {
	var out []int
	for i, st := range w.Main.Steps {
		for k := 0; k < st.Count; k++ {
			out = append(out, i)
		}
	}
	return out
}

// MaxMatching is the brute force: it tries every assignment of distinct approvers (each to at
// most one slot, only to a slot of a step it is eligible for, or none) and returns the largest
// number of slots filled.
func (w *World) MaxMatching(approvers []string, requester, beneficiary string) int {
	var people []string
	for _, a := range approvers {
		if !slices.Contains(people, a) {
			people = append(people, a)
		}
	}
	eligible := make([][]int, len(people))
	for i, a := range people {
		eligible[i] = w.Eligible(a, requester, beneficiary)
	}
	slots := w.Slots()
	used := make([]bool, len(people))
	best := 0
	var fill func(slot, filled int)
	fill = func(slot, filled int) {
		if filled+len(slots)-slot <= best {
			return // cannot beat the best already found
		}
		if slot == len(slots) {
			best = filled
			return
		}
		for i := range people {
			if !used[i] && slices.Contains(eligible[i], slots[slot]) {
				used[i] = true
				fill(slot+1, filled+1)
				used[i] = false
			}
		}
		fill(slot+1, filled) // leave the slot empty
	}
	fill(0, 0)
	return best
}

// Satisfied reports whether the approvers can fill every slot.
func (w *World) Satisfied(approvers []string, requester, beneficiary string) bool {
	return w.MaxMatching(approvers, requester, beneficiary) == len(w.Slots())
}

// Everyone returns the members of the main policy's step groups, each once.
func (w *World) Everyone() []string {
	var out []string
	for _, st := range w.Main.Steps {
		for _, g := range st.From {
			for _, m := range w.members(g) {
				if !slices.Contains(out, m) {
					out = append(out, m)
				}
			}
		}
	}
	return out
}
