package policy

import (
	"sort"
	"strings"
)

// The subjects a diff reasons about. People are named in the policy, or not; either way the
// identity provider may put them in more groups (a Group's idp_groups) and the diff cannot know
// whom. So a group's membership is seen as a set of sources: the members the policy declares
// (as compiled, with any directory overlay), and one source "idp:NAME" for everyone the
// identity provider puts in group NAME. A person is any one named subject (or none) together
// with any set of identity-provider groups, the same under both policies. Every relation the
// diff checks (who shares a group with whom, who owns which machine, who a selector selects) is
// checked source by source, which is proved sufficient for every such person in docs/policy.md.
//
// Machines are named exactly, or matched by patterns (k8s:*/research/*). Which patterns match a
// machine depends only on which literal each of its segments equals, so one representative per
// combination of the patterns' literals (and "<any>", a segment no literal equals) stands for
// every machine.

const (
	idpPrefix = "idp:"
	// anySegment stands for a segment of a machine subject that equals no literal of any
	// pattern. It is not a valid name, so it can never be a real machine's.
	anySegment = "<any>"
	// maxMachineReps bounds the representatives of machines matched by patterns. Past it the
	// diff does not enumerate them and reports any change touching machines as weakening.
	maxMachineReps = 20000
)

func isIdPSource(s string) bool { return strings.HasPrefix(s, idpPrefix) }

// describeSource names a source for messages.
func describeSource(s string) string {
	if name, ok := strings.CutPrefix(s, idpPrefix); ok {
		return "anyone in identity-provider group " + name
	}
	return s
}

// side is one policy as the diff sees it.
type side struct {
	p *Policy
	// groupSrc: group → its sources (declared members, and idp:NAME for each idp group).
	groupSrc map[string]map[string]bool
	// srcGroups: source → the groups it is a source of, sorted.
	srcGroups map[string][]string
}

func newSide(p *Policy) *side {
	s := &side{p: p, groupSrc: map[string]map[string]bool{}, srcGroups: map[string][]string{}}
	for _, g := range p.Groups() {
		set := map[string]bool{}
		for _, m := range p.members[g.Name] {
			set[m] = true
		}
		for _, i := range g.IdPGroups {
			set[idpPrefix+i] = true
		}
		s.groupSrc[g.Name] = set
		for src := range set {
			s.srcGroups[src] = append(s.srcGroups[src], g.Name)
		}
	}
	for _, gs := range s.srcGroups {
		sort.Strings(gs)
	}
	return s
}

// sourcesOf returns the sources of the union of groups.
func (s *side) sourcesOf(groups []string) map[string]bool {
	out := map[string]bool{}
	for _, g := range groups {
		for src := range s.groupSrc[g] {
			out[src] = true
		}
	}
	return out
}

// co reports whether two sources are sources of a common group. For one identity-provider
// source, whether it is a source of any group (two people in that provider group share it).
func (s *side) co(a, b string) bool {
	ga, gb := s.srcGroups[a], s.srcGroups[b]
	if a == b {
		return len(ga) > 0
	}
	i, j := 0, 0
	for i < len(ga) && j < len(gb) {
		switch {
		case ga[i] == gb[j]:
			return true
		case ga[i] < gb[j]:
			i++
		default:
			j++
		}
	}
	return false
}

// ownSources returns the sources of the owner groups of a machine, and whether any Workload
// declares it.
func (s *side) ownSources(machine string) (map[string]bool, bool) {
	owners, _ := s.p.WorkloadOwners(machine)
	return s.sourcesOf(owners), len(owners) > 0
}

// selects reports whether a list of request_for selectors selects a person or machine made
// of the named subject name ("" for none) and at most one identity-provider group idp ("" for
// none).
func (s *side) selects(sels []string, name, idp string) bool {
	for _, sel := range sels {
		if g, ok := strings.CutPrefix(sel, "group:"); ok {
			src := s.groupSrc[g]
			if (name != "" && src[name]) || (idp != "" && src[idpPrefix+idp]) {
				return true
			}
			continue
		}
		if name != "" && MatchSubject(sel, name) {
			return true
		}
	}
	return false
}

// maySelect reports whether the selectors could select some person who has source src among
// others: a person is one named subject (or none) with any identity-provider groups, so one
// source may make them an owner while another makes them a requester. A named source is
// selected with any identity-provider group the selectors reach; an identity-provider source
// with any named subject or identity-provider group.
func (s *side) maySelect(sels []string, src string) bool {
	name, idp := src, ""
	if i, ok := strings.CutPrefix(src, idpPrefix); ok {
		name, idp = "", i
	}
	if s.selects(sels, name, idp) {
		return true
	}
	for _, sel := range sels {
		g, isGroup := strings.CutPrefix(sel, "group:")
		if !isGroup {
			if idp != "" {
				return true // the person may be this named subject too
			}
			continue
		}
		for other := range s.groupSrc[g] {
			if isIdPSource(other) || idp != "" {
				return true
			}
		}
	}
	return false
}

// selectorsWithin reports whether everyone the selectors sels of side n select is selected by
// the selectors of side o, and if not, who is not (a source or a machine). It is checked
// source by source: selection only grows with a person's groups, so the person with that one
// source is the one to check.
func selectorsWithin(n *side, sels []string, o *side, oSels []string) (bool, string) {
	for _, sel := range sels {
		if g, ok := strings.CutPrefix(sel, "group:"); ok {
			for _, src := range sortedSet(n.groupSrc[g]) {
				name, idp := src, ""
				if i, ok := strings.CutPrefix(src, idpPrefix); ok {
					name, idp = "", i
				}
				if !o.selects(oSels, name, idp) {
					return false, describeSource(src)
				}
			}
			continue
		}
		// A pattern is within the old selectors only if its generic instance is: a machine
		// whose wildcard segments equal no literal is matched only by patterns as wide.
		subject := genericInstance(sel)
		if !o.selects(oSels, subject, "") {
			return false, subject
		}
	}
	return true, ""
}

// genericInstance replaces each "*" segment of a machine pattern by anySegment.
func genericInstance(pattern string) string {
	if !strings.Contains(pattern, "*") {
		return pattern
	}
	kind, rest, _ := strings.Cut(pattern, ":")
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		if s == "*" {
			segs[i] = anySegment
		}
	}
	return kind + ":" + strings.Join(segs, "/")
}

// universe is the subjects both policies are compared over.
type universe struct {
	// machines are the representative machines: every machine either policy names, and one
	// per combination of its patterns' literals.
	machines []string
	// tooManyMachines is set when the combinations exceed maxMachineReps; machines then holds
	// only the named ones and each pattern's generic instance.
	tooManyMachines bool
	// brokenCo: pairs of sources that share a group under the old policy and not under the
	// new (an approver in one no longer excluded for a party in the other).
	brokenCo [][2]string
	// brokenOwn: (source, machine) pairs where the source owned the machine under the old
	// policy and not under the new.
	brokenOwn [][2]string
	// gainedOwners: machines no Workload declared under the old policy and one does under the
	// new (the fail-safe "nobody counts" no longer applies).
	gainedOwners []string
	// ownGrowth: (source, machine) pairs where the source owns the machine under the new
	// policy and not under the old (owned_workloads lets more people file).
	ownGrowth [][2]string
}

func newUniverse(o, n *side) *universe {
	u := &universe{}
	exact, patterns := map[string]bool{}, map[string]bool{}
	for _, s := range []*side{o, n} {
		collectMachines(s.p, exact, patterns)
	}
	u.machines, u.tooManyMachines = machineReps(exact, patterns)
	u.relations(o, n)
	return u
}

// collectMachines adds every machine subject and machine pattern the policy names.
func collectMachines(p *Policy, exact, patterns map[string]bool) {
	add := func(s string) {
		if strings.HasPrefix(s, "group:") || !IsMachine(s) || s == DefaultSubject {
			return
		}
		if strings.Contains(s, "*") {
			patterns[s] = true
		} else {
			exact[s] = true
		}
	}
	for _, ms := range p.members {
		for _, m := range ms {
			add(m)
		}
	}
	for _, b := range p.bindings {
		for _, s := range b.Subjects {
			add(s)
		}
	}
	for _, w := range p.workloads {
		for _, s := range w.Subjects {
			add(s)
		}
	}
	for _, a := range p.approvals {
		for _, rf := range a.RequestFor {
			for _, s := range append(append([]string(nil), rf.Requesters...), rf.Beneficiaries...) {
				add(s)
			}
		}
	}
	for _, e := range p.egress {
		for _, s := range e.Subjects {
			add(s)
		}
	}
}

// machineReps returns the named machines and, for workloads, one machine per combination of
// the literals the patterns use at each segment (or anySegment); for services, service:<any>.
func machineReps(exact, patterns map[string]bool) ([]string, bool) {
	out := sortedSet(exact)
	lits := [3]map[string]bool{{anySegment: true}, {anySegment: true}, {anySegment: true}}
	for p := range patterns {
		if rest, ok := strings.CutPrefix(p, "k8s:"); ok {
			for i, seg := range strings.SplitN(rest, "/", 3) {
				if seg != "*" {
					lits[i][seg] = true
				}
			}
		}
	}
	out = append(out, "service:"+anySegment)
	total := len(lits[0]) * len(lits[1]) * len(lits[2])
	if total > maxMachineReps {
		for _, p := range sortedSet(patterns) {
			out = append(out, genericInstance(p))
		}
		return out, true
	}
	for _, a := range sortedSet(lits[0]) {
		for _, b := range sortedSet(lits[1]) {
			for _, c := range sortedSet(lits[2]) {
				out = append(out, "k8s:"+a+"/"+b+"/"+c)
			}
		}
	}
	return out, false
}

// relations finds the pairs whose relation the change breaks or grows.
func (u *universe) relations(o, n *side) {
	seen := map[[2]string]bool{}
	for _, g := range sortedSet(keysSet(o.groupSrc)) {
		was := o.groupSrc[g]
		now := n.groupSrc[g]
		for _, r := range sortedSet(was) {
			if now[r] {
				continue
			}
			// r left g: every pair of r with another source of g may no longer share a group.
			for _, x := range sortedSet(was) {
				if x == r && !isIdPSource(r) {
					continue
				}
				pair := [2]string{min(r, x), max(r, x)}
				if seen[pair] || n.co(pair[0], pair[1]) {
					continue
				}
				seen[pair] = true
				u.brokenCo = append(u.brokenCo, pair)
			}
		}
	}
	for _, m := range u.machines {
		ownO, declaredO := o.ownSources(m)
		ownN, declaredN := n.ownSources(m)
		for _, s := range sortedSet(ownO) {
			if !ownN[s] {
				u.brokenOwn = append(u.brokenOwn, [2]string{s, m})
			}
		}
		for _, s := range sortedSet(ownN) {
			if !ownO[s] {
				u.ownGrowth = append(u.ownGrowth, [2]string{s, m})
			}
		}
		if !declaredO && declaredN {
			u.gainedOwners = append(u.gainedOwners, m)
		}
	}
}

func keysSet[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}
