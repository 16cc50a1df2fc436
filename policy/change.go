package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Who counts on a change (invariant 1 applied to invariant 10). A change's parties are everyone
// its approval must be independent of: the author and committer of every commit in it, every
// Co-authored-by trailer, whoever asked for the review, and whoever pushes the update. None of
// them counts as an approver; where an approval policy excludes a party's groups
// (requester_groups or beneficiary_groups), neither does anyone sharing a group with any party.
// One person counts once, towards one slot of one step, however many groups they are in: the
// same bipartite matching as a request's (Tally).

// ChangeParty is someone a change must be approved independently of.
type ChangeParty struct {
	Subject string `json:"subject"`
	// Role says how they are tied to the change: "the requester", "the pusher", "the author of
	// commit 1a2b3c4d", "a co-author (Co-authored-by) of commit 1a2b3c4d".
	Role string `json:"role"`
}

// Party roles.
const (
	PartyRequester = "the requester"
	PartyPusher    = "the pusher"
)

// changeExclusion says why approver may not count on a change with these parties under ap, or ""
// when nothing excludes them. It is the one place the independence of a change is decided:
// ChangeEligibleSteps (and so TallyChange, the change workflow, the Git hook, offline
// verification and ExplainChange) come here.
func (p *Policy) changeExclusion(ap *ApprovalPolicy, approver string, parties []ChangeParty) string {
	for _, pt := range parties {
		if approver == pt.Subject {
			return "is " + pt.Role
		}
	}
	mine := p.memberOf[approver]
	// A machine party (a merge bot pushing) acts for its owners: they never count.
	for _, pt := range parties {
		if !IsMachine(pt.Subject) {
			continue
		}
		owners, _ := p.WorkloadOwners(pt.Subject)
		for _, g := range owners {
			if contains(mine, g) {
				return fmt.Sprintf("owns %s, %s (a member of its owner group %q)", pt.Subject, pt.Role, g)
			}
		}
	}
	if !ap.excludeRequesterGroups && !ap.excludeBeneficiaryGroups {
		return ""
	}
	for _, pt := range parties {
		pa := p.party(pt.Role, pt.Subject)
		if pa.unowned {
			return fmt.Sprintf("cannot be shown independent of %s, %s: no Workload document declares who owns it; declare its owners", pt.Subject, pt.Role)
		}
		for _, g := range mine {
			if contains(p.memberOf[pt.Subject], g) {
				return fmt.Sprintf("shares group %q with %s, %s", g, pt.Subject, pt.Role)
			}
		}
		for _, o := range pa.people {
			for _, g := range mine {
				if contains(p.memberOf[o], g) {
					return fmt.Sprintf("shares group %q with %s, an owner of %s (%s)", g, o, pt.Subject, pt.Role)
				}
			}
		}
	}
	return ""
}

// ChangeEligibleSteps returns the indexes of the steps of ap (a ChangeRequirement's Policy) that
// approver may count towards on a change with these parties; when there are none, why says the
// first reason.
func (p *Policy) ChangeEligibleSteps(ap *ApprovalPolicy, approver string, parties []ChangeParty) (steps []int, why string) {
	if why := p.changeExclusion(ap, approver, parties); why != "" {
		return nil, why
	}
	return p.memberSteps(ap, approver)
}

// TallyChange counts approvers against a change requirement's policy, with the change's
// parties excluded, as Tally does for a request.
func (p *Policy) TallyChange(ap *ApprovalPolicy, parties []ChangeParty, approvers []string) Tally {
	return p.tally(ap, approvers, func(a string) ([]int, string) { return p.ChangeEligibleSteps(ap, a, parties) })
}

// RuleTally counts approvers against a recorded rule (ChangeRule), offline: the verifier of a
// repository's history has the ledger's signed entries, not the policy. membership (subject →
// groups) and owners (machine party → owner groups) are what the server recorded beside the rule
// (ChangeFacts); the parties, their exclusions and the matching are those of TallyChange. A subject
// missing from membership belongs to no group; a machine party missing from owners is
// undeclared, so under a group exclusion it excludes everyone (fail safe).
func RuleTally(rule ChangeRule, membership, owners map[string][]string, parties []ChangeParty, approvers []string) Tally {
	p := &Policy{groups: map[string]*Group{}, workloads: map[string]*Workload{}, settings: &Settings{}}
	for m, gs := range owners {
		p.workloads[m] = &Workload{Name: m, Subjects: []string{m}, Owners: gs}
	}
	p.workloadList = sortedValues(p.workloads)
	for _, st := range rule.Steps {
		for _, g := range st.From {
			p.groups[g] = &Group{Name: g}
		}
	}
	for _, gs := range membership {
		for _, g := range gs {
			if p.groups[g] == nil {
				p.groups[g] = &Group{Name: g}
			}
		}
	}
	p.buildMembership(membership)
	ap := &ApprovalPolicy{Name: strings.Join(rule.Policies, "+"), Steps: rule.Steps, excludeRequesterGroups: rule.ExcludeGroups}
	return p.TallyChange(ap, parties, approvers)
}

// ChangeFacts returns what RuleTally needs besides the rule, as this policy sees it: the groups of every
// subject given (parties and approvers) and of the people who own a machine party, and the owner
// groups of every machine party.
func (p *Policy) ChangeFacts(subjects []string, parties []ChangeParty) (membership, owners map[string][]string) {
	membership, owners = map[string][]string{}, map[string][]string{}
	add := func(s string) {
		if _, ok := membership[s]; !ok {
			membership[s] = append([]string{}, p.memberOf[s]...)
		}
	}
	for _, s := range subjects {
		add(s)
	}
	for _, pt := range parties {
		add(pt.Subject)
		if IsMachine(pt.Subject) {
			os, _ := p.WorkloadOwners(pt.Subject)
			if len(os) > 0 {
				owners[pt.Subject] = os
			}
			for _, g := range os {
				for _, m := range p.members[g] {
					add(m)
				}
			}
		}
	}
	return membership, owners
}

// Members returns the subjects of group as the policy sees them (declared and brought by the
// directory), sorted. The slice must not be modified.
func (p *Policy) Members(group string) []string { return p.members[group] }

// ChangeExplanation is a dry run of the policy for a change: the rules it needs, who could
// approve each step and why others could not, and whether it could ever be approved. It is
// computed with the functions the Git hook and the change workflow use.
type ChangeExplanation struct {
	Repository   string            `json:"repository"`
	Ref          string            `json:"ref"`
	Paths        []string          `json:"paths"`
	Rules        []AppliedRule     `json:"rules"`
	Parties      []ChangeParty     `json:"parties"`
	Steps        []StepExplanation `json:"steps"`
	Exclusions   []string          `json:"exclusions"`
	StepUp       string            `json:"require_step_up,omitempty"`
	StepUpPolicy string            `json:"step_up_policy,omitempty"`
	Satisfiable  bool              `json:"satisfiable"`
}

// ExplainChange explains what a change of paths on ref of repository repo, with these parties,
// would need.
func (p *Policy) ExplainChange(repo, ref string, paths []string, parties []ChangeParty) (*ChangeExplanation, error) {
	for _, pt := range parties {
		if err := ValidateSubject(pt.Subject); err != nil {
			return nil, fmt.Errorf("%s: %w", pt.Role, err)
		}
	}
	req, err := p.ChangeRequirement(repo, ref, paths)
	if err != nil {
		return nil, err
	}
	ap := req.Policy
	e := &ChangeExplanation{Repository: repo, Ref: ref, Paths: append([]string{}, paths...), Rules: req.Rules, Parties: append([]ChangeParty{}, parties...),
		Exclusions: []string{"authors, committers and co-authors of its commits", "the requester", "the pusher", "owners of a machine party"}}
	if ap.excludeRequesterGroups || ap.excludeBeneficiaryGroups {
		e.Exclusions = append(e.Exclusions, "anyone sharing a group with a party")
	}
	if req.StepUp > 0 {
		e.StepUp, e.StepUpPolicy = FormatDuration(req.StepUp), req.StepUpPolicy
	}
	var everyone []string
	for i, st := range ap.Steps {
		se := StepExplanation{Name: st.Name, From: st.From, Count: st.Count, Eligible: []string{}}
		seen := map[string]bool{}
		for _, g := range st.From {
			for _, m := range p.members[g] {
				if seen[m] {
					continue
				}
				seen[m] = true
				steps, why := p.ChangeEligibleSteps(ap, m, parties)
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
	e.Satisfiable = p.TallyChange(ap, parties, everyone).Satisfied
	return e, nil
}
