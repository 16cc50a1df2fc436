package policy

import (
	"fmt"
	"sort"
	"strings"
)

// The parties to a request are its requester and its beneficiary. This file holds who they are
// in the policy's eyes: the owners of machine subjects (kind: Workload), who may file a request
// for whom (an approval policy's request_for), and which approvers their ties exclude. Invariant
// 1 (quorum) rests on it: an approver tied to either party never counts.

// Workload declares who owns machine subjects: Kubernetes service accounts
// (k8s:<cluster>/<namespace>/<serviceaccount>) and API clients (service:<name>). The people in
// its owner groups are who a machine acts for: they never approve its requests, and an approval
// policy that excludes a party's groups excludes theirs too.
type Workload struct {
	Name        string `yaml:"-"`
	Description string `yaml:"description"`
	// Subjects are machine subjects or patterns in which '*' stands for one whole segment
	// (k8s:*/research/*, service:*).
	Subjects []string `yaml:"subjects"`
	// Owners are groups; their members own the workloads.
	Owners []string `yaml:"owners"`

	src source
}

// RequestFor lets Requesters file requests for Beneficiaries. Without any such rule a person
// may file requests only for themselves.
type RequestFor struct {
	// Requesters are who may file: subjects, machine patterns or group:NAME.
	Requesters []string `yaml:"requesters"`
	// Beneficiaries are for whom: subjects, machine patterns or group:NAME.
	Beneficiaries []string `yaml:"beneficiaries"`
	// OwnedWorkloads adds the machine subjects a Workload document says the requester owns
	// (the requester is in one of its owner groups).
	OwnedWorkloads bool `yaml:"owned_workloads"`
}

// Exclusion names (ApprovalPolicy.Exclude).
const (
	ExcludeRequester         = "requester"
	ExcludeBeneficiary       = "beneficiary"
	ExcludeRequesterGroups   = "requester_groups"
	ExcludeBeneficiaryGroups = "beneficiary_groups"
)

// IsMachine reports whether subject is a machine (a workload or an API client), not a person.
func IsMachine(subject string) bool { return SubjectKind(subject) != KindUser }

// ValidateSubjectPattern checks a subject or a machine-subject pattern: a valid subject, or
// k8s:<cluster>/<namespace>/<serviceaccount> or service:<name> in which any segment may be
// exactly "*".
func ValidateSubjectPattern(s string) error {
	if !strings.Contains(s, "*") {
		return ValidateSubject(s)
	}
	switch SubjectKind(s) {
	case KindWorkload:
		parts := strings.Split(strings.TrimPrefix(s, "k8s:"), "/")
		if len(parts) != 3 {
			return fmt.Errorf("workload pattern %q must look like k8s:<cluster>/<namespace>/<serviceaccount>, any of them \"*\"", s)
		}
		for _, part := range parts {
			if part == "*" {
				continue
			}
			if err := ValidateName(part); err != nil {
				return fmt.Errorf("workload pattern %q: %v (a segment is a name or exactly \"*\")", s, err)
			}
		}
		return nil
	case KindService:
		if s != "service:*" {
			return fmt.Errorf("service pattern %q: write service:* for every API client, or name one", s)
		}
		return nil
	}
	return fmt.Errorf("%q: only machine subjects (k8s:…, service:…) may be patterns; name people one by one or use group:NAME", s)
}

// MatchSubject reports whether subject matches pattern (see ValidateSubjectPattern): equal, or
// equal segment by segment where the pattern's segment is "*".
func MatchSubject(pattern, subject string) bool {
	if pattern == subject {
		return true
	}
	if !strings.Contains(pattern, "*") || SubjectKind(pattern) != SubjectKind(subject) {
		return false
	}
	if pattern == "service:*" {
		return true
	}
	ps := strings.Split(strings.TrimPrefix(pattern, "k8s:"), "/")
	ss := strings.Split(strings.TrimPrefix(subject, "k8s:"), "/")
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

func (p *Policy) validateWorkload(w *Workload) {
	if len(w.Subjects) == 0 {
		w.src.errorf("subjects", "list the machine subjects this declares: k8s:<cluster>/<namespace>/<serviceaccount> or service:<name>, a segment may be \"*\"")
	}
	for i, s := range w.Subjects {
		field := fmt.Sprintf("subjects[%d]", i)
		if err := ValidateSubjectPattern(s); err != nil {
			w.src.errorf(field, "%v", err)
		} else if !IsMachine(s) {
			w.src.errorf(field, "%q is a person; a Workload declares machine subjects (k8s:<cluster>/<namespace>/<serviceaccount> or service:<name>)", s)
		}
	}
	if len(w.Owners) == 0 {
		w.src.errorf("owners", "list the groups whose members own these workloads; an unowned workload cannot be shown independent of its approvers")
	}
	for i, g := range w.Owners {
		p.groupRef(w.src, fmt.Sprintf("owners[%d]", i), g)
	}
}

// validateSelector checks a request_for selector: group:NAME, a subject or a machine pattern.
func (p *Policy) validateSelector(src source, field, sel string) {
	if g, ok := strings.CutPrefix(sel, "group:"); ok {
		p.groupRef(src, field, g)
		return
	}
	if err := ValidateSubjectPattern(sel); err != nil {
		src.errorf(field, "%v (or group:NAME)", err)
	}
}

// validateParties checks an approval policy's exclusions and request_for rules.
func (p *Policy) validateParties(a *ApprovalPolicy) {
	for i, e := range a.Exclude {
		switch e {
		case ExcludeRequester, ExcludeBeneficiary:
		case ExcludeRequesterGroups:
			a.excludeRequesterGroups = true
		case ExcludeBeneficiaryGroups:
			a.excludeBeneficiaryGroups = true
		default:
			a.src.errorf(fmt.Sprintf("exclude[%d]", i), "unknown exclusion %q; use requester, beneficiary, requester_groups or beneficiary_groups", e)
		}
	}
	for i, rf := range a.RequestFor {
		field := fmt.Sprintf("request_for[%d]", i)
		if len(rf.Requesters) == 0 {
			a.src.errorf(field+".requesters", "list who may file requests for others: users, group:NAME, service:NAME or k8s:… patterns")
		}
		for j, s := range rf.Requesters {
			p.validateSelector(a.src, fmt.Sprintf("%s.requesters[%d]", field, j), s)
		}
		if len(rf.Beneficiaries) == 0 && !rf.OwnedWorkloads {
			a.src.errorf(field+".beneficiaries", "list for whom they may file (users, group:NAME, k8s:… or service:… patterns), or set owned_workloads: true")
		}
		for j, s := range rf.Beneficiaries {
			p.validateSelector(a.src, fmt.Sprintf("%s.beneficiaries[%d]", field, j), s)
		}
	}
}

// selects reports whether a request_for selector covers subject.
func (p *Policy) selects(sel, subject string) bool {
	if g, ok := strings.CutPrefix(sel, "group:"); ok {
		return p.InGroup(subject, g)
	}
	return MatchSubject(sel, subject)
}

// Workloads returns every Workload declaration, sorted by name.
func (p *Policy) Workloads() []*Workload { return sortedValues(p.workloads) }

// WorkloadOwners returns the owner groups of a machine subject, the union over every Workload
// declaration whose subjects match it (sorted), and the names of those declarations. Both are
// empty for a person or an undeclared machine.
func (p *Policy) WorkloadOwners(subject string) (owners, declaredBy []string) {
	if !IsMachine(subject) {
		return nil, nil
	}
	set := map[string]bool{}
	for _, w := range p.workloadList {
		for _, pat := range w.Subjects {
			if MatchSubject(pat, subject) {
				declaredBy = append(declaredBy, w.Name)
				for _, g := range w.Owners {
					set[g] = true
				}
				break
			}
		}
	}
	return keys(set), declaredBy
}

// party is one side of a request as exclusions see it.
type party struct {
	role    string // "requester" or "beneficiary"
	subject string
	// owners are the owner groups of a machine party, and people their members.
	owners, people []string
	// unowned is a machine party that no Workload declares.
	unowned bool
}

func (p *Policy) party(role, subject string) party {
	pt := party{role: role, subject: subject}
	if !IsMachine(subject) {
		return pt
	}
	pt.owners, _ = p.WorkloadOwners(subject)
	pt.unowned = len(pt.owners) == 0
	seen := map[string]bool{}
	for _, g := range pt.owners {
		for _, m := range p.members[g] {
			if !seen[m] {
				seen[m] = true
				pt.people = append(pt.people, m)
			}
		}
	}
	sort.Strings(pt.people)
	return pt
}

// exclusion says why approver may not count on a request by requester for beneficiary under ap,
// or "" when nothing excludes them. It is the one place exclusions are decided: EligibleSteps
// (and so Tally, the workflow and Explain) all come here.
//
// Always excluded: the requester, the beneficiary, and for a machine party the people who own
// it (they are who it acts for). With requester_groups (beneficiary_groups) also anyone who
// shares a group with the requester (beneficiary) or, for a machine, with the machine or any of
// its owners; a machine party that no Workload declares then excludes everyone, since nobody can
// be shown independent of it (fail safe).
func (p *Policy) exclusion(ap *ApprovalPolicy, approver, requester, beneficiary string) string {
	switch {
	case approver == requester:
		return "is the requester"
	case approver == beneficiary:
		return "is the beneficiary"
	}
	sides := []party{p.party("requester", requester)}
	groupsOn := []bool{ap.excludeRequesterGroups}
	if beneficiary != requester {
		sides = append(sides, p.party("beneficiary", beneficiary))
		groupsOn = append(groupsOn, ap.excludeBeneficiaryGroups)
	} else if ap.excludeBeneficiaryGroups {
		groupsOn[0] = true
	}
	mine := p.memberOf[approver]
	for _, pt := range sides {
		for _, g := range pt.owners {
			if contains(mine, g) {
				return fmt.Sprintf("owns the %s %s (a member of its owner group %q)", pt.role, pt.subject, g)
			}
		}
	}
	for i, pt := range sides {
		if !groupsOn[i] {
			continue
		}
		if pt.unowned {
			return fmt.Sprintf("cannot be shown independent of the %s %s: no Workload document declares who owns it (%s_groups); declare its owners", pt.role, pt.subject, pt.role)
		}
		for _, g := range mine {
			if contains(p.memberOf[pt.subject], g) {
				return fmt.Sprintf("shares group %q with the %s", g, pt.role)
			}
		}
		for _, o := range pt.people {
			for _, g := range mine {
				if contains(p.memberOf[o], g) {
					return fmt.Sprintf("shares group %q with %s, an owner of the %s %s", g, o, pt.role, pt.subject)
				}
			}
		}
	}
	return ""
}

// NotAllowedForError refuses a request filed for someone else that the policy does not allow.
type NotAllowedForError struct {
	Requester, Beneficiary, Role, Policy string
	Reason                               string
}

func (e *NotAllowedForError) Error() string {
	return fmt.Sprintf("%s may not file a request for %s for role %q: %s", e.Requester, e.Beneficiary, e.Role, e.Reason)
}

// MayRequestFor reports whether requester may file a request for beneficiary for the role of
// req, or a *NotAllowedForError saying why not. Anyone may file for themselves; filing for
// someone else needs a request_for rule of every approval policy matching the role (so a looser
// policy never lets through what a stricter one forbids). A machine party that no Workload
// declares is refused where the policy excludes that party's groups: nobody could ever be
// eligible to approve (see exclusion). The workflow (access.Service.Create, renewals) and
// Explain both ask here.
func (p *Policy) MayRequestFor(req *Requirement, requester, beneficiary string) error {
	refuse := func(ap *ApprovalPolicy, format string, args ...any) error {
		return &NotAllowedForError{Requester: requester, Beneficiary: beneficiary, Role: req.Role, Policy: ap.Name, Reason: fmt.Sprintf(format, args...)}
	}
	ap := req.Policy
	for _, side := range []struct {
		role, subject string
		on            bool
	}{{"requester", requester, ap.excludeRequesterGroups || (requester == beneficiary && ap.excludeBeneficiaryGroups)}, {"beneficiary", beneficiary, ap.excludeBeneficiaryGroups}} {
		if side.on && IsMachine(side.subject) {
			if owners, _ := p.WorkloadOwners(side.subject); len(owners) == 0 {
				return refuse(ap, "approval policy %q excludes the %s's groups (%s_groups), and no Workload document declares who owns %s, so nobody could ever approve; declare its owners (kind: Workload)",
					ap.Name, side.role, side.role, side.subject)
			}
		}
	}
	if requester == beneficiary {
		return nil
	}
	for _, m := range req.Matched {
		if p.requestForAllows(m, requester, beneficiary) {
			continue
		}
		if len(m.RequestFor) == 0 {
			return refuse(m, "approval policy %q lets people file requests only for themselves; ask %s to request it, or add a request_for rule to the policy", m.Name, beneficiary)
		}
		return refuse(m, "no request_for rule of approval policy %q lets %s file for %s", m.Name, requester, beneficiary)
	}
	return nil
}

func (p *Policy) requestForAllows(ap *ApprovalPolicy, requester, beneficiary string) bool {
	for _, rf := range ap.RequestFor {
		who := false
		for _, s := range rf.Requesters {
			who = who || p.selects(s, requester)
		}
		if !who {
			continue
		}
		for _, s := range rf.Beneficiaries {
			if p.selects(s, beneficiary) {
				return true
			}
		}
		if rf.OwnedWorkloads && IsMachine(beneficiary) {
			owners, _ := p.WorkloadOwners(beneficiary)
			for _, g := range owners {
				if p.InGroup(requester, g) {
					return true
				}
			}
		}
	}
	return false
}
