package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// RoleKubernetes maps a role to Kubernetes RBAC: while a grant of the role is active, Rampart
// keeps a binding of the grant's subject to ClusterRole (an existing ClusterRole) or to a
// ClusterRole it manages with Rules, in each of Namespaces (RoleBindings), or cluster-wide (a
// ClusterRoleBinding) when Namespaces is empty.
type RoleKubernetes struct {
	ClusterRole string     `yaml:"cluster_role" json:"cluster_role,omitempty"`
	Rules       []RBACRule `yaml:"rules" json:"rules,omitempty"`
	Namespaces  []string   `yaml:"namespaces" json:"namespaces,omitempty"`
}

// ResourceKubernetes names the objects of one namespace that hold a resource: a pod mounting
// any of them needs the read action on the resource, and exec, attach, port-forward and proxy
// into such a pod need the exec action. Protected data is copied only into objects named here:
// a claim cloned from a protected claim or snapshot, or bound to its volume, and a snapshot of a
// protected claim, must be named for the same resource.
type ResourceKubernetes struct {
	Namespace              string   `yaml:"namespace"`
	PersistentVolumeClaims []string `yaml:"persistent_volume_claims"`
	Secrets                []string `yaml:"secrets"`
	// CSIDrivers: every inline CSI volume of these drivers in the namespace.
	CSIDrivers []string `yaml:"csi_drivers"`
	// VolumeSnapshots (snapshot.storage.k8s.io) of the resource's claims.
	VolumeSnapshots []string `yaml:"volume_snapshots"`
}

// RBACRule is a Kubernetes PolicyRule.
type RBACRule struct {
	APIGroups     []string `yaml:"api_groups" json:"api_groups,omitempty"`
	Resources     []string `yaml:"resources" json:"resources"`
	Verbs         []string `yaml:"verbs" json:"verbs"`
	ResourceNames []string `yaml:"resource_names" json:"resource_names,omitempty"`
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
	// Admission is the baseline the admission webhook enforces on pods.
	Admission AdmissionSettings `yaml:"admission"`
	// Egress says where the default-deny NetworkPolicy lets pods go: cluster DNS and the
	// egress gateway.
	Egress NetworkSettings `yaml:"egress"`
}

// NetworkSettings locates cluster DNS and the egress gateway for the rendered NetworkPolicy.
type NetworkSettings struct {
	// DNSNamespace and DNSPodLabels select the cluster DNS pods (default kube-system,
	// k8s-app: kube-dns); port 53 over UDP and TCP.
	DNSNamespace string            `yaml:"dns_namespace"`
	DNSPodLabels map[string]string `yaml:"dns_pod_labels"`
	// GatewayNamespace and GatewayPodLabels select Rampart's egress gateway pods, or
	// GatewayCIDRs its addresses when it runs outside the cluster; GatewayPort is its port
	// (default 8471).
	GatewayNamespace string            `yaml:"gateway_namespace"`
	GatewayPodLabels map[string]string `yaml:"gateway_pod_labels"`
	GatewayCIDRs     []string          `yaml:"gateway_cidrs"`
	GatewayPort      int               `yaml:"gateway_port"`
}

// AdmissionSettings is the research baseline (beyond Pod Security restricted, always on).
type AdmissionSettings struct {
	// AllowedRegistries are image prefixes (registry host, optional port and path); empty
	// allows any registry.
	AllowedRegistries []string `yaml:"allowed_registries"`
	// RequireDigest requires images pinned by @sha256 digest.
	RequireDigest bool `yaml:"require_digest"`
	// RuntimeClass is what high-risk pods must run under (default gvisor).
	RuntimeClass string `yaml:"runtime_class"`
	// HighRiskNamespaces and HighRiskLabels (key: value) mark pods high-risk.
	HighRiskNamespaces []string          `yaml:"high_risk_namespaces"`
	HighRiskLabels     map[string]string `yaml:"high_risk_labels"`
	// WorkloadControllers are the Kubernetes users that may create pods and controllers using a
	// workload's grant or exception that someone else requested: controllers that create
	// objects only from templates the admission webhook admitted (and checked against the
	// grant's requester). Anyone else uses a workload's grants only if they requested them.
	// Nil means DefaultWorkloadControllers.
	WorkloadControllers []string `yaml:"workload_controllers"`
	// ExemptNamespaces are not reviewed at all (the webhook configuration leaves them out), get
	// no default-deny NetworkPolicy and are not scanned: e.g. Rampart's own namespace.
	// kube-system, kube-public and kube-node-lease are always exempt; no other namespace is
	// exempt by its name (kube-tools is governed unless listed here).
	ExemptNamespaces []string `yaml:"exempt_namespaces"`
}

// DefaultWorkloadControllers are the kube-controller-manager's controllers of the kinds the
// admission webhook reviews, each under its own service account (--use-service-account-credentials,
// kubeadm's default). Not the replication-controller: ReplicationControllers are reviewed too, but
// a cluster that still uses them can list it.
var DefaultWorkloadControllers = []string{
	"system:serviceaccount:kube-system:cronjob-controller",
	"system:serviceaccount:kube-system:daemon-set-controller",
	"system:serviceaccount:kube-system:deployment-controller",
	"system:serviceaccount:kube-system:job-controller",
	"system:serviceaccount:kube-system:replicaset-controller",
	"system:serviceaccount:kube-system:statefulset-controller",
}

// Controllers returns WorkloadControllers, or DefaultWorkloadControllers when it is nil.
func (a AdmissionSettings) Controllers() []string {
	if a.WorkloadControllers == nil {
		return DefaultWorkloadControllers
	}
	return a.WorkloadControllers
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

func (p *Policy) validateResourceKubernetes(r *Resource) {
	k := r.Kubernetes
	if k == nil {
		return
	}
	if !dns1123Label.MatchString(k.Namespace) || len(k.Namespace) > 63 {
		r.src.errorf("kubernetes.namespace", "%q is not a namespace name (lowercase letters, digits and '-', at most 63)", k.Namespace)
	}
	if len(k.PersistentVolumeClaims)+len(k.Secrets)+len(k.CSIDrivers)+len(k.VolumeSnapshots) == 0 {
		r.src.errorf("kubernetes", "name at least one of persistent_volume_claims, secrets, csi_drivers or volume_snapshots")
	}
	for field, names := range k.objects() {
		for i, n := range names {
			if len(n) > 253 || !k8sName.MatchString(n) || strings.Contains(n, ":") {
				r.src.errorf(fmt.Sprintf("kubernetes.%s[%d]", field, i), "%q is not a Kubernetes object name", n)
			}
		}
	}
}

// objects lists the names the section gives, by field.
func (k *ResourceKubernetes) objects() map[string][]string {
	return map[string][]string{"persistent_volume_claims": k.PersistentVolumeClaims, "secrets": k.Secrets, "csi_drivers": k.CSIDrivers,
		"volume_snapshots": k.VolumeSnapshots}
}

// ProtectedVolume is a cluster object that holds a resource.
type ProtectedVolume struct {
	Kind     string // PersistentVolumeClaim, Secret, CSIDriver or VolumeSnapshot
	Name     string
	Resource string
}

// ProtectedVolumes returns the objects of namespace that hold catalogue resources, keyed by
// Kind+"/"+Name (Kind PersistentVolumeClaim, Secret, CSIDriver or VolumeSnapshot). The map is
// shared: do not modify it.
func (p *Policy) ProtectedVolumes(namespace string) map[string]ProtectedVolume {
	return p.protected[namespace]
}

// ProtectedNamespaces lists, sorted, the namespaces that hold objects of catalogue resources.
func (p *Policy) ProtectedNamespaces() []string {
	return slices.Sorted(maps.Keys(p.protected))
}

// validateProtectedUnique: one cluster object holds one resource, or which grant it needs
// would be ambiguous.
func (p *Policy) validateProtectedUnique() {
	owner := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(p.resources)) {
		r := p.resources[name]
		k := r.Kubernetes
		if k == nil {
			continue
		}
		for field, names := range k.objects() {
			for i, n := range names {
				key := k.Namespace + "/" + field + "/" + n
				if prev, dup := owner[key]; dup && prev != r.Name {
					r.src.errorf(fmt.Sprintf("kubernetes.%s[%d]", field, i), "%s %q in namespace %s already holds resource %q; one object holds one resource", field, n, k.Namespace, prev)
				}
				owner[key] = r.Name
			}
		}
	}
}

func (p *Policy) compileProtected() {
	p.protected = map[string]map[string]ProtectedVolume{}
	for _, r := range p.resources {
		k := r.Kubernetes
		if k == nil {
			continue
		}
		m := p.protected[k.Namespace]
		if m == nil {
			m = map[string]ProtectedVolume{}
			p.protected[k.Namespace] = m
		}
		for kind, names := range map[string][]string{"PersistentVolumeClaim": k.PersistentVolumeClaims, "Secret": k.Secrets, "CSIDriver": k.CSIDrivers,
			"VolumeSnapshot": k.VolumeSnapshots} {
			for _, n := range names {
				m[kind+"/"+n] = ProtectedVolume{Kind: kind, Name: n, Resource: r.Name}
			}
		}
	}
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
	a := &k.Admission
	for field, list := range map[string][]string{"high_risk_namespaces": a.HighRiskNamespaces, "exempt_namespaces": a.ExemptNamespaces} {
		for i, ns := range list {
			if !dns1123Label.MatchString(ns) || len(ns) > 63 {
				s.src.errorf(fmt.Sprintf("kubernetes.admission.%s[%d]", field, i), "%q is not a namespace name", ns)
			}
		}
	}
	for i, u := range a.WorkloadControllers {
		if u == "" || strings.ContainsAny(u, " \t\n") {
			s.src.errorf(fmt.Sprintf("kubernetes.admission.workload_controllers[%d]", i), "%q is not a Kubernetes user name such as system:serviceaccount:kube-system:job-controller", u)
		}
	}
	for i, reg := range a.AllowedRegistries {
		if reg == "" || strings.ContainsAny(reg, " \t\n@") || strings.HasPrefix(reg, "/") {
			s.src.errorf(fmt.Sprintf("kubernetes.admission.allowed_registries[%d]", i), "%q is not a registry prefix such as registry.internal.example/research", reg)
		}
	}
	if a.RuntimeClass != "" && !k8sName.MatchString(a.RuntimeClass) {
		s.src.errorf("kubernetes.admission.runtime_class", "%q is not a RuntimeClass name", a.RuntimeClass)
	}
	e := &k.Egress
	if e.DNSNamespace == "" {
		e.DNSNamespace = "kube-system"
	}
	if len(e.DNSPodLabels) == 0 {
		e.DNSPodLabels = map[string]string{"k8s-app": "kube-dns"}
	}
	if e.GatewayPort == 0 {
		e.GatewayPort = 8471
	} else if e.GatewayPort < 1 || e.GatewayPort > 65535 {
		s.src.errorf("kubernetes.egress.gateway_port", "%d is not a port", e.GatewayPort)
	}
	for i, c := range e.GatewayCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			s.src.errorf(fmt.Sprintf("kubernetes.egress.gateway_cidrs[%d]", i), "%q is not a CIDR such as 10.0.0.5/32", c)
		}
	}
	if (e.GatewayNamespace == "") != (len(e.GatewayPodLabels) == 0) {
		s.src.errorf("kubernetes.egress", "gateway_namespace and gateway_pod_labels go together")
	}
	if strings.ContainsAny(k.UserPrefix, " \t\n/") {
		s.src.errorf("kubernetes.user_prefix", "user_prefix %q contains a space or '/'", k.UserPrefix)
	}
}

// Kubernetes returns the cluster settings (zero value, report mode, when none are given).
func (p *Policy) Kubernetes() KubernetesSettings {
	if p.settings == nil || p.settings.Kubernetes == nil {
		return KubernetesSettings{Drift: DriftReport, Egress: NetworkSettings{DNSNamespace: "kube-system",
			DNSPodLabels: map[string]string{"k8s-app": "kube-dns"}, GatewayPort: 8471}}
	}
	return *p.settings.Kubernetes
}
