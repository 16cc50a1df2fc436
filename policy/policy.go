// Package policy is Rampart's policy-as-code model: YAML documents (apiVersion
// rampart.dev/v1alpha1) describing groups, resources, roles, approval policies, standing bindings
// and settings, parsed, validated and compiled into an immutable *Policy.
//
// The package is pure: it does no I/O except through an fs.FS handed to Load, and a *Policy is
// safe for concurrent use. It upholds invariant 3 (no standing access to critical resources) at
// validation time: a StandingBinding whose roles reach a critical resource is an error. It
// supplies the facts invariant 1 (quorum) is checked against: who is eligible to approve which
// step of which request, who may file a request for whom (request_for), and who owns a machine
// party (kind: Workload) — one function each, used alike by the workflow and by Explain; where
// it cannot tell who is independent of a party it answers "nobody" (fail safe). For invariant 9
// it defines the role definition a grant pins and the rule that combines it with the current one
// (AllowsPinned); for invariant 11, the Settings that bound what one person can file. For
// invariant 10 it computes what a policy change does (Compare): who gains or loses what, and
// what a request for each role needs, each change marked WEAKENED, strengthened or neutral, and
// never neutral when some request could be approved under the new policy and not the old.
//
// Every validation error names the file, line, column and field path, and says what to do.
package policy

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Policy is a compiled, validated policy. It is immutable once returned by Parse.
type Policy struct {
	// Digest is the SHA-256 of the policy files (names and contents), hex encoded. The ledger
	// records it on every load.
	Digest string
	// DetectionRules are the policy's detection rules (kind DetectionRule), sorted by name.
	DetectionRules []*DetectionRule

	groups    map[string]*Group
	resources map[string]*Resource
	roles     map[string]*Role
	approvals map[string]*ApprovalPolicy
	bindings  map[string]*StandingBinding
	egress    map[string]*EgressPolicy
	workloads map[string]*Workload
	settings  *Settings
	// repositories are the Git repositories whose protected refs need approved changes.
	repositories map[string]*Repository
	ciIssuers    map[string]*CIIssuer
	pipelines    map[string]*Pipeline
	detections   map[string]*DetectionRule

	workloadList []*Workload  // workloads, sorted by name
	defCache     *definitions // role definitions and digests (pin.go)

	memberOf     map[string][]string                   // subject → groups, sorted
	members      map[string][]string                   // group → subjects, sorted
	perms        map[string]map[string][]string        // role → resource → actions ("*" = all)
	grantedBy    map[string][]string                   // resource → roles reaching it, sorted
	requirements map[string]*Requirement               // role → approval requirement
	standing     map[string][]Standing                 // subject → standing roles, via itself or groups
	protected    map[string]map[string]ProtectedVolume // namespace → kind/name → what it holds

	sortedNames  []string               // resource names, sorted, for pattern matching
	patternCache map[string][]*Resource // pattern → matching resources, sorted
}

// Standing is one role a subject holds through a standing binding.
type Standing struct {
	Binding string
	Role    string
}

// Requirement is what a request for a role must satisfy: the strictest approval policy matching
// any resource the role reaches.
type Requirement struct {
	Role      string
	Resources []*Resource
	// Policy is the policy that applies, as it applies to this role: when the role reaches a
	// critical resource, with beneficiary_groups on whatever the policy's exclude says.
	Policy *ApprovalPolicy
	// Matched lists every matching policy, strictest first (Policy is Matched[0]).
	Matched []*ApprovalPolicy
	// StepUp is the shortest require_step_up of all the Matched policies, not only of Policy
	// (zero when none sets one), and StepUpPolicy names the policy it comes from. Every
	// approval of a request for the role needs a multi-factor authentication at most StepUp
	// old. Taking the shortest across all matches means a policy that outranks another on
	// quorum can never switch off the other's step-up; it never makes a request impossible to
	// approve, since any eligible approver can step up.
	StepUp       time.Duration
	StepUpPolicy string
	// Uncovered names the resources the role reaches that no approval policy matches. A role
	// with any is not requestable: otherwise a role reaching a critical resource nobody wrote
	// an approval policy for, and an internal one a lax policy covers, would be granted
	// whole under the lax policy (invariant 1).
	Uncovered []string
}

func (p *Policy) compile() {
	p.workloadList = sortedValues(p.workloads)
	p.DetectionRules = sortedValues(p.detections)
	p.defCache = &definitions{defs: map[string]*RoleDefinition{}, digests: map[string]string{}}
	p.buildMembership(nil)
	p.compileProtected()

	p.perms = map[string]map[string][]string{}
	grantedBy := map[string]map[string]bool{}
	for _, r := range p.roles {
		byRes := map[string][]string{}
		for _, rule := range r.Rules {
			for _, pat := range rule.Resources {
				for _, res := range p.matchResources(pat) {
					byRes[res.Name] = mergeActions(byRes[res.Name], rule.Actions)
					if grantedBy[res.Name] == nil {
						grantedBy[res.Name] = map[string]bool{}
					}
					grantedBy[res.Name][r.Name] = true
				}
			}
		}
		p.perms[r.Name] = byRes
	}
	p.grantedBy = map[string][]string{}
	for res, roles := range grantedBy {
		p.grantedBy[res] = keys(roles)
	}

	for _, ap := range p.approvals {
		ap.critical = ap
		if !ap.excludeBeneficiaryGroups {
			c := *ap
			c.excludeBeneficiaryGroups = true
			c.critical = &c
			ap.critical = &c
		}
	}
	p.requirements = map[string]*Requirement{}
	for _, r := range p.roles {
		req := &Requirement{Role: r.Name, Resources: p.roleResources(r)}
		covered := map[string]bool{}
		for _, ap := range p.approvals {
			matched := false
			for _, res := range req.Resources {
				if ap.Matches(res) {
					matched, covered[res.Name] = true, true
				}
			}
			if matched {
				req.Matched = append(req.Matched, ap)
			}
		}
		for _, res := range req.Resources {
			if !covered[res.Name] {
				req.Uncovered = append(req.Uncovered, res.Name)
			}
		}
		if len(req.Matched) > 0 {
			sort.Slice(req.Matched, func(i, j int) bool { return Stricter(req.Matched[i], req.Matched[j]) })
			req.Policy = req.Matched[0]
			for _, res := range req.Resources {
				if res.Sensitivity == Critical {
					req.Policy = req.Policy.critical
					break
				}
			}
		}
		for _, ap := range req.Matched { // strictest first: of equal step-ups, the stricter policy is named
			if d := ap.RequireStepUp.Std(); d > 0 && (req.StepUp == 0 || d < req.StepUp) {
				req.StepUp, req.StepUpPolicy = d, ap.Name
			}
		}
		p.requirements[r.Name] = req
	}

}

// buildMembership computes group membership and standing roles from the declared members and,
// if given, a directory of groups learned from the identity provider (subject → policy groups).
func (p *Policy) buildMembership(dir map[string][]string) {
	member := map[string]map[string]bool{}
	add := func(subject, group string) {
		if member[subject] == nil {
			member[subject] = map[string]bool{}
		}
		member[subject][group] = true
	}
	for _, g := range p.groups {
		for _, m := range g.Members {
			add(m, g.Name)
		}
	}
	for subject, groups := range dir {
		for _, g := range groups {
			if p.groups[g] != nil {
				add(subject, g)
			}
		}
	}
	p.memberOf = make(map[string][]string, len(member))
	members := map[string][]string{}
	for subject, gs := range member {
		p.memberOf[subject] = keys(gs)
		for g := range gs {
			members[g] = append(members[g], subject)
		}
	}
	for _, ms := range members {
		sort.Strings(ms)
	}
	p.members = members
	p.standing = map[string][]Standing{}
	for _, b := range p.bindings {
		for _, s := range b.Subjects {
			var subjects []string
			if g, ok := strings.CutPrefix(s, "group:"); ok {
				for subject, gs := range member {
					if gs[g] {
						subjects = append(subjects, subject)
					}
				}
			} else {
				subjects = []string{s}
			}
			for _, subj := range subjects {
				for _, role := range b.Roles {
					p.standing[subj] = append(p.standing[subj], Standing{Binding: b.Name, Role: role})
				}
			}
		}
	}
	for _, st := range p.standing {
		sort.Slice(st, func(i, j int) bool {
			if st[i].Binding != st[j].Binding {
				return st[i].Binding < st[j].Binding
			}
			return st[i].Role < st[j].Role
		})
	}
}

// WithDirectory returns a copy of the policy in which subjects also belong to the groups the
// directory gives them (policy groups learned from the identity provider at sign-in, see
// MapIdPGroups), on top of the members the policy declares. Everything else is shared. Approver
// eligibility, admin and auditor rights, and standing bindings all follow the combined
// membership.
func (p *Policy) WithDirectory(dir map[string][]string) *Policy {
	c := *p
	c.buildMembership(dir)
	return &c
}

// MapIdPGroups returns the policy groups that the identity provider's groups map onto (each
// Group's idp_groups), sorted.
func (p *Policy) MapIdPGroups(idp []string) []string {
	set := map[string]bool{}
	for _, g := range p.groups {
		for _, want := range g.IdPGroups {
			if contains(idp, want) {
				set[g.Name] = true
			}
		}
	}
	return keys(set)
}

func mergeActions(have, add []string) []string {
	for _, a := range add {
		if !contains(have, a) {
			have = append(have, a)
		}
	}
	if contains(have, "*") {
		return []string{"*"}
	}
	sort.Strings(have)
	return have
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Matches reports whether the approval policy covers the resource.
func (ap *ApprovalPolicy) Matches(r *Resource) bool {
	m := ap.Match
	if m.empty() {
		return false // a policy for changes only (Repository rules) covers no resource
	}
	if len(m.Sensitivity) > 0 {
		ok := false
		for _, s := range m.Sensitivity {
			ok = ok || s == r.Sensitivity
		}
		if !ok {
			return false
		}
	}
	if len(m.Tags) > 0 {
		ok := false
		for _, t := range m.Tags {
			ok = ok || r.HasTag(t)
		}
		if !ok {
			return false
		}
	}
	if len(m.Resources) > 0 {
		ok := false
		for _, pat := range m.Resources {
			ok = ok || MatchPattern(pat, r.Name)
		}
		if !ok {
			return false
		}
	}
	return true
}

// TotalApprovals is the number of distinct approvers the policy needs.
func (ap *ApprovalPolicy) TotalApprovals() int {
	n := 0
	for _, s := range ap.Steps {
		n += s.Count
	}
	return n
}

// ExcludesRequesterGroups reports whether approvers sharing a group with the requester are
// excluded.
func (ap *ApprovalPolicy) ExcludesRequesterGroups() bool { return ap.excludeRequesterGroups }

// ExcludesBeneficiaryGroups reports whether approvers sharing a group with the beneficiary (or
// with the owners of a machine beneficiary) are excluded. For the policy of a Requirement whose
// role reaches a critical resource it is always true.
func (ap *ApprovalPolicy) ExcludesBeneficiaryGroups() bool { return ap.excludeBeneficiaryGroups }

// Stricter reports whether a is stricter than b. The order, first difference wins: more distinct
// approvers; more steps; break-glass not allowed; shorter max_duration; reason required; not
// renewable; shorter request_ttl; more conditions; step-up required, then a shorter
// require_step_up; then name, so the choice is deterministic. (Whichever policy wins, the
// shortest require_step_up of all matching policies applies: see Requirement.StepUp.)
func Stricter(a, b *ApprovalPolicy) bool {
	if x, y := a.TotalApprovals(), b.TotalApprovals(); x != y {
		return x > y
	}
	if x, y := len(a.Steps), len(b.Steps); x != y {
		return x > y
	}
	if a.BreakGlass.Allowed != b.BreakGlass.Allowed {
		return !a.BreakGlass.Allowed
	}
	if a.MaxDuration != b.MaxDuration {
		return a.MaxDuration < b.MaxDuration
	}
	if a.RequireReason != b.RequireReason {
		return a.RequireReason
	}
	if a.Renewable != b.Renewable {
		return !a.Renewable
	}
	if a.RequestTTL != b.RequestTTL {
		return a.RequestTTL < b.RequestTTL
	}
	if x, y := len(a.Conditions), len(b.Conditions); x != y {
		return x > y
	}
	if x, y := a.RequireStepUp, b.RequireStepUp; x != y {
		return y == 0 || (x != 0 && x < y)
	}
	return a.Name < b.Name
}

// Settings returns the deployment settings.
func (p *Policy) Settings() Settings { return *p.settings }

// Group returns a group by name.
func (p *Policy) Group(name string) (*Group, bool) { g, ok := p.groups[name]; return g, ok }

// Resource returns a resource by name.
func (p *Policy) Resource(name string) (*Resource, bool) { r, ok := p.resources[name]; return r, ok }

// Role returns a role by name.
func (p *Policy) Role(name string) (*Role, bool) { r, ok := p.roles[name]; return r, ok }

// ApprovalPolicy returns an approval policy by name.
func (p *Policy) ApprovalPolicy(name string) (*ApprovalPolicy, bool) {
	a, ok := p.approvals[name]
	return a, ok
}

// Groups returns every group, sorted by name.
func (p *Policy) Groups() []*Group { return sortedValues(p.groups) }

// Resources returns every resource, sorted by name.
func (p *Policy) Resources() []*Resource { return sortedValues(p.resources) }

// Roles returns every role, sorted by name.
func (p *Policy) Roles() []*Role { return sortedValues(p.roles) }

// ApprovalPolicies returns every approval policy, sorted by name.
func (p *Policy) ApprovalPolicies() []*ApprovalPolicy { return sortedValues(p.approvals) }

// StandingBindings returns every standing binding, sorted by name.
func (p *Policy) StandingBindings() []*StandingBinding { return sortedValues(p.bindings) }

func sortedValues[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, k := range keys(m) {
		out = append(out, m[k])
	}
	return out
}

// GroupsOf returns the groups subject belongs to, sorted. The slice must not be modified.
func (p *Policy) GroupsOf(subject string) []string { return p.memberOf[subject] }

// InGroup reports whether subject is a member of group.
func (p *Policy) InGroup(subject, group string) bool {
	return contains(p.memberOf[subject], group)
}

// IsAdmin reports whether subject is in the admin group.
func (p *Policy) IsAdmin(subject string) bool { return p.InGroup(subject, p.settings.AdminGroup) }

// IsAuditor reports whether subject is in the auditor group (if one is set).
func (p *Policy) IsAuditor(subject string) bool {
	return p.settings.AuditorGroup != "" && p.InGroup(subject, p.settings.AuditorGroup)
}

// Allows reports whether role gives action on resource. Resources not in the catalogue are never
// allowed. This is on the decision hot path: two map lookups and a scan of a few actions.
func (p *Policy) Allows(role, action, resource string) bool {
	actions := p.perms[role][resource]
	for _, a := range actions {
		if a == action || a == "*" {
			return true
		}
	}
	return false
}

// RoleResources returns the resources the role reaches, sorted. Nil for an unknown role.
func (p *Policy) RoleResources(role string) []*Resource {
	if req := p.requirements[role]; req != nil {
		return req.Resources
	}
	return nil
}

// RoleActions returns the actions the role gives on resource, sorted ("*" means all).
func (p *Policy) RoleActions(role, resource string) []string { return p.perms[role][resource] }

// RolesGranting returns the roles that give action on resource, sorted.
func (p *Policy) RolesGranting(action, resource string) []string {
	var out []string
	for _, r := range p.grantedBy[resource] {
		if p.Allows(r, action, resource) {
			out = append(out, r)
		}
	}
	return out
}

// StandingRoles returns the standing roles subject holds directly or through its groups.
func (p *Policy) StandingRoles(subject string) []Standing { return p.standing[subject] }

// NotRequestableError says why a role cannot be requested.
type NotRequestableError struct {
	Role   string
	Reason string
}

func (e *NotRequestableError) Error() string {
	return fmt.Sprintf("role %q cannot be requested: %s", e.Role, e.Reason)
}

// Requirement returns the approval requirement for a role, or a *NotRequestableError if the role
// is unknown or no approval policy covers it.
func (p *Policy) Requirement(role string) (*Requirement, error) {
	req := p.requirements[role]
	if req == nil {
		return nil, &NotRequestableError{Role: role, Reason: "no such role in the policy" + p.suggest(role, keys(p.roles))}
	}
	if req.Policy == nil {
		return nil, &NotRequestableError{Role: role, Reason: "no approval policy covers the resources it reaches; ask an administrator to add one"}
	}
	if len(req.Uncovered) > 0 {
		return nil, &NotRequestableError{Role: role, Reason: fmt.Sprintf("no approval policy covers %s, which it reaches (a policy covering its other resources may not approve those); ask an administrator to add an approval policy matching them, or to narrow the role",
			joinQuoted(req.Uncovered))}
	}
	return req, nil
}

// EligibleSteps returns the indexes of the steps of ap that approver may count towards on a
// request made by requester for beneficiary. When there are none, why says the first reason.
// The requester, the beneficiary and the owners of a machine party are never eligible, nor,
// where ap says so, people tied to them by a group (invariant 1; see exclusion). Pass the
// Policy of the request's Requirement, which carries the exclusions for critical roles.
func (p *Policy) EligibleSteps(ap *ApprovalPolicy, approver, requester, beneficiary string) (steps []int, why string) {
	if why := p.exclusion(ap, approver, requester, beneficiary); why != "" {
		return nil, why
	}
	return p.memberSteps(ap, approver)
}

// memberSteps returns the steps of ap whose groups approver belongs to, or why none.
func (p *Policy) memberSteps(ap *ApprovalPolicy, approver string) (steps []int, why string) {
	for i, st := range ap.Steps {
		for _, g := range st.From {
			if p.InGroup(approver, g) {
				steps = append(steps, i)
				break
			}
		}
	}
	if len(steps) == 0 {
		var groups []string
		for _, st := range ap.Steps {
			groups = append(groups, st.From...)
		}
		return nil, fmt.Sprintf("is not a member of an approving group (%s)", strings.Join(groups, ", "))
	}
	return steps, ""
}

// CanApproveAny reports whether approver is eligible for at least one step of ap for this
// requester and beneficiary.
func (p *Policy) CanApproveAny(ap *ApprovalPolicy, approver, requester, beneficiary string) bool {
	steps, _ := p.EligibleSteps(ap, approver, requester, beneficiary)
	return len(steps) > 0
}

// Facts builds the CEL condition input for a request.
func (p *Policy) Facts(req *Requirement, requester, beneficiary, reason string, breakGlass, renewal bool) RequestFacts {
	f := RequestFacts{
		Requester:         requester,
		Beneficiary:       beneficiary,
		Role:              req.Role,
		Reason:            reason,
		BreakGlass:        breakGlass,
		Renewal:           renewal,
		RequesterGroups:   p.memberOf[requester],
		BeneficiaryGroups: p.memberOf[beneficiary],
	}
	for _, r := range req.Resources {
		f.Resources = append(f.Resources, r.Name)
		f.Sensitivity = max(f.Sensitivity, r.Sensitivity)
	}
	return f
}
