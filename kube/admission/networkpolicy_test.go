package admission_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	sigsjson "sigs.k8s.io/json"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

func networkPolicyReview(t *testing.T, op, ns string, np any) []byte {
	t.Helper()
	obj, err := json.Marshal(np)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"np-1",
"kind":{"group":"networking.k8s.io","version":"v1","kind":"NetworkPolicy"},"resource":{"group":"networking.k8s.io","version":"v1","resource":"networkpolicies"},
"namespace":"` + ns + `","name":"allow","operation":"` + op + `","userInfo":{"username":"oidc:mallory"},"object":` + string(obj) + `,"oldObject":` + string(obj) + `}}`)
}

// A NetworkPolicy that widens egress in a governed namespace is refused, naming the rule and how
// to ask for an exception for it; one that does not, or one elsewhere, is admitted — even
// while the decision engine cannot be trusted, since nothing needs deciding.
func TestNetworkPolicyAdmission(t *testing.T) {
	pol := demoPolicy(t)
	s := pol.Kubernetes()
	np := func(ns string, rules ...networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		p := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, Egress: rules}}
		p.APIVersion, p.Kind, p.Name, p.Namespace = "networking.k8s.io/v1", "NetworkPolicy", "allow", ns
		return p
	}
	dns := netpol.Render("research", s.Egress).Spec.Egress[0]
	for name, c := range map[string]struct {
		ns      string
		op      string
		np      *networkingv1.NetworkPolicy
		allowed bool
	}{
		"allow all":             {"research", "CREATE", np("research", networkingv1.NetworkPolicyEgressRule{}), false},
		"allow all on update":   {"research", "UPDATE", np("research", networkingv1.NetworkPolicyEgressRule{}), false},
		"DNS only":              {"research", "CREATE", np("research", dns), true},
		"no egress":             {"research", "CREATE", np("research"), true},
		"exempt namespace":      {"rampart", "CREATE", np("rampart", networkingv1.NetworkPolicyEgressRule{}), true},
		"kube-system":           {"kube-system", "CREATE", np("kube-system", networkingv1.NetworkPolicyEgressRule{}), true},
		"Rampart's own, intact": {"research", "UPDATE", netpol.Render("research", s.Egress), true},
	} {
		for _, engine := range []string{"trusted", "untrusted"} {
			decide := admission.Decider(trusted(t, pol))
			if engine == "untrusted" {
				decide = authz.New(nil, pol, authz.Options{})
			}
			hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: decide, Cluster: clusterWith{}}
			_, resp := post(t, hook.Handler(), "/validate", "application/json", networkPolicyReview(t, c.op, c.ns, c.np))
			if resp == nil || resp.Allowed != c.allowed {
				t.Errorf("%s (%s engine): %+v", name, engine, resp)
				continue
			}
			if c.allowed {
				continue
			}
			msg := resp.Result.Message
			if !strings.Contains(msg, admission.CheckEgressWidened) || !strings.Contains(msg, "spec.egress[0]") {
				t.Errorf("%s (%s engine): the refusal does not name the check and rule:\n%s", name, engine, msg)
			}
			hint := "rampart exception request --cluster dev --namespace research --workload allow --check rampart.egress-widened"
			if engine == "trusted" && !strings.Contains(msg, hint) {
				t.Errorf("%s: the refusal does not say how to ask for an exception:\n%s", name, msg)
			}
			if engine == "untrusted" && !strings.Contains(msg, admission.CheckUnavailable) {
				t.Errorf("%s: the refusal does not say the exception could not be decided:\n%s", name, msg)
			}
		}
	}
	if !admission.Waivable(admission.CheckEgressWidened) {
		t.Error("an exception cannot waive rampart.egress-widened")
	}
	// A field this build does not know is refused, not ignored.
	bad := strings.Replace(string(networkPolicyReview(t, "CREATE", "research", np("research", dns))), `"policyTypes"`, `"denyAll":true,"policyTypes"`, 1)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol), Cluster: clusterWith{}}
	if _, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(bad)); resp == nil || resp.Allowed || !strings.Contains(resp.Result.Message, "denyAll") {
		t.Fatalf("unknown field: %+v", resp)
	}
}

// DecodeNetworkPolicy reads what anyone who may create a NetworkPolicy writes. On any input it
// returns a policy or an error, and what it accepts the apiserver's own decoder reads the same.
func FuzzDecodeNetworkPolicy(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a"},"spec":{"podSelector":{},"egress":[{}]}}`,
		`{"spec":{"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["10.0.0.0/8"]}}],"ports":[{"port":"dns","protocol":"UDP"},{"port":1,"endPort":2}]}]}}`,
		`{"spec":{"egress":[{"to":[{"namespaceSelector":{"matchExpressions":[{"key":"a","operator":"In","values":["b"]}]}}]}]}}`,
		`{"spec":{"podSelector":{},"podSelector":{}}}`,
		`{"Spec":{}}`,
		`{"kind":"Pod"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		np, err := admission.DecodeNetworkPolicy(b)
		if (np == nil) == (err == nil) {
			t.Fatalf("DecodeNetworkPolicy returned %v and %v", np, err)
		}
		if err != nil {
			return
		}
		var ref networkingv1.NetworkPolicy
		if strict, err := sigsjson.UnmarshalStrict(b, &ref); err != nil || len(strict) > 0 {
			t.Fatalf("accepted what the apiserver's decoder refuses (%v %v): %q", err, strict, b)
		}
		if !reflect.DeepEqual(*np, ref) {
			t.Fatalf("read differently from the apiserver's decoder: %+v, %+v", *np, ref)
		}
		_ = netpol.Widens(np, policy.NetworkSettings{DNSNamespace: "kube-system", GatewayPort: 8471})
	})
}
