package policy

import (
	"fmt"
	"regexp"
	"strings"
)

// RoleKubernetes maps a role to Kubernetes RBAC: while a grant of the role is active, Rampart
// keeps a binding of the grant's subject to ClusterRole (an existing ClusterRole) or to a
// ClusterRole it manages with Rules, in each of Namespaces (RoleBindings), or cluster-wide (a
// ClusterRoleBinding) when Namespaces is empty.
type RoleKubernetes struct {
	ClusterRole string     `yaml:"cluster_role"`
	Rules       []RBACRule `yaml:"rules"`
	Namespaces  []string   `yaml:"namespaces"`
}

// RBACRule is a Kubernetes PolicyRule.
type RBACRule struct {
	APIGroups     []string `yaml:"api_groups"`
	Resources     []string `yaml:"resources"`
	Verbs         []string `yaml:"verbs"`
	ResourceNames []string `yaml:"resource_names"`
}

// KubernetesSettings configures enforcement in clusters.
type KubernetesSettings struct {
	// Cluster is this cluster's name in workload subjects (k8s:<cluster>/<namespace>/<sa>).
	Cluster string `yaml:"cluster"`
	// UserPrefix is prepended to a person's subject to form the Kubernetes user name, as the
	// apiserver's --oidc-username-prefix does (e.g. "oidc:").
	UserPrefix string `yaml:"user_prefix"`
	// ProtectedClusterRoles may be bound only by Rampart: any other binding to one is drift.
	ProtectedClusterRoles []string `yaml:"protected_cluster_roles"`
	// Drift is report (a ledger entry) or enforce (the entry, and the binding is deleted).
	Drift string `yaml:"drift"`
}

// Drift modes.
const (
	DriftReport  = "report"
	DriftEnforce = "enforce"
)

// dns1123Label is a Kubernetes namespace name.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// k8sName is a Kubernetes object name (a DNS subdomain, or for RBAC objects a path segment
// name; ClusterRoles such as system:aggregate-to-view use ':').
var k8sName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$`)

var rbacVerbs = map[string]bool{"*": true, "get": true, "list": true, "watch": true, "create": true, "update": true,
	"patch": true, "delete": true, "deletecollection": true, "impersonate": true, "bind": true, "escalate": true,
	"use": true, "approve": true, "sign": true, "proxy": true}

func (p *Policy) validateRoleKubernetes(r *Role) {
	k := r.Kubernetes
	if k == nil {
		return
	}
	switch {
	case k.ClusterRole != "" && len(k.Rules) > 0:
		r.src.errorf("kubernetes", "give cluster_role (an existing ClusterRole) or rules (a ClusterRole Rampart manages), not both")
	case k.ClusterRole == "" && len(k.Rules) == 0:
		r.src.errorf("kubernetes", "give cluster_role (an existing ClusterRole to bind) or rules")
	case k.ClusterRole != "" && (len(k.ClusterRole) > 253 || !k8sName.MatchString(k.ClusterRole)):
		r.src.errorf("kubernetes.cluster_role", "%q is not a Kubernetes object name", k.ClusterRole)
	}
	for i, rule := range k.Rules {
		f := fmt.Sprintf("kubernetes.rules[%d]", i)
		if len(rule.Verbs) == 0 {
			r.src.errorf(f+".verbs", "list at least one verb (get, list, watch, …)")
		}
		for j, v := range rule.Verbs {
			if !rbacVerbs[v] {
				r.src.errorf(fmt.Sprintf("%s.verbs[%d]", f, j), "unknown verb %q", v)
			}
		}
		if len(rule.Resources) == 0 {
			r.src.errorf(f+".resources", "list at least one resource (pods, secrets, …)")
		}
		for j, res := range rule.Resources {
			if res == "" || strings.ContainsAny(res, " \t\n") {
				r.src.errorf(fmt.Sprintf("%s.resources[%d]", f, j), "%q is not a resource name", res)
			}
		}
	}
	seen := map[string]bool{}
	for i, ns := range k.Namespaces {
		f := fmt.Sprintf("kubernetes.namespaces[%d]", i)
		switch {
		case len(ns) > 63 || !dns1123Label.MatchString(ns):
			r.src.errorf(f, "%q is not a namespace name (lowercase letters, digits and '-', at most 63)", ns)
		case seen[ns]:
			r.src.errorf(f, "namespace %q is listed twice", ns)
		}
		seen[ns] = true
	}
	// Cluster-wide access to a protected role through a role that is not critical would be a
	// standing path around multi-party approval; the approval policy decides, but say so.
}

func (p *Policy) validateKubernetesSettings(s *Settings) {
	k := s.Kubernetes
	if k == nil {
		return
	}
	switch k.Drift {
	case "":
		k.Drift = DriftReport
	case DriftReport, DriftEnforce:
	default:
		s.src.errorf("kubernetes.drift", "drift must be report or enforce, not %q", k.Drift)
	}
	if k.Cluster != "" && !dns1123Label.MatchString(k.Cluster) {
		s.src.errorf("kubernetes.cluster", "%q is not a cluster name (lowercase letters, digits and '-')", k.Cluster)
	}
	for i, cr := range k.ProtectedClusterRoles {
		if !k8sName.MatchString(cr) {
			s.src.errorf(fmt.Sprintf("kubernetes.protected_cluster_roles[%d]", i), "%q is not a ClusterRole name", cr)
		}
	}
	if strings.ContainsAny(k.UserPrefix, " \t\n/") {
		s.src.errorf("kubernetes.user_prefix", "user_prefix %q contains a space or '/'", k.UserPrefix)
	}
}

// Kubernetes returns the cluster settings (zero value, report mode, when none are given).
func (p *Policy) Kubernetes() KubernetesSettings {
	if p.settings == nil || p.settings.Kubernetes == nil {
		return KubernetesSettings{Drift: DriftReport}
	}
	return *p.settings.Kubernetes
}
