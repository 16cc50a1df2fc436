package rbac

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Drift: bindings Rampart did not make that give what only a grant should, or that reach past
// admission.
//
// The apiserver's own bootstrap bindings are known by name and content: bootstrap.json holds
// every RoleBinding and ClusterRoleBinding kube-apiserver v1.37 creates at start (read from the
// real apiserver; TestBootstrapBindingsPinned compares them). A binding is the apiserver's only
// if its namespace, name, role and subjects are exactly those. The kubernetes.io/bootstrapping
// label is not consulted: anyone who may create a binding may set it.

//go:embed bootstrap.json
var bootstrapJSON []byte

// bootstrapBinding is one binding the apiserver bootstraps.
type bootstrapBinding struct {
	Namespace string           `json:"namespace,omitempty"`
	Name      string           `json:"name"`
	RoleRef   bootstrapRef     `json:"roleRef"`
	Subjects  []bootstrapActor `json:"subjects"`
}

type bootstrapRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type bootstrapActor struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

var bootstrapSet = func() map[string]bootstrapBinding {
	var list []bootstrapBinding
	if err := json.Unmarshal(bootstrapJSON, &list); err != nil {
		panic("kube/rbac: bootstrap.json: " + err.Error())
	}
	out := make(map[string]bootstrapBinding, len(list))
	for _, b := range list {
		out[b.Namespace+"/"+b.Name] = b
	}
	return out
}()

// Bootstrap reports whether the binding in namespace ns ("" for a ClusterRoleBinding) named
// name, with roleRef and subjects, is exactly one the apiserver creates itself.
func Bootstrap(ns, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) bool {
	b, ok := bootstrapSet[ns+"/"+name]
	if !ok || ref.APIGroup != rbacv1.GroupName || ref.Kind != b.RoleRef.Kind || ref.Name != b.RoleRef.Name {
		return false
	}
	have := make([]bootstrapActor, 0, len(subjects))
	for _, s := range subjects {
		group := rbacv1.GroupName
		if s.Kind == rbacv1.ServiceAccountKind {
			group = ""
		}
		if s.APIGroup != group {
			return false
		}
		have = append(have, bootstrapActor{Kind: s.Kind, Namespace: s.Namespace, Name: s.Name})
	}
	return reflect.DeepEqual(have, append([]bootstrapActor{}, b.Subjects...))
}

// BootstrapNames lists the pinned bootstrap bindings as namespace/name ("/name" for a
// ClusterRoleBinding), sorted.
func BootstrapNames() []string {
	out := make([]string, 0, len(bootstrapSet))
	for k := range bootstrapSet {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Drift kinds.
const (
	// DriftProtected is a binding to a protected ClusterRole (kubernetes.protected_cluster_roles,
	// or a rampart:<role> ClusterRole) that Rampart did not make: deleted in enforce mode.
	DriftProtected = "protected-role"
	// DriftNodesProxy is a ClusterRoleBinding whose ClusterRole grants nodes/proxy: through it
	// the kubelet's API (exec, logs, port-forward into any pod of the node) is reached without
	// any admission webhook being called. Reported in either mode, never deleted: it is not
	// Rampart's, and monitoring agents hold it legitimately.
	DriftNodesProxy = "nodes-proxy"
)

// Suspect is a binding drift detection reports.
type Suspect struct {
	Binding metav1.Object
	Kind    string // DriftProtected or DriftNodesProxy
	Why     string
}

// FindDrift returns the bindings among rbs and crbs that Rampart did not make (by its label:
// those with the label are checked against the grants instead) and that bind a protected
// ClusterRole, or grant nodes/proxy cluster-wide; the apiserver's exact bootstrap bindings
// are left out. rules returns a ClusterRole's rules (false when it does not exist).
func FindDrift(s policy.KubernetesSettings, rbs []*rbacv1.RoleBinding, crbs []*rbacv1.ClusterRoleBinding, rules func(clusterRole string) ([]rbacv1.PolicyRule, bool)) []Suspect {
	protected := func(ref rbacv1.RoleRef) bool {
		return ref.Kind == "ClusterRole" && (strings.HasPrefix(ref.Name, ClusterRolePrefix) || slices.Contains(s.ProtectedClusterRoles, ref.Name))
	}
	var out []Suspect
	for _, b := range rbs {
		if b.Labels[LabelManagedBy] == ManagedBy || Bootstrap(b.Namespace, b.Name, b.RoleRef, b.Subjects) {
			continue
		}
		if protected(b.RoleRef) {
			out = append(out, Suspect{Binding: b, Kind: DriftProtected, Why: "binds a protected ClusterRole without a Rampart grant"})
		}
		// A RoleBinding grants nothing on nodes, which are not namespaced.
	}
	for _, b := range crbs {
		if b.Labels[LabelManagedBy] == ManagedBy || Bootstrap("", b.Name, b.RoleRef, b.Subjects) {
			continue
		}
		if protected(b.RoleRef) {
			out = append(out, Suspect{Binding: b, Kind: DriftProtected, Why: "binds a protected ClusterRole without a Rampart grant"})
			continue
		}
		if b.RoleRef.Kind != "ClusterRole" || len(b.Subjects) == 0 {
			continue
		}
		if rs, ok := rules(b.RoleRef.Name); ok && GrantsNodesProxy(rs) {
			out = append(out, Suspect{Binding: b, Kind: DriftNodesProxy,
				Why: "grants nodes/proxy, which reaches the kubelet (exec, logs, port-forward into every pod of a node) without any admission webhook being called"})
		}
	}
	return out
}

// GrantsNodesProxy reports whether rules allow any verb on nodes/proxy, as the apiserver's RBAC
// authorizer matches resources: "*", "nodes/proxy", or "*/proxy" in the core group (or "*").
func GrantsNodesProxy(rules []rbacv1.PolicyRule) bool {
	for _, r := range rules {
		if len(r.Verbs) == 0 || !(slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, rbacv1.APIGroupAll)) {
			continue
		}
		for _, res := range r.Resources {
			if res == rbacv1.ResourceAll || res == "nodes/proxy" || res == "*/proxy" {
				return true
			}
		}
	}
	return false
}

// drift reports (and in enforce mode deletes) the bindings FindDrift finds.
func (r *Reconciler) drift(ctx context.Context, s policy.KubernetesSettings) []error {
	rbs, _ := r.rb.List(labels.Everything())
	crbs, _ := r.crb.List(labels.Everything())
	suspects := FindDrift(s, rbs, crbs, func(name string) ([]rbacv1.PolicyRule, bool) {
		cr, err := r.cr.Get(name)
		if err != nil {
			return nil, false
		}
		return cr.Rules, true
	})
	var errs []error
	for _, sus := range suspects {
		b := sus.Binding
		details := map[string]any{"drift": sus.Kind}
		if s.Drift == policy.DriftEnforce && sus.Kind == DriftProtected {
			if done, err := r.deleteBinding(ctx, b); err != nil || !done {
				errs = append(errs, err)
				continue
			}
			r.record(ctx, "kube.drift", audit.ActivityRead, "Revoke Privileges", audit.SeverityHigh, b,
				fmt.Sprintf("deleted %s: it %s (drift: enforce)", describe(b), sus.Why), details)
			continue
		}
		r.mu.Lock()
		seen := r.reported[b.GetUID()]
		r.mu.Unlock()
		if seen {
			continue
		}
		msg := fmt.Sprintf("%s %s (drift: report; set kubernetes.drift: enforce to remove such bindings)", describe(b), sus.Why)
		if sus.Kind == DriftNodesProxy {
			msg = fmt.Sprintf("%s %s; Rampart reports it and does not remove it: remove it unless its subjects must reach kubelets", describe(b), sus.Why)
		}
		e := r.event("kube.drift", audit.ActivityOther, "Other", audit.SeverityHigh, b, msg, details)
		var err error
		if r.RecordOnce != nil {
			err = r.RecordOnce(ctx, "kube.drift/"+string(b.GetUID()), e)
		} else if r.Record != nil {
			err = r.Record(ctx, e)
		}
		if err != nil {
			// Not remembered: the next pass tries again.
			r.Log.Error("kube rbac: cannot record drift in the ledger", "err", err, "binding", describe(b))
			continue
		}
		r.mu.Lock()
		r.reported[b.GetUID()] = true
		r.mu.Unlock()
	}
	return errs
}
