// Package netpol renders the default-deny egress NetworkPolicy Rampart keeps in every namespace
// it governs: every pod may reach cluster DNS and the egress gateway, and nothing else, so the
// gateway (egress/) decides what leaves.
package netpol

import (
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rampart.dev/rampart/policy"
)

// Name is the policy's name in each namespace.
const Name = "rampart-default-deny-egress"

// Label marks objects Rampart manages.
const (
	LabelManagedBy = "rampart.dev/managed-by"
	ManagedBy      = "rampart"
)

// Render returns the default-deny egress NetworkPolicy for namespace.
func Render(namespace string, s policy.NetworkSettings) *networkingv1.NetworkPolicy {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	gw := intstr.FromInt32(int32(s.GatewayPort))
	egress := []networkingv1.NetworkPolicyEgressRule{{
		To: []networkingv1.NetworkPolicyPeer{{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": s.DNSNamespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: s.DNSPodLabels},
		}},
		Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
	}}
	var to []networkingv1.NetworkPolicyPeer
	if s.GatewayNamespace != "" {
		to = append(to, networkingv1.NetworkPolicyPeer{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": s.GatewayNamespace}},
			PodSelector:       &metav1.LabelSelector{MatchLabels: s.GatewayPodLabels},
		})
	}
	for _, c := range slices.Sorted(slices.Values(s.GatewayCIDRs)) {
		to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	if len(to) > 0 {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: to, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &gw}}})
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: namespace, Labels: map[string]string{LabelManagedBy: ManagedBy},
			Annotations: map[string]string{"rampart.dev/purpose": "default-deny egress: only cluster DNS and the Rampart egress gateway"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      egress,
		},
	}
}

// Intact reports whether np is the rendered policy for its namespace (the name, label and spec
// as Render makes them): a policy edited to allow more is not.
func Intact(np *networkingv1.NetworkPolicy, s policy.NetworkSettings) bool {
	if np == nil || np.Name != Name || np.Labels[LabelManagedBy] != ManagedBy {
		return false
	}
	return reflect.DeepEqual(normalize(np.Spec), normalize(Render(np.Namespace, s).Spec))
}

// normalize fills what the apiserver defaults, so a stored policy compares equal to a rendered one.
func normalize(spec networkingv1.NetworkPolicySpec) networkingv1.NetworkPolicySpec {
	spec = *spec.DeepCopy()
	for i := range spec.Egress {
		for j := range spec.Egress[i].Ports {
			if spec.Egress[i].Ports[j].Protocol == nil {
				tcp := corev1.ProtocolTCP
				spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	if len(spec.PodSelector.MatchLabels) == 0 {
		spec.PodSelector.MatchLabels = nil
	}
	return spec
}

// AllowsMore lists, as namespace/name, the policies among policies that widen egress beyond the
// default-deny policy (Widens): NetworkPolicies add up, so any egress rule of any policy that
// selects a pod adds to what it may reach. Rampart's own policy, intact, is not among them.
func AllowsMore(policies []*networkingv1.NetworkPolicy, s policy.NetworkSettings) []string {
	var out []string
	for _, np := range policies {
		if len(Widens(np, s)) > 0 {
			out = append(out, np.Namespace+"/"+np.Name)
		}
	}
	slices.Sort(out)
	return out
}

// SystemNamespaces are the namespaces the apiserver itself makes and uses. They, and the
// policy's exempt_namespaces, are the only ones Rampart leaves alone.
var SystemNamespaces = []string{"kube-node-lease", "kube-public", "kube-system"}

// Governed reports whether Rampart governs namespace: every namespace but the system ones and
// those in exempt. A name beginning with "kube-" exempts nothing by itself: anyone who may create
// namespaces could pick one, so kube-tools is governed like research (the admission webhook
// leaves out exactly these namespaces too).
func Governed(namespace string, exempt []string) bool {
	return !slices.Contains(SystemNamespaces, namespace) && !slices.Contains(exempt, namespace)
}
