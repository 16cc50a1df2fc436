package netpol_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// The reference: NetworkPolicy egress semantics evaluated by brute force over a finite cluster
// built from what a policy and the settings mention, written from the Kubernetes API reference
// and independent of netpol's constraint algebra (selectors are matched by apimachinery's own
// labels.Selector, addresses by netip.Prefix.Contains).
//
// The cluster holds, for every namespace name mentioned (and one more), a namespace for every
// combination of the other namespace labels mentioned (each absent, at each value mentioned,
// or at a value nothing mentions); in each, a pod for every such combination of the pod labels
// mentioned; and the addresses at both ends of every CIDR mentioned and just beyond them. Ports:
// both ends of every port range mentioned and their neighbours, on TCP, UDP and SCTP, and one
// port of another protocol. A selector, a CIDR or a port range can tell apart only what differs
// in what it mentions, so whenever some cluster lets a rule reach more than the default-deny
// policy, this one does too: the reference decides exactly, and Widens must agree with it on
// every rule of every generated policy.

// namedPort is the number every named port resolves to, on every destination: a name may be
// any number, so none that the default-deny policy allows.
const namedPort = 12345

type endpoint struct {
	ns       string
	nsLabels labels.Set
	pod      labels.Set
	ip       netip.Addr // set for an address
}

type portAtom struct {
	proto corev1.Protocol // "" for a protocol other than TCP, UDP and SCTP
	port  int32
}

func selects(sel *metav1.LabelSelector, l labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		panic(err) // the generator makes only valid selectors
	}
	return s.Matches(l)
}

func peerMatches(p networkingv1.NetworkPolicyPeer, ns string, ep endpoint) bool {
	if p.IPBlock != nil {
		if !ep.ip.IsValid() || !netip.MustParsePrefix(p.IPBlock.CIDR).Contains(ep.ip) {
			return false
		}
		for _, e := range p.IPBlock.Except {
			if netip.MustParsePrefix(e).Contains(ep.ip) {
				return false
			}
		}
		return true
	}
	if ep.ip.IsValid() {
		return false
	}
	if p.NamespaceSelector == nil && ep.ns != ns || p.NamespaceSelector != nil && !selects(p.NamespaceSelector, ep.nsLabels) {
		return false
	}
	return p.PodSelector == nil || selects(p.PodSelector, ep.pod)
}

func portMatches(ports []networkingv1.NetworkPolicyPort, a portAtom) bool {
	if len(ports) == 0 {
		return true
	}
	for _, q := range ports {
		proto := corev1.ProtocolTCP
		if q.Protocol != nil {
			proto = *q.Protocol
		}
		if proto != a.proto {
			continue
		}
		switch {
		case q.Port == nil:
			return true
		case q.Port.Type == intstr.String:
			if a.port == namedPort {
				return true
			}
		default:
			hi := q.Port.IntVal
			if q.EndPort != nil {
				hi = *q.EndPort
			}
			if q.Port.IntVal <= a.port && a.port <= hi {
				return true
			}
		}
	}
	return false
}

func peersMatch(r networkingv1.NetworkPolicyEgressRule, ns string, ep endpoint) bool {
	if len(r.To) == 0 {
		return true
	}
	for _, p := range r.To {
		if peerMatches(p, ns, ep) {
			return true
		}
	}
	return false
}

// refWidens returns the indices of np's egress rules through which a pod np selects reaches
// an endpoint, port and protocol that no rule of the default-deny policy lets it reach.
func refWidens(np *networkingv1.NetworkPolicy, s policy.NetworkSettings) []int {
	egress := slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.PolicyTypes) == 0 && len(np.Spec.Egress) > 0
	if !egress {
		return nil
	}
	dd := netpol.Render(np.Namespace, s)
	u := newUniverse(np, dd)
	selected := false
	for _, pod := range u.pods {
		if selects(&np.Spec.PodSelector, pod) {
			selected = true
			break
		}
	}
	if !selected {
		return nil
	}
	var out []int
	for i, r := range np.Spec.Egress {
	search:
		for _, ep := range u.endpoints {
			if !peersMatch(r, np.Namespace, ep) {
				continue
			}
			var ddRules []networkingv1.NetworkPolicyEgressRule
			for _, d := range dd.Spec.Egress {
				if peersMatch(d, dd.Namespace, ep) {
					ddRules = append(ddRules, d)
				}
			}
			for _, a := range u.ports {
				if !portMatches(r.Ports, a) {
					continue
				}
				allowed := false
				for _, d := range ddRules {
					allowed = allowed || portMatches(d.Ports, a)
				}
				if !allowed {
					out = append(out, i)
					break search
				}
			}
		}
	}
	return out
}

type universe struct {
	pods      []labels.Set // the pod label sets, in every namespace
	endpoints []endpoint
	ports     []portAtom
}

func newUniverse(np *networkingv1.NetworkPolicy, dd *networkingv1.NetworkPolicy) universe {
	podVals, nsVals := map[string][]string{}, map[string][]string{}
	names := map[string]bool{np.Namespace: true, "fresh-ns": true}
	var prefixes []netip.Prefix
	var portNums []int32
	addSel := func(into map[string][]string, sel *metav1.LabelSelector) {
		if sel == nil {
			return
		}
		for k, v := range sel.MatchLabels {
			into[k] = append(into[k], v)
		}
		for _, e := range sel.MatchExpressions {
			into[e.Key] = append(into[e.Key], e.Values...)
		}
	}
	addSel(podVals, &np.Spec.PodSelector)
	for _, p := range []*networkingv1.NetworkPolicy{np, dd} {
		names[p.Namespace] = true
		for _, r := range p.Spec.Egress {
			for _, peer := range r.To {
				addSel(podVals, peer.PodSelector)
				addSel(nsVals, peer.NamespaceSelector)
				if b := peer.IPBlock; b != nil {
					prefixes = append(prefixes, netip.MustParsePrefix(b.CIDR))
					for _, e := range b.Except {
						prefixes = append(prefixes, netip.MustParsePrefix(e))
					}
				}
			}
			for _, q := range r.Ports {
				if q.Port != nil && q.Port.Type == intstr.Int {
					portNums = append(portNums, q.Port.IntVal-1, q.Port.IntVal, q.Port.IntVal+1)
				}
				if q.EndPort != nil {
					portNums = append(portNums, *q.EndPort-1, *q.EndPort, *q.EndPort+1)
				}
			}
		}
	}
	for _, n := range nsVals["kubernetes.io/metadata.name"] {
		names[n] = true
	}
	delete(nsVals, "kubernetes.io/metadata.name")
	u := universe{pods: combos(podVals)}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		for _, nl := range combos(nsVals) {
			nl["kubernetes.io/metadata.name"] = name
			for _, pl := range u.pods {
				u.endpoints = append(u.endpoints, endpoint{ns: name, nsLabels: nl, pod: pl})
			}
		}
	}
	prefixes = append(prefixes, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	ips := map[netip.Addr]bool{}
	for _, p := range prefixes {
		first := p.Masked().Addr()
		last := lastAddr(p)
		for _, a := range []netip.Addr{first, last, first.Prev(), last.Next()} {
			if a.IsValid() {
				ips[a] = true
			}
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(ips), netip.Addr.Compare) {
		u.endpoints = append(u.endpoints, endpoint{ip: a})
	}
	portNums = append(portNums, 1, 65535, namedPort)
	slices.Sort(portNums)
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP} {
		for _, n := range slices.Compact(portNums) {
			if 1 <= n && n <= 65535 {
				u.ports = append(u.ports, portAtom{proto, n})
			}
		}
	}
	u.ports = append(u.ports, portAtom{proto: "", port: 1})
	return u
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// combos returns every label set over the keys of vals: each key absent, at each of its values,
// or at a value none of them is.
func combos(vals map[string][]string) []labels.Set {
	out := []labels.Set{{}}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		const absent = "\x00absent" // not a label value: the key is left out
		opts := append(slices.Compact(slices.Sorted(slices.Values(vals[k]))), "fresh-value", absent)
		var next []labels.Set
		for _, base := range out {
			for _, v := range opts {
				l := maps.Clone(base)
				if v != absent {
					l[k] = v
				}
				next = append(next, l)
			}
		}
		out = next
	}
	return out
}

// gen draws policies and settings from a small vocabulary, so that they overlap with the
// default-deny policy often.
type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) selector(keys, vals []string) *metav1.LabelSelector {
	sel := &metav1.LabelSelector{}
	for range g.r.IntN(3) {
		if sel.MatchLabels == nil {
			sel.MatchLabels = map[string]string{}
		}
		sel.MatchLabels[g.pick(keys...)] = g.pick(vals...)
	}
	for range g.r.IntN(3) {
		e := metav1.LabelSelectorRequirement{Key: g.pick(keys...)}
		switch g.r.IntN(4) {
		case 0:
			e.Operator = metav1.LabelSelectorOpIn
		case 1:
			e.Operator = metav1.LabelSelectorOpNotIn
		case 2:
			e.Operator = metav1.LabelSelectorOpExists
		default:
			e.Operator = metav1.LabelSelectorOpDoesNotExist
		}
		if e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpNotIn {
			for range 1 + g.r.IntN(2) {
				e.Values = append(e.Values, g.pick(vals...))
			}
		}
		sel.MatchExpressions = append(sel.MatchExpressions, e)
	}
	return sel
}

var (
	podKeys = []string{"app", "k8s-app", "tier"}
	podVals = []string{"web", "kube-dns", "gw", "x"}
	nsKeys  = []string{"kubernetes.io/metadata.name", "team"}
	nsVals  = []string{"kube-system", "rampart", "research", "ml", "blue"}
	cidrs   = []string{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/30", "10.0.0.4/31", "10.0.0.5/32", "10.0.0.4/32", "192.168.0.0/16", "::/0", "fd00::/8", "fd00::1/128"}
)

func (g gen) settings() policy.NetworkSettings {
	s := policy.NetworkSettings{DNSNamespace: g.pick("kube-system", "research"), DNSPodLabels: map[string]string{"k8s-app": "kube-dns"}, GatewayPort: 8471}
	if g.r.IntN(3) == 0 {
		s.DNSPodLabels["tier"] = g.pick("x", "web")
	}
	if g.r.IntN(4) > 0 {
		s.GatewayNamespace, s.GatewayPodLabels = g.pick("rampart", "research", "kube-system"), map[string]string{"app": "gw"}
	}
	for _, c := range []string{"10.0.0.5/32", "10.0.0.4/31", "fd00::1/128"} {
		if g.r.IntN(3) == 0 {
			s.GatewayCIDRs = append(s.GatewayCIDRs, c)
		}
	}
	s.GatewayPort = []int{8471, 54, 53, 443}[g.r.IntN(4)]
	return s
}

func (g gen) peer(dd *networkingv1.NetworkPolicy) networkingv1.NetworkPolicyPeer {
	if g.r.IntN(3) == 0 && len(dd.Spec.Egress) > 0 {
		rule := dd.Spec.Egress[g.r.IntN(len(dd.Spec.Egress))]
		return g.near(rule.To[g.r.IntN(len(rule.To))])
	}
	if g.r.IntN(3) == 0 {
		b := &networkingv1.IPBlock{CIDR: g.pick(cidrs...)}
		outer := netip.MustParsePrefix(b.CIDR)
		for range g.r.IntN(3) {
			if e := netip.MustParsePrefix(g.pick(cidrs...)); e.Addr().Is4() == outer.Addr().Is4() && e.Bits() > outer.Bits() && outer.Contains(e.Addr()) {
				b.Except = append(b.Except, e.String())
			}
		}
		return networkingv1.NetworkPolicyPeer{IPBlock: b}
	}
	var p networkingv1.NetworkPolicyPeer
	switch g.r.IntN(3) {
	case 0:
		p.NamespaceSelector = g.selector(nsKeys, nsVals)
	case 1:
		p.NamespaceSelector = &metav1.LabelSelector{}
	}
	if p.NamespaceSelector == nil || g.r.IntN(2) == 0 {
		p.PodSelector = g.selector(podKeys, podVals)
	}
	return p
}

// near returns a peer of the default-deny policy, perhaps narrowed or widened a little: an
// extra requirement on the pods or on the namespace, one dropped, or its CIDR's parent prefix
// with the other half excepted (the same addresses) or not (twice as many).
func (g gen) near(p networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyPeer {
	p = *p.DeepCopy()
	switch g.r.IntN(5) {
	case 0:
		if p.PodSelector != nil {
			p.PodSelector.MatchExpressions = append(p.PodSelector.MatchExpressions, g.selector(podKeys, podVals).MatchExpressions...)
		}
	case 1:
		if p.NamespaceSelector != nil {
			p.NamespaceSelector.MatchExpressions = append(p.NamespaceSelector.MatchExpressions, g.selector(nsKeys, nsVals).MatchExpressions...)
		}
	case 2:
		if p.PodSelector != nil {
			for k := range p.PodSelector.MatchLabels {
				delete(p.PodSelector.MatchLabels, k)
				break
			}
		}
	case 3:
		if b := p.IPBlock; b != nil {
			c := netip.MustParsePrefix(b.CIDR)
			parent, _ := c.Addr().Prefix(c.Bits() - 1)
			sibling := netip.PrefixFrom(parent.Addr(), c.Bits())
			if sibling == c {
				sibling = netip.PrefixFrom(lastAddr(parent), c.Bits()).Masked()
			}
			b.CIDR = parent.String()
			if g.r.IntN(2) == 0 {
				b.Except = []string{sibling.String()}
			}
		}
	}
	return p
}

// nearPort returns a port of the default-deny policy, perhaps moved by one, extended to a
// range, on another protocol, or left open.
func (g gen) nearPort(q networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyPort {
	q = *q.DeepCopy()
	switch g.r.IntN(6) {
	case 0:
		p := intstr.FromInt32(q.Port.IntVal + int32(g.r.IntN(3)) - 1)
		q.Port = &p
	case 1:
		end := q.Port.IntVal + int32(g.r.IntN(3))
		q.EndPort = &end
	case 2:
		lo := intstr.FromInt32(q.Port.IntVal - 1)
		end := q.Port.IntVal
		q.Port, q.EndPort = &lo, &end
	case 3:
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[g.r.IntN(3)]
		q.Protocol = &proto
	case 4:
		q.Port = nil
	}
	return q
}

func (g gen) port(s policy.NetworkSettings) networkingv1.NetworkPolicyPort {
	var q networkingv1.NetworkPolicyPort
	if g.r.IntN(4) > 0 {
		proto := []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}[g.r.IntN(3)]
		q.Protocol = &proto
	}
	switch g.r.IntN(6) {
	case 0:
	case 1:
		n := intstr.FromString(g.pick("dns", "http"))
		q.Port = &n
	default:
		n := []int32{53, 52, 54, 443, int32(s.GatewayPort), int32(s.GatewayPort) - 1}[g.r.IntN(6)]
		p := intstr.FromInt32(n)
		q.Port = &p
		if g.r.IntN(4) == 0 {
			end := n + int32(g.r.IntN(3))
			q.EndPort = &end
		}
	}
	return q
}

func (g gen) policy(s policy.NetworkSettings) *networkingv1.NetworkPolicy {
	ns := g.pick("research", "ml", "kube-system")
	dd := netpol.Render(ns, s)
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}}
	if g.r.IntN(3) == 0 {
		np.Spec.PodSelector = *g.selector(podKeys, podVals)
	}
	np.Spec.PolicyTypes = [][]networkingv1.PolicyType{nil, {networkingv1.PolicyTypeEgress}, {networkingv1.PolicyTypeIngress},
		{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}[g.r.IntN(4)]
	for range g.r.IntN(4) {
		var rule networkingv1.NetworkPolicyEgressRule
		if g.r.IntN(3) == 0 {
			// A rule of the default-deny policy, with its peers and ports moved a little.
			d := dd.Spec.Egress[g.r.IntN(len(dd.Spec.Egress))]
			for _, p := range d.To {
				if g.r.IntN(4) > 0 {
					rule.To = append(rule.To, g.near(p))
				}
			}
			for _, q := range d.Ports {
				if g.r.IntN(4) > 0 {
					rule.Ports = append(rule.Ports, g.nearPort(q))
				}
			}
			np.Spec.Egress = append(np.Spec.Egress, rule)
			continue
		}
		for range g.r.IntN(3) {
			rule.To = append(rule.To, g.peer(dd))
		}
		for range g.r.IntN(3) {
			rule.Ports = append(rule.Ports, g.port(s))
		}
		np.Spec.Egress = append(np.Spec.Egress, rule)
	}
	return np
}

func TestWidensAgainstReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("RAMPART_NETPOL_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	cases := 3000
	if testing.Short() {
		cases = 300
	}
	if v := os.Getenv("RAMPART_NETPOL_CASES"); v != "" {
		cases, _ = strconv.Atoi(v)
	}
	g := gen{rand.New(rand.NewPCG(seed, seed>>1))}
	widening, narrow := 0, 0
	for i := range cases {
		s := g.settings()
		if w := netpol.Widens(netpol.Render(g.pick("research", "ml"), s), s); w != nil {
			t.Fatalf("seed %d: the default-deny policy widens itself: %+v", seed, w)
		}
		np := g.policy(s)
		want := refWidens(np, s)
		var got []int
		for _, w := range netpol.Widens(np, s) {
			got = append(got, w.Rule)
			if w.Message == "" || w.Field == "" {
				t.Fatalf("seed %d case %d: a widening without a field or message: %+v", seed, i, w)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d (RAMPART_NETPOL_SEED replays it), case %d: Widens says rules %v widen, the reference %v\nsettings: %+v\npolicy: %s",
				seed, i, got, want, s, describe(np))
		}
		if len(want) > 0 {
			widening++
		} else if len(np.Spec.Egress) > 0 {
			narrow++
		}
	}
	t.Logf("seed %d: %d policies, %d widen, %d with egress rules that do not", seed, cases, widening, narrow)
	if widening < cases/10 || narrow < cases/20 {
		t.Fatalf("the generator made %d widening and %d narrow policies of %d: too few of one kind to prove anything", widening, narrow, cases)
	}
}

func describe(np *networkingv1.NetworkPolicy) string {
	return fmt.Sprintf("%s %+v", np.Namespace, np.Spec)
}
