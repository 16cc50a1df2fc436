package quorumtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
)

// Pairs of worlds for the policy diff (policy.Compare): a world, a copy with a few random
// edits, and the brute force that says whether some request could be approved under the copy
// and not under the original.

// Clone returns a deep copy of w.
func (w *World) Clone() *World {
	c := *w
	c.Members = cloneMap(w.Members)
	c.Directory = cloneMap(w.Directory)
	c.IdP = cloneMap(w.IdP)
	c.Claims = cloneMap(w.Claims)
	c.Workloads = nil
	for _, wl := range w.Workloads {
		c.Workloads = append(c.Workloads, Workload{Subjects: slices.Clone(wl.Subjects), Owners: slices.Clone(wl.Owners)})
	}
	c.Main = w.Main.clone()
	if w.Extra != nil {
		e := w.Extra.clone()
		c.Extra = &e
	}
	return &c
}

func cloneMap(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

func (ap ApprovalPolicy) clone() ApprovalPolicy {
	c := ap
	c.Steps = nil
	for _, s := range ap.Steps {
		c.Steps = append(c.Steps, Step{From: slices.Clone(s.From), Count: s.Count})
	}
	c.RequestFor = nil
	for _, r := range ap.RequestFor {
		c.RequestFor = append(c.RequestFor, Rule{Requesters: slices.Clone(r.Requesters), Beneficiaries: slices.Clone(r.Beneficiaries), Owned: r.Owned})
	}
	return c
}

// WithIdP maps some groups to identity-provider groups and gives some people (ClaimOnly
// among them) identity-provider groups at sign-in.
func (w *World) WithIdP(r *rand.Rand) {
	w.IdP, w.Claims = map[string][]string{}, map[string][]string{}
	for _, g := range groups {
		if r.IntN(3) == 0 {
			w.IdP[g] = pick(r, idpGroups, 1)
		}
	}
	// Claim-only people, and people who are also named (one source may make them an owner or
	// an approver, another a requester).
	for _, s := range append(slices.Clone(ClaimOnly), pick(r, People, 1+r.IntN(3))...) {
		w.Claims[s] = pick(r, idpGroups, r.IntN(3))
	}
	w.YAML = w.render()
}

// Mutate returns a copy of w with one to three random edits, and what they were. Any edit may
// make the policy weaker, stronger or neither; some make it invalid (a step needing more
// people than its groups have), which the caller finds out by parsing it.
func Mutate(r *rand.Rand, w *World) (*World, []string) {
	c := w.Clone()
	var did []string
	for n := 1 + r.IntN(3); n > 0; n-- {
		did = append(did, c.mutate(r))
	}
	c.YAML = c.render()
	return c, did
}

func (w *World) mutate(r *rand.Rand) string {
	ap := &w.Main
	which := "main"
	if w.Extra != nil && r.IntN(3) == 0 {
		ap, which = w.Extra, "extra"
	}
	g := groups[r.IntN(len(groups))]
	switch r.IntN(16) {
	case 0, 1:
		s := append(slices.Clone(People), Machines...)[r.IntN(len(People)+len(Machines))]
		if !slices.Contains(w.Members[g], s) {
			w.Members[g] = append(w.Members[g], s)
			sort.Strings(w.Members[g])
		}
		return fmt.Sprintf("add %s to %s", s, g)
	case 2, 3:
		if len(w.Members[g]) == 0 {
			return "nothing"
		}
		s := w.Members[g][r.IntN(len(w.Members[g]))]
		w.Members[g] = slices.DeleteFunc(w.Members[g], func(x string) bool { return x == s })
		if w.Directory != nil {
			w.Directory[s] = slices.DeleteFunc(w.Directory[s], func(x string) bool { return x == g })
		}
		return fmt.Sprintf("remove %s from %s", s, g)
	case 4, 5:
		i := r.IntN(len(ap.Steps))
		ap.Steps[i].Count = max(1, ap.Steps[i].Count+[]int{-1, 1}[r.IntN(2)])
		return fmt.Sprintf("%s step %d count %d", which, i, ap.Steps[i].Count)
	case 6:
		if len(ap.Steps) > 1 && r.IntN(2) == 0 {
			i := r.IntN(len(ap.Steps))
			ap.Steps = slices.Delete(ap.Steps, i, i+1)
			return fmt.Sprintf("%s remove step %d", which, i)
		}
		ap.Steps = append(ap.Steps, Step{From: pick(r, groups, 1+r.IntN(2)), Count: 1})
		return fmt.Sprintf("%s add step %v", which, ap.Steps[len(ap.Steps)-1].From)
	case 7:
		i := r.IntN(len(ap.Steps))
		st := &ap.Steps[i]
		if len(st.From) > 1 && r.IntN(2) == 0 {
			st.From = slices.DeleteFunc(st.From, func(x string) bool { return x == st.From[r.IntN(len(st.From))] })
		} else if !slices.Contains(st.From, g) {
			st.From = append(st.From, g)
			sort.Strings(st.From)
		}
		return fmt.Sprintf("%s step %d from %v", which, i, st.From)
	case 8:
		ap.RequesterGroups = !ap.RequesterGroups
		return fmt.Sprintf("%s requester_groups %v", which, ap.RequesterGroups)
	case 9:
		ap.BeneficiaryGrps = !ap.BeneficiaryGrps
		return fmt.Sprintf("%s beneficiary_groups %v", which, ap.BeneficiaryGrps)
	case 10:
		w.Sensitivity = map[string]string{"critical": "sensitive", "sensitive": "critical"}[w.Sensitivity]
		return "sensitivity " + w.Sensitivity
	case 11:
		switch {
		case len(w.Workloads) > 0 && r.IntN(3) == 0:
			i := r.IntN(len(w.Workloads))
			w.Workloads = slices.Delete(w.Workloads, i, i+1)
			return fmt.Sprintf("remove workload %d", i)
		case len(w.Workloads) > 0 && r.IntN(2) == 0:
			i := r.IntN(len(w.Workloads))
			w.Workloads[i].Owners = pick(r, groups, 1+r.IntN(2))
			return fmt.Sprintf("workload %d owners %v", i, w.Workloads[i].Owners)
		case len(w.Workloads) > 0:
			i := r.IntN(len(w.Workloads))
			w.Workloads[i].Subjects = []string{append(slices.Clone(Machines), patterns...)[r.IntN(len(Machines)+len(patterns))]}
			return fmt.Sprintf("workload %d subjects %v", i, w.Workloads[i].Subjects)
		}
		w.Workloads = append(w.Workloads, Workload{Subjects: []string{Machines[r.IntN(len(Machines))]}, Owners: []string{g}})
		return fmt.Sprintf("add workload %v", w.Workloads[len(w.Workloads)-1])
	case 12:
		if len(ap.RequestFor) > 0 && r.IntN(2) == 0 {
			i := r.IntN(len(ap.RequestFor))
			ap.RequestFor = slices.Delete(ap.RequestFor, i, i+1)
			return fmt.Sprintf("%s remove request_for %d", which, i)
		}
		ap.RequestFor = append(ap.RequestFor, Rule{Requesters: []string{selector(r)}, Beneficiaries: []string{selector(r)}, Owned: r.IntN(2) == 0})
		return fmt.Sprintf("%s add request_for %v", which, ap.RequestFor[len(ap.RequestFor)-1])
	case 13:
		if len(ap.RequestFor) == 0 {
			return "nothing"
		}
		rf := &ap.RequestFor[r.IntN(len(ap.RequestFor))]
		switch r.IntN(3) {
		case 0:
			rf.Owned = !rf.Owned
			if !rf.Owned && len(rf.Beneficiaries) == 0 {
				rf.Beneficiaries = []string{selector(r)}
			}
		case 1:
			rf.Requesters = editSelectors(r, rf.Requesters, 1)
		default:
			min := 0
			if !rf.Owned {
				min = 1
			}
			rf.Beneficiaries = editSelectors(r, rf.Beneficiaries, min)
		}
		return fmt.Sprintf("%s request_for now %+v", which, *rf)
	case 14:
		if w.Directory == nil {
			w.Directory = map[string][]string{}
		}
		s := People[r.IntN(len(People))]
		if !slices.Contains(w.Members[g], s) {
			w.Directory[s] = append(w.Directory[s], g)
			w.Members[g] = append(w.Members[g], s)
			sort.Strings(w.Members[g])
		}
		return fmt.Sprintf("directory puts %s in %s", s, g)
	default:
		if w.IdP == nil {
			return "nothing"
		}
		i := idpGroups[r.IntN(len(idpGroups))]
		if slices.Contains(w.IdP[g], i) {
			w.IdP[g] = slices.DeleteFunc(w.IdP[g], func(x string) bool { return x == i })
		} else {
			w.IdP[g] = append(w.IdP[g], i)
			sort.Strings(w.IdP[g])
		}
		return fmt.Sprintf("%s idp_groups %v", g, w.IdP[g])
	}
}

// editSelectors adds or removes one selector, keeping at least min.
func editSelectors(r *rand.Rand, sels []string, min int) []string {
	if len(sels) > min && r.IntN(2) == 0 {
		i := r.IntN(len(sels))
		return slices.Delete(slices.Clone(sels), i, i+1)
	}
	return append(slices.Clone(sels), selector(r))
}

// Request is one request as the brute force sees it: who files, for whom, approved by whom.
type Request struct {
	Requester, Beneficiary string
	Approvers              []string
}

// Weaker looks for a request that could be approved under b and not under a: b lets it be
// filed and its approvers fill every step of b, and a refuses it or its approvers do not fill
// a's steps. It tries every requester and beneficiary among every subject either world knows
// (ClaimOnly people included), and every set of distinct approvers as large as b needs
// (quorum is monotone: a larger set that b accepts contains one of that size).
func Weaker(a, b *World) (Request, bool) {
	subjects := append(Subjects(), ClaimOnly...)
	slotsB, slotsA := b.Slots(), a.Slots()
	for _, req := range subjects {
		for _, ben := range subjects {
			if !b.MayFile(req, ben) {
				continue
			}
			fileA := a.MayFile(req, ben)
			var cands []string
			var eligB, eligA [][]int
			for _, s := range subjects {
				if e := b.Eligible(s, req, ben); len(e) > 0 {
					cands = append(cands, s)
					eligB = append(eligB, e)
					eligA = append(eligA, a.Eligible(s, req, ben))
				}
			}
			var found []int
			choose(len(cands), len(slotsB), func(set []int) bool {
				if fills(set, eligB, slotsB) && (!fileA || !fills(set, eligA, slotsA)) {
					found = slices.Clone(set)
					return true
				}
				return false
			})
			if found != nil {
				var who []string
				for _, i := range found {
					who = append(who, cands[i])
				}
				return Request{Requester: req, Beneficiary: ben, Approvers: who}, true
			}
		}
	}
	return Request{}, false
}

// choose calls f with every k-subset of 0..n-1 until f returns true.
func choose(n, k int, f func([]int) bool) bool {
	set := make([]int, 0, k)
	var rec func(from int) bool
	rec = func(from int) bool {
		if len(set) == k {
			return f(set)
		}
		for i := from; i <= n-(k-len(set)); i++ {
			set = append(set, i)
			if rec(i + 1) {
				return true
			}
			set = set[:len(set)-1]
		}
		return false
	}
	return rec(0)
}

// fills reports whether the people of set, each in at most one slot and only in a slot of a
// step they are eligible for, can fill every slot (brute force over assignments).
func fills(set []int, elig [][]int, slots []int) bool {
	if len(slots) > len(set) {
		return false
	}
	used := make([]bool, len(set))
	var rec func(slot int) bool
	rec = func(slot int) bool {
		if slot == len(slots) {
			return true
		}
		for i, p := range set {
			if !used[i] && slices.Contains(elig[p], slots[slot]) {
				used[i] = true
				if rec(slot + 1) {
					return true
				}
				used[i] = false
			}
		}
		return false
	}
	return rec(0)
}
