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
		steps, why := p.EligibleSteps(ap, a, requester, beneficiary)
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

// Explanation is a dry run of the policy for one requester and role: what approval would be
// required, who could give it, and the allowed durations.
type Explanation struct {
	Requester   string            `json:"requester"`
	Role        string            `json:"role"`
	Resources   []ResourceSummary `json:"resources"`
	Policy      string            `json:"policy"`
	Matched     []string          `json:"matched_policies"`
	Steps       []StepExplanation `json:"steps"`
	Exclusions  []string          `json:"exclusions"`
	MinDuration string            `json:"min_duration"`
	Default     string            `json:"default_duration"`
	MaxDuration string            `json:"max_duration"`
	RequestTTL  string            `json:"request_ttl"`
	Renewable   bool              `json:"renewable"`
	Reason      bool              `json:"require_reason"`
	DenyCount   int               `json:"deny_count"`
	BreakGlass  string            `json:"break_glass"`
	Conditions  []string          `json:"conditions,omitempty"`
	// RequireStepUp is how recent an approver's multi-factor authentication must be ("" when
	// none is needed), and StepUpPolicy the matching policy that asks for it.
	RequireStepUp string `json:"require_step_up,omitempty"`
	StepUpPolicy  string `json:"step_up_policy,omitempty"`
	// Satisfiable is false when the eligible people cannot fill every step.
	Satisfiable bool `json:"satisfiable"`
}

// ResourceSummary names a resource and its tier.
type ResourceSummary struct {
	Name        string `json:"name"`
	Sensitivity string `json:"sensitivity"`
}

// StepExplanation says who is eligible for one step.
type StepExplanation struct {
	Name     string    `json:"name,omitempty"`
	From     []string  `json:"from"`
	Count    int       `json:"count"`
	Eligible []string  `json:"eligible"`
	Excluded []Ignored `json:"excluded,omitempty"`
}

// Explain is a dry run of the policy: what a request by requester for role would need.
func (p *Policy) Explain(requester, role string) (*Explanation, error) {
	if err := ValidateSubject(requester); err != nil {
		return nil, err
	}
	req, err := p.Requirement(role)
	if err != nil {
		return nil, err
	}
	ap := req.Policy
	e := &Explanation{
		Requester:   requester,
		Role:        role,
		Policy:      ap.Name,
		Exclusions:  []string{"requester", "beneficiary"},
		MinDuration: FormatDuration(ap.MinDuration.Std()),
		Default:     FormatDuration(ap.DefaultDuration.Std()),
		MaxDuration: FormatDuration(ap.MaxDuration.Std()),
		RequestTTL:  FormatDuration(ap.RequestTTL.Std()),
		Renewable:   ap.Renewable,
		Reason:      ap.RequireReason,
		DenyCount:   ap.DenyCount,
		BreakGlass:  "not allowed",
	}
	if ap.excludeRequesterGroups {
		e.Exclusions = append(e.Exclusions, "requester_groups")
	}
	if req.StepUp > 0 {
		e.RequireStepUp, e.StepUpPolicy = FormatDuration(req.StepUp), req.StepUpPolicy
	}
	if ap.BreakGlass.Allowed {
		e.BreakGlass = "allowed, up to " + FormatDuration(ap.BreakGlass.MaxDuration.Std())
	}
	for _, r := range req.Resources {
		e.Resources = append(e.Resources, ResourceSummary{Name: r.Name, Sensitivity: r.Sensitivity.String()})
	}
	for _, m := range req.Matched {
		e.Matched = append(e.Matched, m.Name)
	}
	for _, c := range ap.Conditions {
		e.Conditions = append(e.Conditions, c.Expression)
	}
	var everyone []string
	for i, st := range ap.Steps {
		se := StepExplanation{Name: st.Name, From: st.From, Count: st.Count, Eligible: []string{}}
		seen := map[string]bool{}
		for _, g := range st.From {
			for _, m := range p.groups[g].Members {
				if seen[m] {
					continue
				}
				seen[m] = true
				steps, why := p.EligibleSteps(ap, m, requester, requester)
				if contains2(steps, i) {
					se.Eligible = append(se.Eligible, m)
					everyone = append(everyone, m)
				} else {
					se.Excluded = append(se.Excluded, Ignored{Approver: m, Why: why})
				}
			}
		}
		sort.Strings(se.Eligible)
		e.Steps = append(e.Steps, se)
	}
	e.Satisfiable = p.Tally(ap, requester, requester, everyone).Satisfied
	return e, nil
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
