package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The approval section: for each role, whether a request for it could be approved under the new
// policy where it could not under the old. A request is approved when it may be filed
// (MayRequestFor), its conditions hold, and its approvers fill every step (Tally). Each part is
// compared with a sufficient condition for "no weaker":
//
//   - quorum: the new steps can be shared out among the old ones (a flow), so that each old
//     step receives new steps whose eligible people all were eligible for it, with counts adding
//     up to its own. Then any approvers meeting the new steps meet the old.
//   - independence: everyone the old policy excluded is still excluded — no exclusion removed,
//     no pair of sources that shared a group no longer does, no owner of a machine no longer
//     owns it, no undeclared machine newly declared — for the people who could approve.
//   - filing: each old matching policy's request_for is contained in some new matching
//     policy's, rule by rule and selector by selector.
//   - the rest (durations, renewal, reason, denials, break-glass, step-up, conditions) field by
//     field, on the policy as it applies to the role.

func (d *differ) compareApprovals() {
	names := keysSet(d.o.p.roles)
	for r := range d.n.p.roles {
		names[r] = true
	}
	for _, role := range sortedSet(names) {
		d.approvalOf(role)
	}
}

func (d *differ) approval(v Verdict, role, field, old, new, msg string, args ...any) {
	d.add(Change{Verdict: v, Section: SectionApproval, Kind: "role", Name: role, Field: field, Old: old, New: new, Message: fmt.Sprintf(msg, args...)})
}

func (d *differ) approvalOf(role string) {
	rO, errO := d.o.p.Requirement(role)
	rN, errN := d.n.p.Requirement(role)
	switch {
	case errO != nil && errN != nil:
		return
	case errN != nil:
		d.approval(Strengthened, role, "requestable", "yes", "no", "role %s can no longer be requested: %s", role, reasonOf(errN))
		return
	case errO != nil:
		d.approval(Weakened, role, "requestable", "no", "yes", "role %s can now be requested, under approval policy %s (before: %s)", role, rN.Policy.Name, reasonOf(errO))
		return
	}
	apO, apN := rO.Policy, rN.Policy
	if apO.Name != apN.Name {
		d.approval(Neutral, role, "policy", apO.Name, apN.Name, "requests for role %s are now governed by approval policy %s (was %s); what that changes is listed with the role", role, apN.Name, apO.Name)
	}
	d.compareQuorum(role, apO, apN)
	d.compareIndependence(role, apO, apN)
	d.compareFiling(role, rO, rN)
	d.compareTerms(role, rO, rN)
	d.compareConditions(role, rO, rN)
}

func reasonOf(err error) string {
	var nr *NotRequestableError
	if errors.As(err, &nr) {
		return nr.Reason
	}
	return err.Error()
}

// poolStep is a step with the sources of its groups.
type poolStep struct {
	count int
	pool  map[string]bool
}

func pools(s *side, steps []Step) []poolStep {
	out := make([]poolStep, len(steps))
	for i, st := range steps {
		out[i] = poolStep{count: st.Count, pool: s.sourcesOf(st.From)}
	}
	return out
}

// covers reports whether any approvers meeting steps b also meet steps a, provided that whoever
// a excludes b excludes too. It is a flow from b's steps (capacity: their counts) to a's steps
// (capacity: their counts), along the pairs where every source of the b step's pool is in the a
// step's pool: when the flow saturates a's steps, the approvers b counts for each of its steps
// can be shared out among a's steps, distinct people each, all of them eligible there.
func covers(a, b []poolStep) bool {
	need := 0
	for _, s := range a {
		need += s.count
	}
	// Residual capacities: source → b[j] → a[i] → sink.
	fromB := make([]int, len(b))
	for j := range b {
		fromB[j] = b[j].count
	}
	toSink := make([]int, len(a))
	for i := range a {
		toSink[i] = a[i].count
	}
	edge := make([][]bool, len(b))
	flow := make([][]int, len(b)) // flow[j][i] on the b[j] → a[i] edge
	for j := range b {
		edge[j] = make([]bool, len(a))
		flow[j] = make([]int, len(a))
		for i := range a {
			edge[j][i] = subset(b[j].pool, a[i].pool)
		}
	}
	total := 0
	for total < need {
		// One augmenting path found by a search over b and a nodes (unit augmentations keep
		// it simple: counts are small).
		prevB := make([]int, len(a)) // a[i] reached from b[prevB[i]]
		prevA := make([]int, len(b)) // b[j] reached back from a[prevA[j]], or -1 from source
		seenA := make([]bool, len(a))
		seenB := make([]bool, len(b))
		var queue []int // b indexes
		for j := range b {
			if fromB[j] > 0 {
				seenB[j], prevA[j] = true, -1
				queue = append(queue, j)
			}
		}
		end := -1
		for len(queue) > 0 && end < 0 {
			j := queue[0]
			queue = queue[1:]
			for i := range a {
				if !edge[j][i] || seenA[i] {
					continue
				}
				seenA[i], prevB[i] = true, j
				if toSink[i] > 0 {
					end = i
					break
				}
				// Push back along an edge carrying flow into a[i].
				for k := range b {
					if flow[k][i] > 0 && !seenB[k] {
						seenB[k], prevA[k] = true, i
						queue = append(queue, k)
					}
				}
			}
		}
		if end < 0 {
			return false
		}
		toSink[end]--
		for i := end; ; {
			j := prevB[i]
			flow[j][i]++
			if prevA[j] < 0 {
				fromB[j]--
				break
			}
			i = prevA[j]
			flow[j][i]--
		}
		total++
	}
	return true
}

func renderSteps(steps []Step) string {
	parts := make([]string, len(steps))
	for i, st := range steps {
		parts[i] = fmt.Sprintf("%d of %s", st.Count, strings.Join(st.From, "|"))
		if st.Name != "" {
			parts[i] = st.Name + ": " + parts[i]
		}
	}
	return strings.Join(parts, "; ")
}

func (d *differ) compareQuorum(role string, apO, apN *ApprovalPolicy) {
	sO, sN := pools(d.o, apO.Steps), pools(d.n, apN.Steps)
	noWeaker, noStronger := covers(sO, sN), covers(sN, sO)
	old, new := renderSteps(apO.Steps), renderSteps(apN.Steps)
	var why []string
	tO, tN := apO.TotalApprovals(), apN.TotalApprovals()
	if tN < tO {
		why = append(why, fmt.Sprintf("%d approvals in all, was %d", tN, tO))
	}
	if len(apN.Steps) < len(apO.Steps) {
		why = append(why, fmt.Sprintf("%d steps, was %d", len(apN.Steps), len(apO.Steps)))
	}
	// Who may approve a step that is otherwise the same.
	for i := range min(len(sO), len(sN)) {
		if !sameStrings(apO.Steps[i].From, apN.Steps[i].From) {
			continue
		}
		if gained := setMinus(sortedSet(sN[i].pool), sortedSet(sO[i].pool)); len(gained) > 0 {
			who := make([]string, len(gained))
			for k, g := range gained {
				who[k] = describeSource(g)
			}
			why = append(why, fmt.Sprintf("step %d (%s) may now also be approved by %s", i+1, strings.Join(apN.Steps[i].From, "|"), examples(who, 4)))
		}
		if apN.Steps[i].Count < apO.Steps[i].Count {
			why = append(why, fmt.Sprintf("step %d needs %d approvals, was %d", i+1, apN.Steps[i].Count, apO.Steps[i].Count))
		}
	}
	switch {
	case !noWeaker:
		if len(why) == 0 {
			why = append(why, "approvers who meet the new steps need not meet the old ones")
		}
		d.approval(Weakened, role, "quorum", old, new, "a request for role %s needs less approval: %s", role, strings.Join(why, "; "))
	case !noStronger:
		d.approval(Strengthened, role, "quorum", old, new, "a request for role %s needs more approval (every set of approvers that meets the new steps meets the old ones)", role)
	case old != new:
		d.approval(Neutral, role, "quorum", old, new, "the steps for role %s are written differently and need the same approvers", role)
	}
}

// approverPool is who could approve under the new policy: the sources of its step groups.
type approverPool struct {
	sources map[string]bool
	hasIdP  bool
}

func newApproverPool(s *side, ap *ApprovalPolicy) approverPool {
	p := approverPool{sources: map[string]bool{}}
	for _, st := range ap.Steps {
		for src := range s.sourcesOf(st.From) {
			p.sources[src] = true
			p.hasIdP = p.hasIdP || isIdPSource(src)
		}
	}
	return p
}

// could reports whether a person with source src could be in the pool: a named subject is
// there if declared, or if the pool takes members from the identity provider (who may put the
// subject in a group of it); a provider group's member could be anyone in the pool.
func (p approverPool) could(src string) bool {
	if p.hasIdP {
		return true
	}
	if isIdPSource(src) {
		return len(p.sources) > 0
	}
	return p.sources[src]
}

func (d *differ) compareIndependence(role string, apO, apN *ApprovalPolicy) {
	rgO, bgO := apO.ExcludesRequesterGroups(), apO.ExcludesBeneficiaryGroups()
	rgN, bgN := apN.ExcludesRequesterGroups(), apN.ExcludesBeneficiaryGroups()
	old, new := exclusionsText(rgO, bgO), exclusionsText(rgN, bgN)
	var weak, strong []string
	if rgO && !rgN {
		weak = append(weak, "requester_groups no longer applies: people who share a group with the requester may now approve")
	}
	if bgO && !bgN {
		weak = append(weak, "beneficiary_groups no longer applies (it is on whenever the role reaches a critical resource): people who share a group with the beneficiary may now approve")
	}
	if rgN && !rgO {
		strong = append(strong, "requester_groups now applies")
	}
	if bgN && !bgO {
		strong = append(strong, "beneficiary_groups now applies")
	}
	pool := newApproverPool(d.n, apN)
	groupsOn := rgO || bgO
	u := d.u
	if groupsOn {
		var pairs []string
		for _, p := range u.brokenCo {
			if pool.could(p[0]) || pool.could(p[1]) {
				pairs = append(pairs, describeSource(p[0])+" and "+describeSource(p[1]))
			}
		}
		if len(pairs) > 0 {
			weak = append(weak, fmt.Sprintf("no longer sharing a group, so no longer excluded from approving each other's requests: %s", examples(pairs, 3)))
		}
		if len(u.gainedOwners) > 0 {
			weak = append(weak, fmt.Sprintf("now declared by a Workload, so requests by or for them may now be filed and approved (before, nobody could be shown independent of them): %s", examples(u.gainedOwners, 3)))
		}
	}
	var owners []string
	for _, p := range u.brokenOwn {
		if groupsOn || pool.could(p[0]) {
			owners = append(owners, describeSource(p[0])+" of "+p[1])
		}
	}
	if len(owners) > 0 {
		weak = append(weak, fmt.Sprintf("no longer owners, so no longer excluded from approving for the machine: %s", examples(owners, 3)))
	}
	if u.tooManyMachines && d.machinesChanged() {
		weak = append(weak, fmt.Sprintf("workload declarations changed and the policies' machine patterns combine in more than %d ways, too many to check machine by machine", maxMachineReps))
	}
	switch {
	case len(weak) > 0:
		d.approval(Weakened, role, "independence", old, new, "approvers of role %s need be less independent of the requester and beneficiary: %s", role, strings.Join(weak, "; "))
	case len(strong) > 0:
		d.approval(Strengthened, role, "independence", old, new, "approvers of role %s must be more independent: %s", role, strings.Join(strong, "; "))
	}
}

func exclusionsText(rg, bg bool) string {
	ex := []string{ExcludeRequester, ExcludeBeneficiary, "owners of a machine party"}
	if rg {
		ex = append(ex, ExcludeRequesterGroups)
	}
	if bg {
		ex = append(ex, ExcludeBeneficiaryGroups)
	}
	return strings.Join(ex, ", ")
}

// machinesChanged reports whether anything that decides who owns or selects a machine
// differs: Workload documents, or machine patterns in request_for.
func (d *differ) machinesChanged() bool {
	eo, po, en, pn := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	collectMachines(d.o.p, eo, po)
	collectMachines(d.n.p, en, pn)
	if !sameStrings(sortedSet(po), sortedSet(pn)) || len(d.o.p.workloads) != len(d.n.p.workloads) {
		return true
	}
	for name, w := range d.o.p.workloads {
		x := d.n.p.workloads[name]
		if x == nil || !sameStrings(w.Subjects, x.Subjects) || !sameStrings(w.Owners, x.Owners) {
			return true
		}
	}
	return false
}

// filingWithin reports whether every (requester, beneficiary) that the request_for rules of a
// on side sa allow is allowed by the rules of b on side sb; growth lists the (source, machine)
// pairs that own a machine on side sa and not on side sb. If not, it says which rule is wider.
func filingWithin(sa *side, a *ApprovalPolicy, sb *side, b *ApprovalPolicy, growth [][2]string) (bool, string) {
	for i, ra := range a.RequestFor {
		var why string
		ok := false
		for _, rb := range b.RequestFor {
			if within, w := ruleWithin(sa, ra, sb, rb, growth); within {
				ok = true
				break
			} else if why == "" {
				why = w
			}
		}
		if !ok {
			if why == "" {
				why = "the other policy lets people file only for themselves"
			}
			return false, fmt.Sprintf("request_for[%d] of %s (%s): %s", i, a.Name, renderRequestFor(ra), why)
		}
	}
	return true, ""
}

func ruleWithin(sa *side, ra RequestFor, sb *side, rb RequestFor, growth [][2]string) (bool, string) {
	if ok, who := selectorsWithin(sa, ra.Requesters, sb, rb.Requesters); !ok {
		return false, who + " may now file"
	}
	if ok, who := selectorsWithin(sa, ra.Beneficiaries, sb, rb.Beneficiaries); !ok {
		return false, "requests may now be filed for " + who
	}
	if ra.OwnedWorkloads {
		if !rb.OwnedWorkloads {
			return false, "owners may now file for their workloads"
		}
		for _, g := range growth {
			if sa.maySelect(ra.Requesters, g[0]) {
				return false, fmt.Sprintf("%s now owns %s and may file for it", describeSource(g[0]), g[1])
			}
		}
	}
	return true, ""
}

func renderRequestFor(r RequestFor) string {
	s := "requesters " + strings.Join(r.Requesters, ", ")
	if len(r.Beneficiaries) > 0 {
		s += "; beneficiaries " + strings.Join(r.Beneficiaries, ", ")
	}
	if r.OwnedWorkloads {
		s += "; owned_workloads"
	}
	return s
}

func renderFiling(req *Requirement) string {
	var parts []string
	for _, m := range req.Matched {
		if len(m.RequestFor) == 0 {
			parts = append(parts, m.Name+": only for oneself")
			continue
		}
		rules := make([]string, len(m.RequestFor))
		for i, r := range m.RequestFor {
			rules[i] = "(" + renderRequestFor(r) + ")"
		}
		parts = append(parts, m.Name+": "+strings.Join(rules, " or "))
	}
	return strings.Join(parts, "; and ")
}

// compareFiling: a request for someone else may be filed only if every matching policy's
// request_for allows it. For each old matching policy some new matching policy must allow no
// more.
func (d *differ) compareFiling(role string, rO, rN *Requirement) {
	weakWhy := ""
	for _, mO := range rO.Matched {
		ok, first := false, ""
		for _, mN := range rN.Matched {
			within, why := filingWithin(d.n, mN, d.o, mO, d.u.ownGrowth)
			if within {
				ok = true
				break
			}
			if first == "" {
				first = why
			}
		}
		if !ok {
			weakWhy = first
			break
		}
	}
	strongWhy := ""
	for _, mN := range rN.Matched {
		ok := false
		for _, mO := range rO.Matched {
			if within, _ := filingWithin(d.o, mO, d.n, mN, d.u.brokenOwn); within {
				ok = true
				break
			}
		}
		if !ok {
			strongWhy = "some requests for others the old policy allowed are refused"
			break
		}
	}
	old, new := renderFiling(rO), renderFiling(rN)
	switch {
	case weakWhy != "":
		d.approval(Weakened, role, "filing", old, new, "more requests for role %s may be filed for someone else: %s", role, weakWhy)
	case strongWhy != "":
		d.approval(Strengthened, role, "filing", old, new, "fewer requests for role %s may be filed for someone else: %s", role, strongWhy)
	case old != new:
		d.approval(Neutral, role, "filing", old, new, "who may file requests for role %s for someone else is written differently and allows the same", role)
	}
}

// compareTerms compares the fields that bound a grant and its request, on the policy as it
// applies to the role.
func (d *differ) compareTerms(role string, rO, rN *Requirement) {
	a, b := rO.Policy, rN.Policy
	dur := func(field string, o, n time.Duration, higherWeakens bool, what string) {
		if o == n {
			return
		}
		v := Strengthened
		if (n > o) == higherWeakens {
			v = Weakened
		}
		d.approval(v, role, field, FormatDuration(o), FormatDuration(n), "%s for role %s: %s, was %s", what, role, FormatDuration(n), FormatDuration(o))
	}
	dur("max_duration", a.MaxDuration.Std(), b.MaxDuration.Std(), true, "the longest grant")
	dur("default_duration", a.DefaultDuration.Std(), b.DefaultDuration.Std(), true, "the grant's duration when none is asked for")
	if a.MinDuration != b.MinDuration {
		v := Neutral
		if b.MinDuration > a.MinDuration {
			v = Weakened
		}
		d.approval(v, role, "min_duration", FormatDuration(a.MinDuration.Std()), FormatDuration(b.MinDuration.Std()), "the shortest grant for role %s: %s, was %s", role, FormatDuration(b.MinDuration.Std()), FormatDuration(a.MinDuration.Std()))
	}
	dur("request_ttl", a.RequestTTL.Std(), b.RequestTTL.Std(), true, "how long a request may wait for approvals")
	flag := func(field string, o, n, trueWeakens bool, on, off string) {
		if o == n {
			return
		}
		v, msg := Strengthened, off
		if n {
			msg = on
		}
		if n == trueWeakens {
			v = Weakened
		}
		d.approval(v, role, field, fmt.Sprint(o), fmt.Sprint(n), "role %s: %s", role, msg)
	}
	flag("renewable", a.Renewable, b.Renewable, true, "grants may now be renewed", "grants may no longer be renewed")
	flag("require_reason", a.RequireReason, b.RequireReason, false, "a reason is now required", "a reason is no longer required")
	if a.DenyCount != b.DenyCount {
		v := Strengthened
		if b.DenyCount > a.DenyCount {
			v = Weakened
		}
		d.approval(v, role, "deny_count", fmt.Sprint(a.DenyCount), fmt.Sprint(b.DenyCount), "denials that end a request for role %s: %d, was %d", role, b.DenyCount, a.DenyCount)
	}
	flag("break_glass", a.BreakGlass.Allowed, b.BreakGlass.Allowed, true,
		"break-glass is now allowed: a requester may take the role at once, up to "+FormatDuration(b.BreakGlass.MaxDuration.Std())+", with approval only after the fact",
		"break-glass is no longer allowed")
	if a.BreakGlass.Allowed && b.BreakGlass.Allowed {
		dur("break_glass.max_duration", a.BreakGlass.MaxDuration.Std(), b.BreakGlass.MaxDuration.Std(), true, "the longest break-glass grant")
	}
	switch o, n := rO.StepUp, rN.StepUp; {
	case o == n:
	case n == 0:
		d.approval(Weakened, role, "step_up", FormatDuration(o), "none", "approvals of role %s no longer need a step-up (was: a second factor at most %s old)", role, FormatDuration(o))
	case o == 0:
		d.approval(Strengthened, role, "step_up", "none", FormatDuration(n), "approvals of role %s now need a second factor at most %s old", role, FormatDuration(n))
	case n > o:
		d.approval(Weakened, role, "step_up", FormatDuration(o), FormatDuration(n), "approvals of role %s accept an older step-up: %s, was %s", role, FormatDuration(n), FormatDuration(o))
	default:
		d.approval(Strengthened, role, "step_up", FormatDuration(o), FormatDuration(n), "approvals of role %s need a more recent step-up: %s, was %s", role, FormatDuration(n), FormatDuration(o))
	}
}

// compareConditions: every condition of the governing policy must hold. Dropping or editing
// one may accept what it refused; adding one only refuses more. A condition that reads the
// parties' groups, or the role's resources, may also change its answer when those change.
func (d *differ) compareConditions(role string, rO, rN *Requirement) {
	var old, new []string
	for _, c := range rO.Policy.Conditions {
		old = append(old, c.Expression)
	}
	for _, c := range rN.Policy.Conditions {
		new = append(new, c.Expression)
	}
	removed, added := setMinus(old, new), setMinus(new, old)
	ow, nw := strings.Join(old, " && "), strings.Join(new, " && ")
	switch {
	case len(removed) > 0:
		d.approval(Weakened, role, "conditions", ow, nw, "a request for role %s no longer has to meet %s", role, quoteAll(removed))
	case len(added) > 0:
		d.approval(Strengthened, role, "conditions", ow, nw, "a request for role %s must now also meet %s", role, quoteAll(added))
	}
	var reads []string
	groupsChanged := d.membershipChanged()
	resourcesChanged := !sameStrings(resourceNames(rO.Resources), resourceNames(rN.Resources)) || maxSensitivity(rO.Resources) != maxSensitivity(rN.Resources)
	for _, c := range new {
		if !contains(old, c) {
			continue // reported above
		}
		if groupsChanged && (strings.Contains(c, "requester_groups") || strings.Contains(c, "beneficiary_groups")) {
			reads = append(reads, fmt.Sprintf("%q reads the parties' groups, and group membership changed", c))
		}
		if resourcesChanged && (strings.Contains(c, "resources") || strings.Contains(c, "sensitivity")) {
			reads = append(reads, fmt.Sprintf("%q reads the role's resources, and they changed", c))
		}
	}
	if len(reads) > 0 {
		d.approval(Weakened, role, "conditions.inputs", "", "", "a condition of role %s may now accept requests it refused: %s", role, strings.Join(reads, "; "))
	}
}

func quoteAll(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

func resourceNames(rs []*Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}

func maxSensitivity(rs []*Resource) Sensitivity {
	m := SensitivityUnset
	for _, r := range rs {
		m = max(m, r.Sensitivity)
	}
	return m
}

// membershipChanged reports whether any group has different sources.
func (d *differ) membershipChanged() bool {
	if len(d.o.groupSrc) != len(d.n.groupSrc) {
		return true
	}
	for g, src := range d.o.groupSrc {
		now, ok := d.n.groupSrc[g]
		if !ok || len(now) != len(src) || !subset(src, now) {
			return true
		}
	}
	return false
}
