package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Explanation is a dry run of the policy for one requester, beneficiary and role: whether the
// requester may file the request, what approval it would need, who could give it, and the
// allowed durations. It is computed with the functions the workflow uses (MayRequestFor,
// EligibleSteps, Tally), so it always says what the workflow would do.
type Explanation struct {
	Requester   string `json:"requester"`
	Beneficiary string `json:"beneficiary"`
	Role        string `json:"role"`
	// BeneficiaryOwners are the owner groups of a machine beneficiary (kind: Workload).
	BeneficiaryOwners []string          `json:"beneficiary_owners,omitempty"`
	Resources         []ResourceSummary `json:"resources"`
	Policy            string            `json:"policy"`
	Matched           []string          `json:"matched_policies"`
	// MayFile says whether the requester may file this request (for themselves always; for
	// someone else where request_for allows), and Filing why or why not.
	MayFile     bool              `json:"may_file"`
	Filing      string            `json:"filing"`
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
	// BreakGlassPaged names who is paged at once when break-glass is used: the group
	// (notifications.break_glass_group) and its members; empty when break-glass is not allowed.
	BreakGlassPaged      string   `json:"break_glass_paged,omitempty"`
	BreakGlassPagedUsers []string `json:"break_glass_paged_members,omitempty"`
	Conditions           []string `json:"conditions,omitempty"`
	// RequireStepUp is how recent an approver's multi-factor authentication must be ("" when
	// none is needed), and StepUpPolicy the matching policy that asks for it.
	RequireStepUp string `json:"require_step_up,omitempty"`
	StepUpPolicy  string `json:"step_up_policy,omitempty"`
	// Satisfiable is false when the request may not be filed, or when the eligible people
	// cannot fill every step.
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

// Explain is a dry run of the policy: what a request by requester for beneficiary (the
// requester when empty) for role would need, and whether it could ever be approved.
func (p *Policy) Explain(requester, beneficiary, role string) (*Explanation, error) {
	if err := ValidateSubject(requester); err != nil {
		return nil, fmt.Errorf("requester: %w", err)
	}
	if beneficiary == "" {
		beneficiary = requester
	}
	if err := ValidateSubject(beneficiary); err != nil {
		return nil, fmt.Errorf("beneficiary: %w", err)
	}
	req, err := p.Requirement(role)
	if err != nil {
		return nil, err
	}
	ap := req.Policy
	e := &Explanation{
		Requester:   requester,
		Beneficiary: beneficiary,
		Role:        role,
		Policy:      ap.Name,
		Exclusions:  []string{ExcludeRequester, ExcludeBeneficiary, "owners of a machine requester or beneficiary"},
		MinDuration: FormatDuration(ap.MinDuration.Std()),
		Default:     FormatDuration(ap.DefaultDuration.Std()),
		MaxDuration: FormatDuration(ap.MaxDuration.Std()),
		RequestTTL:  FormatDuration(ap.RequestTTL.Std()),
		Renewable:   ap.Renewable,
		Reason:      ap.RequireReason,
		DenyCount:   ap.DenyCount,
		BreakGlass:  "not allowed",
		MayFile:     true,
		Filing:      "for themselves",
	}
	e.BeneficiaryOwners, _ = p.WorkloadOwners(beneficiary)
	if err := p.MayRequestFor(req, requester, beneficiary); err != nil {
		e.MayFile, e.Filing = false, err.Error()
	} else if requester != beneficiary {
		e.Filing = "for someone else, as request_for allows"
	}
	if ap.excludeRequesterGroups {
		e.Exclusions = append(e.Exclusions, ExcludeRequesterGroups)
	}
	if ap.excludeBeneficiaryGroups {
		e.Exclusions = append(e.Exclusions, ExcludeBeneficiaryGroups)
	}
	if req.StepUp > 0 {
		e.RequireStepUp, e.StepUpPolicy = FormatDuration(req.StepUp), req.StepUpPolicy
	}
	if ap.BreakGlass.Allowed {
		e.BreakGlass = "allowed, up to " + FormatDuration(ap.BreakGlass.MaxDuration.Std()) + ", for oneself only"
		e.BreakGlassPaged = p.Notifications().BreakGlassGroup
		e.BreakGlassPagedUsers = p.Members(e.BreakGlassPaged)
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
			// Members as the workflow sees them: declared, and brought from the identity
			// provider (WithDirectory).
			for _, m := range p.members[g] {
				if seen[m] {
					continue
				}
				seen[m] = true
				steps, why := p.EligibleSteps(ap, m, requester, beneficiary)
				if contains2(steps, i) {
					se.Eligible = append(se.Eligible, m)
					everyone = append(everyone, m)
				} else {
					se.Excluded = append(se.Excluded, Ignored{Approver: m, Why: why})
				}
			}
		}
		sort.Strings(se.Eligible)
		sort.Slice(se.Excluded, func(a, b int) bool { return se.Excluded[a].Approver < se.Excluded[b].Approver })
		e.Steps = append(e.Steps, se)
	}
	e.Satisfiable = e.MayFile && p.Tally(ap, requester, beneficiary, everyone).Satisfied
	return e, nil
}

// ExplainCommand is the command line that explains a request, for messages.
func ExplainCommand(requester, beneficiary, role string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rampart policy explain --requester %s --role %s", requester, role)
	if beneficiary != "" && beneficiary != requester {
		fmt.Fprintf(&b, " --beneficiary %s", beneficiary)
	}
	return b.String()
}
