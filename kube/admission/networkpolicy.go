package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	networkingv1 "k8s.io/api/networking/v1"
	sigsjson "sigs.k8s.io/json"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// CheckEgressWidened refuses a NetworkPolicy that widens egress beyond the default-deny policy
// (netpol.Widens) in a governed namespace, unless an approved exception covers it.
const CheckEgressWidened = "rampart.egress-widened"

// NetworkPolicies.
//
// Any egress rule of any NetworkPolicy that selects a pod adds to what the pod may reach, so a
// policy that allows more than the default-deny one (netpol.Widens says exactly when) undoes it
// for the pods it selects: podSelector: {} with egress: [{}] undoes it for the whole namespace.
// The webhook refuses such a policy in a governed namespace (create and update), unless an
// approved exception covers it. An exception to rampart.egress-widened is granted, like every
// exception, to k8s:<cluster>/<namespace>/<name>, where the name is the NetworkPolicy's (a
// NetworkPolicy has no service account): it lets a NetworkPolicy of that name in that namespace
// widen egress while the grant is active. The keeper (netpol.Keeper) removes or reports, after
// the fact, the policies that widen egress without one: made before the webhook saw
// NetworkPolicies, while the namespace was exempt, or under an exception that has ended.

// NetworkPolicyException asks the decision engine whether an approved exception lets the
// NetworkPolicy name in namespace ns widen egress. Only a grant makes an exception (a standing
// binding does not): ok is false without one, and d says why.
func NetworkPolicyException(decide func(authz.Query) authz.Decision, cluster, ns, name string) (d authz.Decision, ok bool) {
	d = decide(authz.Query{Subject: ServiceAccountSubject(cluster, ns, name), Action: ExemptAction(CheckEgressWidened), Resource: NamespaceResource(ns)})
	return d, d.Allowed && d.GrantID != ""
}

// DecodeNetworkPolicy decodes a NetworkPolicy from the JSON the apiserver sends in an admission
// review, strictly, as the apiserver decodes (sigs.k8s.io/json): an unknown or duplicate field,
// or a name in the wrong case, is an error that names the field. A field this build does not
// know may change what a policy allows, so it is refused rather than ignored.
func DecodeNetworkPolicy(raw []byte) (*networkingv1.NetworkPolicy, error) {
	np := &networkingv1.NetworkPolicy{}
	strict, err := sigsjson.UnmarshalStrict(raw, np)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("NetworkPolicy: %s: a JSON %s cannot be a %s", te.Field, te.Value, te.Type)
		}
		return nil, fmt.Errorf("NetworkPolicy: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("NetworkPolicy: %v (a field this build of Rampart does not know, or a misspelling: names are case-sensitive)", strict[0])
	}
	if np.Kind != "" && np.Kind != "NetworkPolicy" {
		return nil, fmt.Errorf("NetworkPolicy: kind is %q", np.Kind)
	}
	return np, nil
}

// validateNetworkPolicy decides a NetworkPolicy's create or update. A policy that widens
// nothing needs no decision, so it is admitted even while the decision engine is unavailable.
func (h *Webhook) validateNetworkPolicy(ctx context.Context, req *admissionv1.AdmissionRequest, pol *policy.Policy, what string) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	s := pol.Kubernetes()
	np, err := DecodeNetworkPolicy(req.Object.Raw)
	if err != nil {
		return h.deny(ctx, req, what, []refusal{{Check: "rampart.malformed", Message: err.Error(), Fix: "submit a valid object"}}, "")
	}
	if np.Namespace == "" {
		np.Namespace = req.Namespace
	}
	if np.Name == "" {
		np.Name = req.Name
	}
	if !netpol.Governed(req.Namespace, s.Admission.ExemptNamespaces) || np.DeletionTimestamp != nil {
		// Not governed; or going away, and only its finalizers are being removed.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	ws := netpol.Widens(np, s.Egress)
	if len(ws) == 0 {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	d, ok := NetworkPolicyException(h.Decide.Check, s.Cluster, req.Namespace, np.Name)
	if ok {
		msg := fmt.Sprintf("rampart: %s widens egress (%s) under an approved exception: %s (grant %s, until %s)", what, ws[0].Field, CheckEgressWidened, d.GrantID, d.ExpiresAt.UTC().Format(time.RFC3339))
		h.record(ctx, req, audit.Event{Code: "kube.admission.excepted", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
			Severity: audit.SeverityMedium, Message: msg, Details: map[string]any{"exceptions": []UsedException{{Check: CheckEgressWidened, GrantID: d.GrantID, ExpiresAt: d.ExpiresAt}}}})
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{msg}}
	}
	var out []refusal
	for _, w := range ws {
		out = append(out, refusal{Check: CheckEgressWidened, Field: w.Field, Message: w.Message,
			Fix: "narrow the rule to cluster DNS and the egress gateway, or remove it: pods reach the outside through the gateway, which decides per destination"})
	}
	hint := ""
	if np.Name != "" && !d.Unavailable {
		hint = fmt.Sprintf("\nWhere the pods must reach a destination directly, ask for a time-bound exception for this NetworkPolicy (it needs the approvals the policy sets for %s; say what compensates):\n  %s",
			NamespaceResource(req.Namespace), ExceptionCommand(s.Cluster, req.Namespace, np.Name, CheckEgressWidened))
	}
	if d.Unavailable {
		out = append(out, refusal{Check: CheckUnavailable, Message: "whether an exception covers it cannot be decided now: " + d.Reason, Fix: "retry when the Rampart control plane is healthy (GET /readyz)"})
	}
	return h.deny(ctx, req, what, out, hint)
}
