package netpol_test

import (
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

var settings = policy.NetworkSettings{DNSNamespace: "kube-system", DNSPodLabels: map[string]string{"k8s-app": "kube-dns"},
	GatewayNamespace: "rampart", GatewayPodLabels: map[string]string{"app": "gw"}, GatewayCIDRs: []string{"10.0.0.5/32"}, GatewayPort: 8471}

func TestRenderedPolicyIsIntactAndTamperingIsNot(t *testing.T) {
	np := netpol.Render("research", settings)
	if !netpol.Intact(np, settings) {
		t.Fatal("the rendered policy is not intact")
	}
	if np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeEgress || len(np.Spec.PodSelector.MatchLabels) != 0 || len(np.Spec.Egress) != 2 {
		t.Fatalf("spec: %+v", np.Spec)
	}
	// The apiserver defaults a port's protocol to TCP: still intact after the round trip.
	stored := np.DeepCopy()
	stored.Spec.Egress[1].Ports[0].Protocol = nil
	if !netpol.Intact(stored, settings) {
		t.Fatal("a defaulted protocol made the policy look edited")
	}
	for name, edit := range map[string]func(*networkingv1.NetworkPolicy){
		"allow all": func(p *networkingv1.NetworkPolicy) {
			p.Spec.Egress = append(p.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
		},
		"other peer": func(p *networkingv1.NetworkPolicy) { p.Spec.Egress[1].To[1].IPBlock.CIDR = "0.0.0.0/0" },
		"some pods":  func(p *networkingv1.NetworkPolicy) { p.Spec.PodSelector.MatchLabels = map[string]string{"a": "b"} },
		"ingress only": func(p *networkingv1.NetworkPolicy) {
			p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		},
		"label removed": func(p *networkingv1.NetworkPolicy) { p.Labels = nil },
		"renamed":       func(p *networkingv1.NetworkPolicy) { p.Name = "x" },
	} {
		p := netpol.Render("research", settings)
		edit(p)
		if netpol.Intact(p, settings) {
			t.Errorf("%s: still intact", name)
		}
	}
}

func TestAllowsMoreAndGoverned(t *testing.T) {
	wide := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{Egress: []networkingv1.NetworkPolicyEgressRule{{}}}}
	wide.Name, wide.Namespace = "allow-all", "research"
	ingress := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	ingress.Name, ingress.Namespace = "ingress", "research"
	got := netpol.AllowsMore([]*networkingv1.NetworkPolicy{netpol.Render("research", settings), wide, ingress}, settings)
	if !reflect.DeepEqual(got, []string{"research/allow-all"}) {
		t.Fatalf("AllowsMore = %v", got)
	}
	// Only the apiserver's own namespaces and the exempt ones are left alone: a namespace anyone
	// may name kube-tools is governed (issue 13, item 10).
	for ns, want := range map[string]bool{"research": true, "kube-system": false, "kube-public": false, "kube-node-lease": false,
		"rampart": false, "kube-tools": true, "kube-": true, "kubeflow": true} {
		if netpol.Governed(ns, []string{"rampart"}) != want {
			t.Errorf("Governed(%s) != %v", ns, want)
		}
	}
}
