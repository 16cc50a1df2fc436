package suggest

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// Tier weights: how much one (action, resource) pair counts, by the resource's sensitivity.
var tierWeights = map[policy.Sensitivity]float64{
	policy.Public: 1, policy.Internal: 2, policy.Sensitive: 4, policy.Critical: 8,
}

// Action weights: how much an action is worth, by what its holder can do with it. Reading,
// connecting and using a shared pool change nothing; writing and triggering change data or start
// work; deploying puts code in front of users; exec (a shell) and delete can do or undo
// anything the workload can; admin changes who may do what.
var actionWeights = map[string]float64{
	"read": 1, "connect": 1, "use": 1,
	"write": 3, "trigger": 3,
	"deploy": 4,
	"exec":   6, "delete": 6,
	"admin": 8,
}

// CustomActionWeight is the weight of an action the table does not name (a custom action).
const CustomActionWeight = 3

// ActionWeight is how much one action counts towards a role's privilege.
func ActionWeight(action string) float64 {
	if w, ok := actionWeights[action]; ok {
		return w
	}
	return CustomActionWeight
}

// TierWeight is how much a resource's sensitivity multiplies the actions granted on it.
func TierWeight(s policy.Sensitivity) float64 { return tierWeights[s] }

// tiers lists the sensitivities from the highest down: the order in which ties are broken.
var tiers = []policy.Sensitivity{policy.Critical, policy.Sensitive, policy.Internal, policy.Public}

// breakGlassMaxDuration is the longest grant an approval policy may allow and still be an
// emergency-only policy (see isBreakGlass).
const breakGlassMaxDuration = time.Hour

// roleInfo is what ranking knows about one requestable role.
type roleInfo struct {
	name      string
	privilege float64
	pairs     map[string]bool // "action\x00resource" it grants, "*" expanded to every known action
	byTier    [4]int          // pairs per tier, in the order of tiers (critical first)
	resources int
	actions   []string // distinct actions it grants anywhere, sorted
	approvals int
	policy    string
	// breakGlass says why the role is for emergencies only ("" when it is not).
	breakGlass string
}

// Candidate is a role that gives what was asked, with its cost.
type Candidate struct {
	Role string `json:"role"`
	// Privilege is the sum over every (action, resource) pair the role grants of
	// ActionWeight(action) × TierWeight(sensitivity of resource). Lower is better.
	Privilege float64 `json:"privilege"`
	// Pairs is how many (action, resource) pairs the role grants; Resources on how many resources.
	Pairs     int `json:"pairs"`
	Resources int `json:"resources"`
	// PairsByTier counts the pairs per sensitivity tier ("critical", "sensitive", "internal",
	// "public"; tiers with none are left out). Equal privilege breaks toward fewer critical
	// pairs, then fewer sensitive ones, and so on.
	PairsByTier map[string]int `json:"pairs_by_tier"`
	Actions     []string       `json:"actions"`
	// Approvals is the number of distinct approvers a request needs, under Policy.
	Approvals int    `json:"approvals"`
	Policy    string `json:"approval_policy"`
	// BreakGlass, when set, says why the role is for emergencies only; such a role is a
	// candidate only when the request says it is an emergency.
	BreakGlass string `json:"break_glass,omitempty"`
	// Excluded lists the actions the request said it does not want that the role grants
	// (anywhere); a candidate with any ranks after every candidate without.
	Excluded []string `json:"excluded,omitempty"`
}

// Ranking is the candidates for one target, least privileged first.
type Ranking struct {
	Resource    string      `json:"resource"`
	Sensitivity string      `json:"sensitivity"`
	Actions     []string    `json:"actions"`
	Candidates  []Candidate `json:"candidates"`
	// Emergency is set when break-glass roles were allowed as candidates.
	Emergency bool `json:"emergency,omitempty"`
	// Excluded are the actions the request said it does not want.
	Excluded []string `json:"excluded,omitempty"`
	// Withheld names the break-glass roles that grant what was asked but were left out because
	// the request did not say it is an emergency.
	Withheld []string `json:"withheld_break_glass,omitempty"`
	// Explanation says why the first candidate is first, in words.
	Explanation string `json:"explanation"`
}

// RankOptions changes which roles are candidates and how they are ordered.
type RankOptions struct {
	// Emergency admits break-glass roles as candidates; without it they are never suggested.
	Emergency bool
	// Exclude lists actions not wanted: a candidate granting any of them (on any resource)
	// ranks after every candidate that grants none.
	Exclude []string
}

// NoCandidateError says that no requestable role gives what was asked, and who to ask.
type NoCandidateError struct {
	Resource string
	Actions  []string
	Owners   []string
	// Members are the owners' members, to make "who" concrete.
	Members []string
	// BreakGlass names the break-glass roles that would grant it, withheld because the request
	// was not an emergency.
	BreakGlass []string
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
	msg := fmt.Sprintf("no requestable role grants %s on %s: %s", strings.Join(e.Actions, " and "), e.Resource, who)
	switch len(e.BreakGlass) {
	case 0:
	case 1:
		msg += fmt.Sprintf(" (only the break-glass role %s does, and it is for emergencies: ask for it as one only if this is one)", e.BreakGlass[0])
	default:
		msg += fmt.Sprintf(" (only the break-glass roles %s do, and they are for emergencies: ask for one as such only if this is one)", joinAnd(e.BreakGlass))
	}
	return msg
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
		ri := &roleInfo{name: r.Name, pairs: map[string]bool{}, approvals: req.Policy.TotalApprovals(), policy: req.Policy.Name,
			breakGlass: isBreakGlass(r, req)}
		acts := map[string]bool{}
		for _, res := range req.Resources {
			granted := pol.RoleActions(r.Name, res.Name)
			for _, a := range granted {
				if a == "*" {
					granted = actions
					break
				}
			}
			n := 0
			for _, a := range granted {
				if ri.pairs[a+"\x00"+res.Name] {
					continue
				}
				ri.pairs[a+"\x00"+res.Name] = true
				acts[a] = true
				ri.privilege += ActionWeight(a) * TierWeight(res.Sensitivity)
				n++
			}
			if t := tierIndex(res.Sensitivity); t >= 0 {
				ri.byTier[t] += n
			}
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

func tierIndex(s policy.Sensitivity) int {
	for i, t := range tiers {
		if t == s {
			return i
		}
	}
	return -1
}

// breakGlassWords mark a role as for emergencies when its name or description uses one of them
// as a word (case-insensitive; "break glass" and "break-glass" are the same two words).
var breakGlassWords = map[string]bool{"breakglass": true, "emergency": true, "emergencies": true, "firefighter": true, "firefighting": true}

// breakGlassHan are the Chinese markers, matched as substrings (紧急: urgent/emergency,
// 应急: emergency response).
var breakGlassHan = []string{"紧急", "应急", "破窗"}

// isBreakGlass says why a role is for emergencies only, or "". A role is break-glass when
//
//  1. its name or its description says so: the word emergency(ies), firefighter/firefighting,
//     breakglass, or "break" followed by "glass" (break-glass, break_glass, "break glass"),
//     or the Chinese 紧急, 应急 or 破窗; or
//  2. every approval policy that matches its resources allows break-glass and is an
//     emergency-only policy: it caps grants (max_duration) at 1h or less, or its own name or
//     description says break-glass/emergency as in 1.
//
// A policy that merely allows break-glass (with break_glass.max_duration of an hour, the usual
// way to let on-call take an ordinary role in an outage) does not make its roles break-glass.
func isBreakGlass(r *policy.Role, req *policy.Requirement) string {
	if saysBreakGlass(r.Name) {
		return "its name says it is for emergencies"
	}
	if saysBreakGlass(r.Description) {
		return "its description says it is for emergencies"
	}
	if len(req.Matched) == 0 {
		return ""
	}
	for _, ap := range req.Matched {
		if !ap.BreakGlass.Allowed {
			return ""
		}
		short := ap.MaxDuration > 0 && ap.MaxDuration.Std() <= breakGlassMaxDuration
		if !short && !saysBreakGlass(ap.Name) && !saysBreakGlass(ap.Description) {
			return ""
		}
	}
	return fmt.Sprintf("its approval policy %s is for break-glass use only", req.Matched[0].Name)
}

// saysBreakGlass reports whether text uses a break-glass marker (see isBreakGlass).
func saysBreakGlass(text string) bool {
	for _, h := range breakGlassHan {
		if strings.Contains(text, h) {
			return true
		}
	}
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for i, w := range words {
		if breakGlassWords[w] || (w == "break" && i+1 < len(words) && words[i+1] == "glass") {
			return true
		}
	}
	return false
}

func (ri *roleInfo) candidate(exclude []string) Candidate {
	c := Candidate{Role: ri.name, Privilege: ri.privilege, Pairs: len(ri.pairs), Resources: ri.resources,
		Actions: ri.actions, Approvals: ri.approvals, Policy: ri.policy, BreakGlass: ri.breakGlass,
		PairsByTier: map[string]int{}, Excluded: ri.grantsAny(exclude)}
	for i, t := range tiers {
		if ri.byTier[i] > 0 {
			c.PairsByTier[t.String()] = ri.byTier[i]
		}
	}
	return c
}

// grantsAny returns the actions of acts the role grants on any resource.
func (ri *roleInfo) grantsAny(acts []string) []string {
	var out []string
	for _, a := range acts {
		for _, have := range ri.actions {
			if a == have {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// lessPrivileged orders candidates: lower privilege; on equal privilege, fewer pairs at the
// highest tier, then at the next tier down, and so on; then fewer approvers (equally narrow
// roles: the one that is quicker to get); then name.
func lessPrivileged(a, b *roleInfo) bool {
	if a.privilege != b.privilege {
		return a.privilege < b.privilege
	}
	for i := range tiers {
		if a.byTier[i] != b.byTier[i] {
			return a.byTier[i] < b.byTier[i]
		}
	}
	if a.approvals != b.approvals {
		return a.approvals < b.approvals
	}
	return a.name < b.name
}

// Rank returns the requestable roles that grant every one of actions on resource, least
// privileged first, leaving out break-glass roles. A role is a candidate only if the decision
// engine itself (authz.RoleAllows) would allow each action on the resource to a holder of it.
func (e *Engine) Rank(resource string, actions []string) (Ranking, error) {
	return e.RankWith(resource, actions, RankOptions{})
}

// RankWith is Rank with options: break-glass roles are candidates only with o.Emergency, and
// candidates granting an action of o.Exclude rank after every candidate that grants none.
func (e *Engine) RankWith(resource string, actions []string, o RankOptions) (Ranking, error) {
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
	var withheld []string
	for _, role := range e.pol.RolesGranting(actions[0], resource) {
		ri := e.roles[role]
		if ri == nil {
			continue
		}
		all := true
		for _, a := range actions {
			all = all && authz.RoleAllows(e.pol, role, a, resource)
		}
		switch {
		case !all:
		case ri.breakGlass != "" && !o.Emergency:
			withheld = append(withheld, role)
		default:
			cands = append(cands, ri)
		}
	}
	if len(cands) == 0 {
		ne := &NoCandidateError{Resource: resource, Actions: actions, Owners: res.Owners, BreakGlass: withheld}
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
	excl := func(ri *roleInfo) bool { return len(ri.grantsAny(o.Exclude)) > 0 }
	sort.Slice(cands, func(i, j int) bool {
		if xi, xj := excl(cands[i]), excl(cands[j]); xi != xj {
			return xj
		}
		return lessPrivileged(cands[i], cands[j])
	})
	rk := Ranking{Resource: resource, Sensitivity: res.Sensitivity.String(), Actions: actions, Emergency: o.Emergency,
		Excluded: o.Exclude, Withheld: withheld}
	for _, c := range cands {
		rk.Candidates = append(rk.Candidates, c.candidate(o.Exclude))
	}
	rk.Explanation = explain(cands, rk)
	return rk, nil
}

// explain says why the first candidate is first: what it grants and what that weighs, what the
// next one would grant beyond it, and what was left out.
func explain(cands []*roleInfo, rk Ranking) string {
	top := cands[0]
	msg := fmt.Sprintf("%s grants %s on %s (privilege %g)", top.name, strings.Join(top.actions, ", "), plural(top.resources, "resource"), top.privilege)
	if top.approvals > 0 {
		msg += fmt.Sprintf(" and needs %s", plural(top.approvals, "approval"))
	}
	if top.breakGlass != "" {
		msg += "; it is a break-glass role (" + top.breakGlass + "), offered because this is an emergency"
	}
	switch {
	case len(cands) == 1:
		msg += "; it is the only role that gives this"
	default:
		msg += "; " + explainNext(top, cands[1])
	}
	if x := top.grantsAny(rk.Excluded); len(x) > 0 {
		msg += fmt.Sprintf("; every candidate also grants %s, which you said you do not want", joinAnd(x))
	} else if len(rk.Excluded) > 0 {
		for _, c := range cands[1:] {
			if len(c.grantsAny(rk.Excluded)) > 0 {
				msg += fmt.Sprintf("; roles granting %s, which you said you do not want, rank last", joinAnd(rk.Excluded))
				break
			}
		}
	}
	switch len(rk.Withheld) {
	case 0:
	case 1:
		msg += fmt.Sprintf("; the break-glass role %s is left out: it is for emergencies only", rk.Withheld[0])
	default:
		msg += fmt.Sprintf("; the break-glass roles %s are left out: they are for emergencies only", joinAnd(rk.Withheld))
	}
	return msg
}

// explainNext says how the next candidate compares with the first.
func explainNext(top, next *roleInfo) string {
	extraActs, extraRes := map[string]bool{}, map[string]bool{}
	for p := range next.pairs {
		if !top.pairs[p] {
			a, r, _ := strings.Cut(p, "\x00")
			extraActs[a], extraRes[r] = true, true
		}
	}
	if len(extraActs) == 0 {
		return fmt.Sprintf("the next, %s, grants no more but ranks after it (%s)", next.name, tieReason(top, next))
	}
	var acts []string
	for a := range extraActs {
		acts = append(acts, a)
	}
	sort.Strings(acts)
	s := fmt.Sprintf("the next, %s, also grants %s on %s", next.name, joinAnd(acts), plural(len(extraRes), "resource"))
	if next.privilege == top.privilege {
		s += " and weighs the same (privilege " + fmt.Sprint(top.privilege) + "), but " + tieReason(top, next)
	} else {
		s += fmt.Sprintf(" (privilege %g)", next.privilege)
	}
	return s
}

// tieReason says why top ranks before next at equal privilege.
func tieReason(top, next *roleInfo) string {
	if next.breakGlass != "" && top.breakGlass == "" {
		return "it is a break-glass role"
	}
	if top.privilege == next.privilege {
		for i, t := range tiers {
			if top.byTier[i] != next.byTier[i] {
				return fmt.Sprintf("it grants %s at the %s tier instead of %d", plural(next.byTier[i], "pair"), t, top.byTier[i])
			}
		}
	}
	if top.approvals != next.approvals {
		return fmt.Sprintf("%s instead of %s", plural(next.approvals, "approval"), plural(top.approvals, "approval"))
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
