package policy

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The access and reach sections: who gains or loses what, and what each role gives.

// accessSubjects returns every source either policy names or maps: people and machines named
// in groups, bindings and egress policies, one source per identity-provider group, and
// "default" (egress callers without an identity).
func (d *differ) accessSubjects() []string {
	set := map[string]bool{DefaultSubject: true}
	for _, s := range []*side{d.o, d.n} {
		for src := range s.srcGroups {
			set[src] = true
		}
		for _, b := range s.p.bindings {
			for _, subj := range b.Subjects {
				if !strings.HasPrefix(subj, "group:") {
					set[subj] = true
				}
			}
		}
		for _, e := range s.p.egress {
			for _, subj := range e.Subjects {
				if !strings.HasPrefix(subj, "group:") {
					set[subj] = true
				}
			}
		}
	}
	return sortedSet(set)
}

// selectsSubject reports whether a binding or egress subject entry covers the source.
func (s *side) selectsSubject(entry, src string) bool {
	if g, ok := strings.CutPrefix(entry, "group:"); ok {
		return s.groupSrc[g][src]
	}
	return entry == src
}

// standing returns the roles the source holds through standing bindings, each with the
// bindings that give it.
func (s *side) standing(src string) map[string][]string {
	out := map[string][]string{}
	for _, b := range s.p.StandingBindings() {
		for _, e := range b.Subjects {
			if s.selectsSubject(e, src) {
				for _, r := range b.Roles {
					out[r] = append(out[r], b.Name)
				}
				break
			}
		}
	}
	return out
}

// approverIndex maps each source to the requestable roles whose governing policy has a step
// it is a source of.
func (s *side) approverIndex() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, r := range s.p.Roles() {
		req, err := s.p.Requirement(r.Name)
		if err != nil {
			continue
		}
		for _, st := range req.Policy.Steps {
			for src := range s.sourcesOf(st.From) {
				if out[src] == nil {
					out[src] = map[string]bool{}
				}
				out[src][r.Name] = true
			}
		}
	}
	return out
}

// budget returns the tightest exfiltration budget of the source's egress policies (the one
// the gateway applies), or nil.
func (s *side) budget(src string) *EgressBudget {
	var best *EgressBudget
	for _, e := range s.p.EgressPolicies() {
		if e.Budget == nil {
			continue
		}
		for _, entry := range e.Subjects {
			if s.selectsSubject(entry, src) {
				if best == nil || budgetRate(e.Budget) < budgetRate(best) {
					best = e.Budget
				}
				break
			}
		}
	}
	return best
}

func budgetRate(b *EgressBudget) float64 { return float64(b.Bytes) / b.Window.Std().Seconds() }

func budgetText(b *EgressBudget) string {
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("%d bytes per %s", b.Bytes, FormatDuration(b.Window.Std()))
}

// egressReportMode is the entry for "every destination" when a report-mode policy applies:
// report mode lets everything through.
const egressReportMode = "every destination (a report-mode egress policy applies)"

// egress returns the destinations (host:port) the source's egress policies allow.
func (s *side) egress(src string) []string {
	set := map[string]bool{}
	for _, e := range s.p.EgressPolicies() {
		applies := false
		for _, entry := range e.Subjects {
			applies = applies || s.selectsSubject(entry, src)
		}
		if !applies {
			continue
		}
		if e.Mode == EgressReport {
			set[egressReportMode] = true
		}
		for _, r := range e.Allow {
			ports := r.Ports
			if len(ports) == 0 {
				ports = []int{443}
			}
			for _, p := range ports {
				set[r.Host+":"+strconv.Itoa(p)] = true
			}
		}
	}
	return sortedSet(set)
}

// egressCovered reports whether destination dst (host:port) is allowed by one of have.
func egressCovered(dst string, have []string) bool {
	host, port, _ := strings.Cut(dst, ":")
	for _, h := range have {
		if h == egressReportMode {
			return true
		}
		hh, hp, _ := strings.Cut(h, ":")
		if hp == port && (hh == host || MatchEgressHost(hh, host)) {
			return true
		}
	}
	return false
}

func (d *differ) access(v Verdict, subject, field, old, new, msg string, args ...any) {
	d.add(Change{Verdict: v, Section: SectionAccess, Kind: "subject", Name: describeSource(subject), Field: field, Old: old, New: new, Message: fmt.Sprintf(msg, args...)})
}

func (d *differ) compareAccess() {
	approvesO, approvesN := d.o.approverIndex(), d.n.approverIndex()
	for _, src := range d.accessSubjects() {
		who := describeSource(src)
		// Standing roles.
		stO, stN := d.o.standing(src), d.n.standing(src)
		for _, r := range setMinus(sortedSet(keysSet(stN)), sortedSet(keysSet(stO))) {
			d.access(Weakened, src, "standing_role", "", r, "%s now holds role %s without a request, through standing binding %s", who, r, strings.Join(stN[r], ", "))
		}
		for _, r := range setMinus(sortedSet(keysSet(stO)), sortedSet(keysSet(stN))) {
			d.access(Strengthened, src, "standing_role", r, "", "%s no longer holds role %s through a standing binding", who, r)
		}
		// Administrators and auditors.
		for _, x := range []struct {
			field, what string
			group       func(*side) string
		}{
			{"admin", "administers Rampart", func(s *side) string { return s.p.settings.AdminGroup }},
			{"auditor", "reads every request, grant and ledger entry (auditor)", func(s *side) string { return s.p.settings.AuditorGroup }},
		} {
			was, is := d.o.groupSrc[x.group(d.o)][src], d.n.groupSrc[x.group(d.n)][src]
			switch {
			case is && !was:
				d.access(Weakened, src, x.field, "no", "yes", "%s now %s (group %s)", who, x.what, x.group(d.n))
			case was && !is:
				d.access(Strengthened, src, x.field, "yes", "no", "%s no longer %s", who, x.what)
			}
		}
		// Roles they may approve. Being able to approve gives nothing by itself: what it does is
		// whether more requests can be approved, which the approval section judges (and the
		// property test holds it to), so this is neutral here.
		for _, r := range setMinus(sortedSet(approvesN[src]), sortedSet(approvesO[src])) {
			d.access(Neutral, src, "approver", "", r, "%s may now approve requests for role %s (a member of a step's group); whether that lets any request through is judged under approval", who, r)
		}
		for _, r := range setMinus(sortedSet(approvesO[src]), sortedSet(approvesN[src])) {
			d.access(Neutral, src, "approver", r, "", "%s may no longer approve requests for role %s; whether that refuses any request is judged under approval", who, r)
		}
		// Exfiltration budget.
		switch bO, bN := d.o.budget(src), d.n.budget(src); {
		case bO == nil && bN == nil:
		case bN == nil:
			d.access(Weakened, src, "egress_budget", budgetText(bO), budgetText(bN), "%s no longer has an exfiltration budget (was %s)", who, budgetText(bO))
		case bO == nil:
			d.access(Strengthened, src, "egress_budget", budgetText(bO), budgetText(bN), "%s now has an exfiltration budget of %s", who, budgetText(bN))
		case bN.Bytes > bO.Bytes || budgetRate(bN) > budgetRate(bO):
			d.access(Weakened, src, "egress_budget", budgetText(bO), budgetText(bN), "%s may send more: %s, was %s", who, budgetText(bN), budgetText(bO))
		case *bN != *bO:
			d.access(Strengthened, src, "egress_budget", budgetText(bO), budgetText(bN), "%s may send less: %s, was %s", who, budgetText(bN), budgetText(bO))
		}
		// Egress destinations.
		eO, eN := d.o.egress(src), d.n.egress(src)
		for _, e := range setMinus(eN, eO) {
			if !egressCovered(e, eO) {
				d.access(Weakened, src, "egress", "", e, "%s may now connect to %s through the egress gateway", who, e)
			}
		}
		for _, e := range setMinus(eO, eN) {
			if !egressCovered(e, eN) {
				d.access(Strengthened, src, "egress", e, "", "%s may no longer connect to %s", who, e)
			}
		}
	}
}

func (d *differ) reach(v Verdict, kind, name, field, old, new, msg string, args ...any) {
	d.add(Change{Verdict: v, Section: SectionReach, Kind: kind, Name: name, Field: field, Old: old, New: new, Message: fmt.Sprintf(msg, args...)})
}

// actionsText renders a role's actions on a resource.
func actionsText(actions []string) string {
	if len(actions) == 0 {
		return ""
	}
	return strings.Join(actions, ", ")
}

func (d *differ) resourceLabel(name string) string {
	if r := d.n.p.resources[name]; r != nil {
		return fmt.Sprintf("%s (%s)", name, r.Sensitivity)
	}
	if r := d.o.p.resources[name]; r != nil {
		return fmt.Sprintf("%s (%s)", name, r.Sensitivity)
	}
	return name
}

func (d *differ) compareReach() {
	roles := keysSet(d.o.p.roles)
	for r := range d.n.p.roles {
		roles[r] = true
	}
	for _, role := range sortedSet(roles) {
		pO, pN := d.o.p.perms[role], d.n.p.perms[role]
		res := keysSet(pO)
		for r := range pN {
			res[r] = true
		}
		for _, name := range sortedSet(res) {
			was, is := pO[name], pN[name]
			gained := setMinus(is, was)
			if contains(was, "*") {
				gained = nil
			}
			lost := setMinus(was, is)
			if contains(is, "*") {
				lost = nil
			}
			label := d.resourceLabel(name)
			switch {
			case len(gained) > 0:
				d.reach(Weakened, "role", role, "actions", actionsText(was), actionsText(is), "role %s now gives %s on %s", role, actionsText(gained), label)
			case len(lost) > 0:
				d.reach(Strengthened, "role", role, "actions", actionsText(was), actionsText(is), "role %s no longer gives %s on %s", role, actionsText(lost), label)
			}
		}
		d.compareRoleKubernetes(role)
	}
	names := keysSet(d.o.p.resources)
	for r := range d.n.p.resources {
		names[r] = true
	}
	for _, name := range sortedSet(names) {
		a, b := d.o.p.resources[name], d.n.p.resources[name]
		if a == nil || b == nil || a.Sensitivity == b.Sensitivity {
			continue
		}
		v := Strengthened
		if b.Sensitivity < a.Sensitivity {
			v = Weakened
		}
		d.reach(v, "resource", name, "sensitivity", a.Sensitivity.String(), b.Sensitivity.String(), "resource %s is now %s, was %s", name, b.Sensitivity, a.Sensitivity)
	}
	d.compareProtected()
}

func kubeJSON(k *RoleKubernetes) string {
	if k == nil {
		return ""
	}
	b, _ := json.Marshal(k)
	return string(b)
}

// compareRoleKubernetes: an active grant of a role with a kubernetes section is an RBAC
// binding. Narrower means the same ClusterRole, or rules that are a subset, in a subset of
// namespaces (cluster-wide is widest).
func (d *differ) compareRoleKubernetes(role string) {
	var a, b *RoleKubernetes
	if r := d.o.p.roles[role]; r != nil {
		a = r.Kubernetes
	}
	if r := d.n.p.roles[role]; r != nil {
		b = r.Kubernetes
	}
	ja, jb := kubeJSON(a), kubeJSON(b)
	if ja == jb {
		return
	}
	switch {
	case b == nil:
		d.reach(Strengthened, "role", role, "kubernetes", ja, jb, "grants of role %s are no longer bound in Kubernetes", role)
	case a == nil:
		d.reach(Weakened, "role", role, "kubernetes", ja, jb, "grants of role %s are now bound in Kubernetes", role)
	default:
		var ra, rb []string
		for _, r := range a.Rules {
			j, _ := json.Marshal(r)
			ra = append(ra, string(j))
		}
		for _, r := range b.Rules {
			j, _ := json.Marshal(r)
			rb = append(rb, string(j))
		}
		narrower := a.ClusterRole == b.ClusterRole && len(setMinus(rb, ra)) == 0 &&
			((len(a.Namespaces) == 0) || (len(b.Namespaces) > 0 && len(setMinus(b.Namespaces, a.Namespaces)) == 0))
		if narrower {
			d.reach(Strengthened, "role", role, "kubernetes", ja, jb, "grants of role %s are bound in Kubernetes more narrowly", role)
		} else {
			d.reach(Weakened, "role", role, "kubernetes", ja, jb, "grants of role %s are bound in Kubernetes differently, not provably more narrowly", role)
		}
	}
}

// compareProtected: a cluster object named in a resource's kubernetes section may be mounted
// only under a grant on that resource.
func (d *differ) compareProtected() {
	flat := func(p *Policy) map[string]string {
		out := map[string]string{}
		for ns, objs := range p.protected {
			for key, v := range objs {
				out[ns+"/"+key] = v.Resource
			}
		}
		return out
	}
	a, b := flat(d.o.p), flat(d.n.p)
	keys := keysSet(a)
	for k := range b {
		keys[k] = true
	}
	list := sortedSet(keys)
	sort.Strings(list)
	for _, k := range list {
		was, is := a[k], b[k]
		switch {
		case was == is:
		case is == "":
			d.reach(Weakened, "resource", was, "protects", k, "", "%s is no longer protected: pods may mount it without a grant on %s", k, was)
		case was == "":
			d.reach(Strengthened, "resource", is, "protects", "", k, "%s is now protected: mounting it needs a grant on %s", k, is)
		default:
			d.reach(Weakened, "resource", is, "protects", k+" (by "+was+")", k, "%s now needs a grant on %s instead of %s", k, is, was)
		}
	}
}
