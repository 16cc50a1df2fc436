package quorumtest

import "slices"

// The reference model of who counts on a change (docs/change.md, "Who counts"): a change's
// parties (authors, committers, co-authors, requester, pusher) never count; the people who own a
// machine party never count; where the policy excludes a party's groups (requester_groups or
// beneficiary_groups), nobody sharing a group with any party, or with an owner of a machine
// party, counts, and a machine party no Workload declares excludes everyone.

// ChangeExcluded reports whether approver may never count on a change with these parties under
// the main policy.
func (w *World) ChangeExcluded(approver string, parties []string) bool {
	if slices.Contains(parties, approver) {
		return true
	}
	mine := w.groupsOf(approver)
	groupsOn := w.Main.RequesterGroups || w.Main.BeneficiaryGrps
	for _, pt := range parties {
		owners := w.Owners(pt)
		if share(mine, owners) {
			return true
		}
		if !groupsOn {
			continue
		}
		if isMachine(pt) && len(owners) == 0 {
			return true
		}
		if share(mine, w.groupsOf(pt)) {
			return true
		}
		for _, g := range owners {
			for _, o := range w.Members[g] {
				if share(mine, w.groupsOf(o)) {
					return true
				}
			}
		}
	}
	return false
}

// ChangeSatisfied reports whether the approvers can fill every slot of the main policy on a
// change with these parties (the brute force of MaxMatching, with the change's exclusions).
func (w *World) ChangeSatisfied(approvers, parties []string) bool {
	var people []string
	for _, a := range approvers {
		if !slices.Contains(people, a) && !w.ChangeExcluded(a, parties) {
			people = append(people, a)
		}
	}
	eligible := make([][]int, len(people))
	for i, a := range people {
		for si, st := range w.Main.Steps {
			for _, g := range st.From {
				if w.In(a, g) {
					eligible[i] = append(eligible[i], si)
					break
				}
			}
		}
	}
	slots := w.Slots()
	used := make([]bool, len(people))
	var fill func(slot int) bool
	fill = func(slot int) bool {
		if slot == len(slots) {
			return true
		}
		for i := range people {
			if !used[i] && slices.Contains(eligible[i], slots[slot]) {
				used[i] = true
				if fill(slot + 1) {
					return true
				}
				used[i] = false
			}
		}
		return false
	}
	return fill(0)
}

// ChangeEligible returns the steps of the main policy approver may count towards on a change
// with these parties.
func (w *World) ChangeEligible(approver string, parties []string) []int {
	if w.ChangeExcluded(approver, parties) {
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
