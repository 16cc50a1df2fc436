package policy

import (
	"sort"
	"strings"
	"time"
)

// Tally is the outcome of counting approvals against an approval policy.
type Tally struct {
	Steps []StepTally `json:"steps"`
	// Satisfied is true when every step has Count distinct approvers assigned.
	Satisfied bool `json:"satisfied"`
	// Ignored lists approvals that did not count, and why.
	Ignored []Ignored `json:"ignored,omitempty"`
}

// StepTally is one step's count.
type StepTally struct {
	Name    string   `json:"name,omitempty"`
	From    []string `json:"from"`
	Need    int      `json:"need"`
	Counted []string `json:"counted"`
}

// Ignored is an approval that does not count.
type Ignored struct {
	Approver string `json:"approver"`
	Why      string `json:"why"`
}

// Tally counts approvers against ap for a request by requester for beneficiary.
//
// Each approver counts at most once in all (invariant 1: distinct approvers), and only towards a
// step whose groups they belong to. Because one person may belong to the groups of several
// steps, the assignment is a bipartite matching (approvers to step slots), so that an approver in
// both "owners" and "security" never blocks a step another approver could not fill. Ineligible
// approvers (requester, beneficiary, excluded group members, outsiders) are listed in Ignored.
func (p *Policy) Tally(ap *ApprovalPolicy, requester, beneficiary string, approvers []string) Tally {
	return p.tally(ap, approvers, func(a string) ([]int, string) { return p.EligibleSteps(ap, a, requester, beneficiary) })
}

// tally is the matching behind Tally and TallyChange: eligible says which steps an approver may
// count towards, or why none.
func (p *Policy) tally(ap *ApprovalPolicy, approvers []string, eligibleSteps func(string) ([]int, string)) Tally {
	t := Tally{Steps: make([]StepTally, len(ap.Steps))}
	var slotStep []int // slot → step
	for i, st := range ap.Steps {
		t.Steps[i] = StepTally{Name: st.Name, From: st.From, Need: st.Count, Counted: []string{}}
		for k := 0; k < st.Count; k++ {
			slotStep = append(slotStep, i)
		}
	}
	people := append([]string(nil), approvers...)
	sort.Strings(people)
	people = dedupe(people)
	var eligible []string
	canFill := map[string][]int{} // approver → slots
	for _, a := range people {
		steps, why := eligibleSteps(a)
		if len(steps) == 0 {
			t.Ignored = append(t.Ignored, Ignored{Approver: a, Why: why})
			continue
		}
		eligible = append(eligible, a)
		for s, step := range slotStep {
			if contains2(steps, step) {
				canFill[a] = append(canFill[a], s)
			}
		}
	}
	// Kuhn's augmenting paths: sizes are tiny (people who reviewed one request).
	slotOwner := make([]string, len(slotStep))
	var try func(a string, seen map[int]bool) bool
	try = func(a string, seen map[int]bool) bool {
		for _, s := range canFill[a] {
			if seen[s] {
				continue
			}
			seen[s] = true
			if slotOwner[s] == "" || try(slotOwner[s], seen) {
				slotOwner[s] = a
				return true
			}
		}
		return false
	}
	filled := 0
	for _, a := range eligible {
		if try(a, map[int]bool{}) {
			filled++
		}
	}
	assigned := map[string]bool{}
	for s, a := range slotOwner {
		if a != "" {
			st := slotStep[s]
			t.Steps[st].Counted = append(t.Steps[st].Counted, a)
			assigned[a] = true
		}
	}
	for _, a := range eligible {
		if !assigned[a] {
			t.Ignored = append(t.Ignored, Ignored{Approver: a, Why: "the steps they could count towards are already full"})
		}
	}
	for i := range t.Steps {
		sort.Strings(t.Steps[i].Counted)
	}
	t.Satisfied = filled == len(slotStep)
	return t
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

func contains2(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// FormatDuration prints a duration compactly: 8h, 1h30m, 45s, 1.5s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
