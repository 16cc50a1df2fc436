package netpol

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rampart.dev/rampart/policy"
)

// What widens egress.
//
// NetworkPolicies add up: a pod that any policy selects for egress may reach the union of what
// the egress rules of all the policies selecting it allow. The default-deny policy selects every
// pod of a governed namespace, so another policy's egress rule adds to what those pods may
// reach — unless everything the rule allows is already allowed by the default-deny policy.
// Widens decides exactly that:
//
//	an egress rule widens egress when some pod its policy selects may, through the rule, reach a
//	destination (a pod, or an address) on a port and protocol that no rule of the default-deny
//	policy Rampart renders for the namespace (cluster DNS, the egress gateway) lets it reach.
//
// The decision is exact over every cluster that could exist — namespaces and pods with any
// labels, any addresses — so "does not widen" holds whatever is created later. Where
// implementations of NetworkPolicy differ, it takes the reading that allows the most:
//   - an ipBlock matches addresses; a pod selector of the default-deny policy never covers one,
//     nor does an ipBlock of the default-deny policy cover a pod (pod addresses are not known);
//   - a named port may resolve to any number: only the same name on the same protocol covers it;
//   - an empty port list allows every protocol, not only TCP, UDP and SCTP;
//   - a selector requirement that is not valid (an unknown operator, In without values) is left
//     out of a rule's peer or the policy's pod selector, so they select more, and makes a peer of
//     the default-deny policy cover nothing.
//
// kube/netpol's reference test holds Widens to a brute-force evaluation of NetworkPolicy
// semantics over generated policies and clusters (widen_reference_test.go).

// Widening is an egress rule of a NetworkPolicy that widens egress: the first destination and
// port it allows beyond the default-deny policy.
type Widening struct {
	// Rule is the index of the rule in spec.egress.
	Rule int
	// Field is the path of what is at fault: spec.egress[i], with .to[j] and .ports[k] when one
	// peer or one port is.
	Field string
	// Message says what the rule lets pods reach that the default-deny policy does not.
	Message string
}

// nameLabel is the label the apiserver gives every namespace, equal to its name.
const nameLabel = "kubernetes.io/metadata.name"

// Widens returns the egress rules of np that widen egress beyond the default-deny policy that
// Render(np.Namespace, s) makes, in order; nil when there are none (np has no egress rules,
// selects no pod, or allows only what the default-deny policy does).
func Widens(np *networkingv1.NetworkPolicy, s policy.NetworkSettings) []Widening {
	if np == nil || !egressPolicy(np.Spec) {
		return nil
	}
	if pods, _ := selectorReqs(podSpace, &np.Spec.PodSelector, true); !conj(nil).with(pods...).sat() {
		return nil // selects no pod
	}
	dd := compileDefaultDeny(Render(np.Namespace, s))
	var out []Widening
	for i, rule := range np.Spec.Egress {
		if w, ok := widens(np.Namespace, i, rule, dd); ok {
			out = append(out, w)
		}
	}
	return out
}

// egressPolicy reports whether spec restricts egress, as the apiserver defaults policyTypes:
// Egress when listed, or when none is listed and there are egress rules.
func egressPolicy(spec networkingv1.NetworkPolicySpec) bool {
	if len(spec.PolicyTypes) == 0 {
		return len(spec.Egress) > 0
	}
	return slices.Contains(spec.PolicyTypes, networkingv1.PolicyTypeEgress)
}

// rulePeer is what one peer of a rule lets pods reach: addresses and (namespace, pod) pairs.
type rulePeer struct {
	field string
	ips   ipSet
	sel   []req // the pods it allows, when has is set (no requirements: every pod)
	has   bool
	what  string
}

// ddRule is a rule of the default-deny policy.
type ddRule struct {
	ips   ipSet
	sels  [][]req // each selector peer's requirements, namespace and pod
	ports []portSpec
	all   bool // no port list: every port and protocol
}

type portSpec struct {
	proto  corev1.Protocol
	all    bool // every port of proto
	lo, hi int32
	name   string
}

func compileDefaultDeny(np *networkingv1.NetworkPolicy) []ddRule {
	var out []ddRule
	for _, r := range np.Spec.Egress {
		d := ddRule{all: len(r.Ports) == 0}
		if len(r.To) == 0 {
			d.ips = allAddresses()
			d.sels = [][]req{nil}
		}
		for _, p := range r.To {
			switch {
			case p.IPBlock != nil && p.PodSelector == nil && p.NamespaceSelector == nil:
				if set, ok := blockSet(p.IPBlock, false); ok {
					d.ips = d.ips.union(set)
				}
			case p.IPBlock == nil && (p.PodSelector != nil || p.NamespaceSelector != nil):
				if reqs, ok := peerReqs(np.Namespace, p, false); ok {
					d.sels = append(d.sels, reqs)
				}
			}
		}
		for _, q := range r.Ports {
			d.ports = append(d.ports, portOf(q))
		}
		out = append(out, d)
	}
	return out
}

func widens(ns string, i int, rule networkingv1.NetworkPolicyEgressRule, dd []ddRule) (Widening, bool) {
	base := fmt.Sprintf("spec.egress[%d]", i)
	var peers []rulePeer
	if len(rule.To) == 0 {
		peers = []rulePeer{{field: base, ips: allAddresses(), has: true, what: "every destination (no to: list)"}}
	}
	for j, p := range rule.To {
		rp := rulePeer{field: fmt.Sprintf("%s.to[%d]", base, j)}
		if p.IPBlock == nil && p.PodSelector == nil && p.NamespaceSelector == nil {
			// Not valid (the apiserver refuses it); read as allowing the most.
			rp.ips, rp.has, rp.what = allAddresses(), true, "every destination (an empty peer)"
			peers = append(peers, rp)
			continue
		}
		if p.IPBlock != nil {
			set, _ := blockSet(p.IPBlock, true)
			rp.ips, rp.what = set, describeBlock(p.IPBlock)
		}
		if p.PodSelector != nil || p.NamespaceSelector != nil {
			reqs, _ := peerReqs(ns, p, true)
			rp.sel, rp.has = reqs, true
			if p.IPBlock != nil {
				rp.what += " and "
			}
			rp.what += describePods(ns, p)
		}
		peers = append(peers, rp)
	}
	type port struct {
		field, what string
		atoms       []atom
	}
	var ports []port
	if len(rule.Ports) == 0 {
		var atoms []atom
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
			atoms = append(atoms, rangeAtoms(proto, 1, 65535, dd)...)
		}
		ports = []port{{what: "every port and protocol (no ports: list)", atoms: append(atoms, atom{other: true})}}
	}
	for k, q := range rule.Ports {
		ports = append(ports, port{field: fmt.Sprintf(".ports[%d]", k), what: describePort(q), atoms: portAtoms(portOf(q), dd)})
	}
	for _, p := range peers {
		for _, q := range ports {
			for _, a := range q.atoms {
				var ips ipSet
				var sels [][]req
				for _, d := range dd {
					if d.matches(a) {
						ips = ips.union(d.ips)
						sels = append(sels, d.sels...)
					}
				}
				if p.ips.subsetOf(ips) && (!p.has || coveredSel(conj(nil).with(p.sel...), sels)) {
					continue
				}
				field := p.field // the peer is at fault, or with no to: list the port
				if len(rule.To) == 0 && q.field != "" {
					field = base + q.field
				}
				return Widening{Rule: i, Field: field, Message: fmt.Sprintf(
					"lets the pods this policy selects reach %s on %s, which the default-deny egress policy does not allow (only cluster DNS and the egress gateway); NetworkPolicies add up, so this widens it",
					p.what, q.what)}, true
			}
		}
	}
	return Widening{}, false
}

// atom is one port, or one class of ports that the default-deny policy treats alike.
type atom struct {
	proto corev1.Protocol
	port  int32
	name  string
	other bool // a protocol other than TCP, UDP and SCTP
}

func (d ddRule) matches(a atom) bool {
	if d.all {
		return true
	}
	if a.other {
		return false
	}
	for _, p := range d.ports {
		if p.proto != a.proto {
			continue
		}
		switch {
		case p.all:
			return true
		case a.name != "":
			if p.name == a.name {
				return true
			}
		case p.name == "" && p.lo <= a.port && a.port <= p.hi:
			return true
		}
	}
	return false
}

func portOf(q networkingv1.NetworkPolicyPort) portSpec {
	ps := portSpec{proto: corev1.ProtocolTCP}
	if q.Protocol != nil {
		ps.proto = *q.Protocol
	}
	switch {
	case q.Port == nil:
		ps.all = true
	case q.Port.Type == intstr.String:
		ps.name = q.Port.StrVal
	default:
		ps.lo, ps.hi = q.Port.IntVal, q.Port.IntVal
		if q.EndPort != nil {
			ps.lo, ps.hi = min(ps.lo, *q.EndPort), max(ps.lo, *q.EndPort)
		}
	}
	return ps
}

func portAtoms(ps portSpec, dd []ddRule) []atom {
	switch {
	case ps.all:
		return rangeAtoms(ps.proto, 1, 65535, dd)
	case ps.name != "":
		return []atom{{proto: ps.proto, name: ps.name}}
	}
	return rangeAtoms(ps.proto, ps.lo, ps.hi, dd)
}

// rangeAtoms returns one port of each stretch of [lo, hi] over which the default-deny policy's
// rules allow the same: the stretches begin at lo and at each end of its port ranges.
func rangeAtoms(proto corev1.Protocol, lo, hi int32, dd []ddRule) []atom {
	cuts := []int32{lo}
	for _, d := range dd {
		for _, p := range d.ports {
			if p.proto != proto || p.all || p.name != "" {
				continue
			}
			for _, c := range []int32{p.lo, p.hi + 1} {
				if lo < c && c <= hi {
					cuts = append(cuts, c)
				}
			}
		}
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	out := make([]atom, len(cuts))
	for i, c := range cuts {
		out[i] = atom{proto: proto, port: c}
	}
	return out
}

// peerReqs is the requirements on namespace and pod labels of a selector peer in namespace ns:
// no namespace selector means ns itself, no pod selector every pod. lenient leaves invalid
// requirements out (the peer selects more); otherwise ok is false when one is invalid.
func peerReqs(ns string, p networkingv1.NetworkPolicyPeer, lenient bool) ([]req, bool) {
	var out []req
	ok := true
	if p.NamespaceSelector == nil {
		out = append(out, req{space: nsSpace, key: nameLabel, op: metav1.LabelSelectorOpIn, vals: []string{ns}})
	} else {
		r, good := selectorReqs(nsSpace, p.NamespaceSelector, lenient)
		out, ok = append(out, r...), ok && good
	}
	if p.PodSelector != nil {
		r, good := selectorReqs(podSpace, p.PodSelector, lenient)
		out, ok = append(out, r...), ok && good
	}
	return out, ok
}

// selectorReqs turns a label selector into requirements (matchLabels as In with one value).
func selectorReqs(s space, sel *metav1.LabelSelector, lenient bool) ([]req, bool) {
	var out []req
	ok := true
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		out = append(out, req{space: s, key: k, op: metav1.LabelSelectorOpIn, vals: []string{sel.MatchLabels[k]}})
	}
	for _, e := range sel.MatchExpressions {
		valid := false
		switch e.Operator {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			valid = len(e.Values) > 0
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			valid = len(e.Values) == 0
		}
		if !valid {
			ok = false
			continue
		}
		out = append(out, req{space: s, key: e.Key, op: e.Operator, vals: e.Values})
	}
	if !ok && !lenient {
		return nil, false
	}
	return out, ok
}

// coveredSel reports whether every (namespace, pod) that p allows is allowed by one of the
// selector peers dds: p ⊆ D₀ ∪ rest exactly when p ∧ ¬r ⊆ rest for each requirement r of D₀.
func coveredSel(p conj, dds [][]req) bool {
	if !p.sat() {
		return true
	}
	if len(dds) == 0 {
		return false
	}
	if len(dds[0]) == 0 {
		return true // a peer without requirements: every pod in every namespace
	}
	for _, r := range dds[0] {
		if !coveredSel(p.with(r.negate()), dds[1:]) {
			return false
		}
	}
	return true
}

func describeBlock(b *networkingv1.IPBlock) string {
	s := "addresses " + b.CIDR
	if len(b.Except) > 0 {
		s += " except " + strings.Join(b.Except, ", ")
	}
	return s
}

func describePods(ns string, p networkingv1.NetworkPolicyPeer) string {
	pods := "every pod"
	if p.PodSelector != nil && (len(p.PodSelector.MatchLabels) > 0 || len(p.PodSelector.MatchExpressions) > 0) {
		pods = "pods matching " + metav1.FormatLabelSelector(p.PodSelector)
	}
	switch {
	case p.NamespaceSelector == nil:
		return pods + " of namespace " + ns
	case len(p.NamespaceSelector.MatchLabels) == 0 && len(p.NamespaceSelector.MatchExpressions) == 0:
		return pods + " of every namespace"
	}
	return pods + " of namespaces matching " + metav1.FormatLabelSelector(p.NamespaceSelector)
}

func describePort(q networkingv1.NetworkPolicyPort) string {
	ps := portOf(q)
	switch {
	case ps.all:
		return "every " + string(ps.proto) + " port"
	case ps.name != "":
		return fmt.Sprintf("%s port %q (a named port may be any number)", ps.proto, ps.name)
	case ps.lo != ps.hi:
		return fmt.Sprintf("%s ports %d-%d", ps.proto, ps.lo, ps.hi)
	}
	return fmt.Sprintf("%s %d", ps.proto, ps.lo)
}
