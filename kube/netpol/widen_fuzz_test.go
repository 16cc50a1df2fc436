package netpol_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// Widens reads NetworkPolicies anyone who may create one in a namespace writes. On any spec it
// must not panic, and on any spec the apiserver would store (small enough for the reference's
// brute force) it must agree with the reference.
func FuzzWidens(f *testing.F) {
	for _, seed := range []string{
		`{"egress":[{}]}`,
		`{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0"}}]}]}`,
		`{"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kube-system"}},"podSelector":{"matchLabels":{"k8s-app":"kube-dns"}}}],"ports":[{"protocol":"UDP","port":53}]}]}`,
		`{"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.4/31","except":["10.0.0.4/32"]}}],"ports":[{"port":8471,"endPort":8472}]}]}`,
		`{"egress":[{"to":[{"podSelector":{"matchExpressions":[{"key":"app","operator":"NotIn","values":["x"]}]}}],"ports":[{"port":"dns","protocol":"SCTP"}]}]}`,
		`{"podSelector":{"matchExpressions":[{"key":"a","operator":"Exists"},{"key":"a","operator":"DoesNotExist"}]},"egress":[{}]}`,
	} {
		f.Add([]byte(seed))
	}
	s := policy.NetworkSettings{DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"},
		GatewayNamespace: "rampart", GatewayPodLabels: map[string]string{"app": "gw"}, GatewayCIDRs: []string{"10.0.0.5/32"}, GatewayPort: 8471}
	f.Fuzz(func(t *testing.T, b []byte) {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "fuzz", Namespace: "research"}}
		if json.Unmarshal(b, &np.Spec) != nil {
			return
		}
		got := netpol.Widens(np, s)
		if !storable(np.Spec) {
			return
		}
		var rules []int
		for _, w := range got {
			rules = append(rules, w.Rule)
		}
		if want := refWidens(np, s); !slices.Equal(rules, want) {
			t.Fatalf("Widens says rules %v widen, the reference %v: %+v", rules, want, np.Spec)
		}
	})
}

// storable approximates the apiserver's validation of what the reference reads, and keeps the
// brute force small.
func storable(spec networkingv1.NetworkPolicySpec) bool {
	keys := 0
	sel := func(s *metav1.LabelSelector) bool {
		if s == nil {
			return true
		}
		if _, err := metav1.LabelSelectorAsSelector(s); err != nil {
			return false
		}
		keys += len(s.MatchLabels) + len(s.MatchExpressions)
		return true
	}
	if !sel(&spec.PodSelector) || len(spec.Egress) > 3 {
		return false
	}
	for _, r := range spec.Egress {
		for _, p := range r.To {
			switch {
			case p.IPBlock != nil && (p.PodSelector != nil || p.NamespaceSelector != nil):
				return false
			case p.IPBlock != nil:
				c, err := netip.ParsePrefix(p.IPBlock.CIDR)
				if err != nil {
					return false
				}
				for _, e := range p.IPBlock.Except {
					x, err := netip.ParsePrefix(e)
					if err != nil || x.Addr().Is4() != c.Addr().Is4() || x.Bits() <= c.Bits() || !c.Contains(x.Addr()) {
						return false
					}
				}
			case p.PodSelector == nil && p.NamespaceSelector == nil:
				return false
			default:
				if !sel(p.PodSelector) || !sel(p.NamespaceSelector) {
					return false
				}
			}
		}
		for _, q := range r.Ports {
			if q.Protocol != nil && !slices.Contains([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}, *q.Protocol) {
				return false
			}
			if q.Port != nil && q.Port.Type == intstr.Int && (q.Port.IntVal < 1 || q.Port.IntVal > 65535) {
				return false
			}
			if q.EndPort != nil && (q.Port == nil || q.Port.Type != intstr.Int || *q.EndPort < q.Port.IntVal || *q.EndPort > 65535) {
				return false
			}
			if q.Port != nil && q.Port.Type == intstr.String && q.Port.StrVal == "" {
				return false
			}
		}
	}
	return keys <= 6
}
