package suggest

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// sensitivityWeight is how much one (action, resource) pair counts towards a role's privilege.
var sensitivityWeight = map[policy.Sensitivity]float64{
	policy.Public: 1, policy.Internal: 2, policy.Sensitive: 4, policy.Critical: 8,
}

// roleInfo is what ranking knows about one requestable role.
type roleInfo struct {
	name      string
	privilege float64
	pairs     map[string]bool // "action\x00resource" it grants, "*" expanded to every known action
	resources int
	actions   []string // distinct actions it grants anywhere, sorted
	approvals int
	policy    string
}

// Candidate is a role that gives what was asked, with its cost.
type Candidate struct {
	Role string `json:"role"`
	// Privilege is the sum over every (action, resource) pair the role grants of the resource's
	// sensitivity weight (public 1, internal 2, sensitive 4, critical 8). Lower is better.
	Privilege float64 `json:"privilege"`
	// Pairs is how many (action, resource) pairs the role grants; Resources on how many resources.
	Pairs     int      `json:"pairs"`
	Resources int      `json:"resources"`
	Actions   []string `json:"actions"`
	// Approvals is the number of distinct approvers a request needs, under Policy.
	Approvals int    `json:"approvals"`
	Policy    string `json:"approval_policy"`
}

// Ranking is the candidates for one target, least privileged first.
type Ranking struct {
	Resource    string      `json:"resource"`
	Sensitivity string      `json:"sensitivity"`
	Actions     []string    `json:"actions"`
	Candidates  []Candidate `json:"candidates"`
	// Explanation says why the first candidate is first, in words.
	Explanation string `json:"explanation"`
}

// NoCandidateError says that no requestable role gives what was asked, and who to ask.
type NoCandidateError struct {
	Resource string
	Actions  []string
	Owners   []string
	// Members are the owners' members, to make "who" concrete.
	Members []string
}

func (e *NoCandidateError) Error() string {
	who := "no owners are recorded for it; ask the Rampart administrators"
	if len(e.Owners) > 0 {
		who = "it is owned by " + strings.Join(e.Owners, ", ")
		if len(e.Members) > 0 {
			who += " (" + strings.Join(e.Members, ", ") + ")"
		}
		who += "; ask them for a role that grants it"
	}
	return fmt.Sprintf("no requestable role grants %s on %s: %s", strings.Join(e.Actions, " and "), e.Resource, who)
}

// ErrUnknownResource is wrapped by errors about resources that are not in the catalogue.
var ErrUnknownResource = errors.New("unknown resource")

func buildRoles(pol *policy.Policy) (map[string]*roleInfo, []string) {
	universe := map[string]bool{}
	for _, r := range pol.Roles() {
		for _, rule := range r.Rules {
			for _, a := range rule.Actions {
				if a != "*" {
					universe[a] = true
				}
			}
		}
	}
	actions := make([]string, 0, len(universe))
	for a := range universe {
		actions = append(actions, a)
	}
	sort.Strings(actions)
	roles := map[string]*roleInfo{}
	for _, r := range pol.Roles() {
		req, err := pol.Requirement(r.Name)
		if err != nil {
			continue // not requestable: never a candidate
		}
		ri := &roleInfo{name: r.Name, pairs: map[string]bool{}, approvals: req.Policy.TotalApprovals(), policy: req.Policy.Name}
		acts := map[string]bool{}
		for _, res := range req.Resources {
			granted := pol.RoleActions(r.Name, res.Name)
			if len(granted) == 1 && granted[0] == "*" {
				granted = actions
			}
			for _, a := range granted {
				ri.pairs[a+"\x00"+res.Name] = true
				acts[a] = true
			}
			ri.privilege += sensitivityWeight[res.Sensitivity] * float64(len(granted))
			ri.resources++
		}
		for a := range acts {
			ri.actions = append(ri.actions, a)
		}
		sort.Strings(ri.actions)
		roles[r.Name] = ri
	}
	return roles, actions
}

func (ri *roleInfo) candidate() Candidate {
	return Candidate{Role: ri.name, Privilege: ri.privilege, Pairs: len(ri.pairs), Resources: ri.resources,
		Actions: ri.actions, Approvals: ri.approvals, Policy: ri.policy}
}

// lessPrivileged orders candidates: lower privilege, then fewer pairs, then fewer approvers
// (equally narrow roles: the one that is quicker to get), then name.
func lessPrivileged(a, b *roleInfo) bool {
	if a.privilege != b.privilege {
		return a.privilege < b.privilege
	}
	if len(a.pairs) != len(b.pairs) {
		return len(a.pairs) < len(b.pairs)
	}
	if a.approvals != b.approvals {
		return a.approvals < b.approvals
	}
	return a.name < b.name
}

// Rank returns the requestable roles that grant every one of actions on resource, least
// privileged first. A role is a candidate only if the decision engine itself (authz.RoleAllows)
// would allow each action on the resource to a holder of the role.
func (e *Engine) Rank(resource string, actions []string) (Ranking, error) {
	res, ok := e.pol.Resource(resource)
	if !ok {
		return Ranking{}, fmt.Errorf("%w: %q is not in the catalogue%s", ErrUnknownResource, resource, e.didYouMean(resource))
	}
	if len(actions) == 0 {
		return Ranking{}, errors.New("name at least one action")
	}
	for _, a := range actions {
		if err := policy.ValidateAction(a); err != nil || a == "*" {
			return Ranking{}, fmt.Errorf("action %q: ask for a concrete action such as read", a)
		}
	}
	var cands []*roleInfo
	for _, role := range e.pol.RolesGranting(actions[0], resource) {
		ri := e.roles[role]
		if ri == nil {
			continue
		}
		all := true
		for _, a := range actions {
			all = all && authz.RoleAllows(e.pol, role, a, resource)
		}
		if all {
			cands = append(cands, ri)
		}
	}
	if len(cands) == 0 {
		ne := &NoCandidateError{Resource: resource, Actions: actions, Owners: res.Owners}
		seen := map[string]bool{}
		for _, o := range res.Owners {
			if g, ok := e.pol.Group(o); ok {
				for _, m := range g.Members {
					if !seen[m] {
						seen[m] = true
						ne.Members = append(ne.Members, m)
					}
				}
			}
		}
		sort.Strings(ne.Members)
		return Ranking{}, ne
	}
	sort.Slice(cands, func(i, j int) bool { return lessPrivileged(cands[i], cands[j]) })
	rk := Ranking{Resource: resource, Sensitivity: res.Sensitivity.String(), Actions: actions}
	for _, c := range cands {
		rk.Candidates = append(rk.Candidates, c.candidate())
	}
	rk.Explanation = explain(cands)
	return rk, nil
}

// explain says why the first candidate is first: what it grants, and what the next one would
// grant beyond it.
func explain(cands []*roleInfo) string {
	top := cands[0]
	msg := fmt.Sprintf("%s grants %s on %s", top.name, strings.Join(top.actions, ", "), plural(top.resources, "resource"))
	if top.approvals > 0 {
		msg += fmt.Sprintf(" and needs %s", plural(top.approvals, "approval"))
	}
	if len(cands) == 1 {
		return msg + "; it is the only role that gives this"
	}
	next := cands[1]
	extraActs, extraRes := map[string]bool{}, map[string]bool{}
	for p := range next.pairs {
		if !top.pairs[p] {
			a, r, _ := strings.Cut(p, "\x00")
			extraActs[a], extraRes[r] = true, true
		}
	}
	if len(extraActs) == 0 {
		return msg + fmt.Sprintf("; the next, %s, grants no more but ranks after it (%s)", next.name, tieReason(top, next))
	}
	var acts []string
	for a := range extraActs {
		acts = append(acts, a)
	}
	sort.Strings(acts)
	also := "also grants"
	return msg + fmt.Sprintf("; the next, %s, %s %s on %s", next.name, also, joinAnd(acts), plural(len(extraRes), "resource"))
}

func tieReason(a, b *roleInfo) string {
	if a.approvals != b.approvals {
		return fmt.Sprintf("%s instead of %s", plural(b.approvals, "approval"), plural(a.approvals, "approval"))
	}
	return "alphabetical order"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
