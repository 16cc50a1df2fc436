package iac

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/kube/scan"
	"rampart.dev/rampart/policy"
)

// Checks of declared objects beyond the admission webhook's.
const (
	// CheckSecretData: a Secret manifest carries data (data or stringData), so the secret is in
	// Git, readable by everyone who can read the repository and kept in its history forever.
	CheckSecretData = "rampart.secret-in-git"
	// CheckMalformed: an object of a kind the checks read does not decode strictly (unknown,
	// duplicate or miscased fields, a wrong apiVersion): the webhook would refuse it too.
	CheckMalformed = "rampart.malformed"
)

// Finding is one problem with one declared object.
type Finding struct {
	Source    Source `json:"source"`
	Namespace string `json:"namespace,omitempty"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Check     string `json:"check"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
	// Exception is the command that asks for an exception to the check, when one can waive it.
	Exception string `json:"exception,omitempty"`
	// Excepted is the approved exception that waives the finding, nil when none does: an
	// excepted finding is reported, and does not fail the check.
	Excepted *Excepted `json:"excepted,omitempty"`
}

// Excepted is the active exception (a grant) that waives a finding, and when it ends.
type Excepted struct {
	GrantID   string    `json:"grant_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Object is "Kind namespace/name", or "Kind name" for a cluster-scoped object.
func (f Finding) Object() string {
	if f.Namespace == "" {
		return f.Kind + " " + f.Name
	}
	return f.Kind + " " + f.Namespace + "/" + f.Name
}

// Failing returns the findings no exception waives.
func Failing(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Excepted == nil {
			out = append(out, f)
		}
	}
	return out
}

// Options configures Check.
type Options struct {
	// Policy is the policy in force (its kubernetes settings, its protected volumes).
	Policy *policy.Policy
	// Decide answers which grants are active: exceptions, and the protected-volume grants of
	// workloads' service accounts (the server's decision engine, asked through the API). Nil
	// decides offline: nothing is granted, so no exception waives anything and every reference
	// to protected data fails.
	Decide func(authz.Query) authz.Decision
	// DefaultNamespace is the namespace of namespaced objects that name none (what kubectl
	// apply would use); "default" when empty.
	DefaultNamespace string
}

// offline is the decision without a server: nothing is granted.
func offline(authz.Query) authz.Decision {
	return authz.Decision{Reason: "checked offline, no server was asked which grants are active (give --addr to ask one)", Unavailable: true}
}

// clusterScoped are the kinds, of the API groups Kubernetes serves itself, that have no
// namespace; any other kind without one lands in the default namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"StorageClass": true, "CSIDriver": true, "CSINode": true, "VolumeAttachment": true, "PriorityClass": true,
	"RuntimeClass": true, "IngressClass": true, "CustomResourceDefinition": true, "APIService": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true, "ValidatingAdmissionPolicy": true,
	"ValidatingAdmissionPolicyBinding": true, "MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"CertificateSigningRequest": true, "FlowSchema": true, "PriorityLevelConfiguration": true,
	"VolumeSnapshotClass": true, "VolumeSnapshotContent": true, "ClusterTrustBundle": true,
}

// Namespaced reports whether objects of kind live in a namespace.
func Namespaced(kind string) bool { return !clusterScoped[kind] }

// Check checks every declared object with the admission webhook's own code: Pod Security
// restricted and the research baseline on every workload (kube/podsec; images pinned by digest
// whatever the policy says: what is in Git is deployed again and again, and a tag can move),
// protected data reached by workloads, claims and snapshots (kube/admission); every governed
// namespace has an intact default-deny egress NetworkPolicy and none widens it (kube/netpol);
// no binding to a protected ClusterRole (kube/rbac's drift, with Rampart's managed-by label not
// believed: Rampart makes its bindings from grants, never from Git); no Secret carries data.
// Findings an active exception waives are returned with Excepted set, as the webhook admits
// them. The findings are sorted by source.
func Check(ctx context.Context, objs []Object, o Options) []Finding {
	c := newChecker(o)
	for i := range objs {
		c.object(ctx, &objs[i])
	}
	c.namespaces()
	c.rbac()
	slices.SortStableFunc(c.out, func(a, b Finding) int {
		return cmp.Or(strings.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line),
			strings.Compare(a.Object(), b.Object()), strings.Compare(a.Field, b.Field), strings.Compare(a.Check, b.Check))
	})
	return c.out
}

// checker holds what Check gathers across objects.
type checker struct {
	o        Options
	s        policy.KubernetesSettings
	cfg      podsec.Config
	decide   func(authz.Query) authz.Decision
	out      []Finding
	ns       map[string]*Object // namespaces in use → the Namespace object, or the first object in it
	netpols  map[string][]*networkingv1.NetworkPolicy
	wls      map[string][]*admission.ExceptionSet // namespace → its workloads' exceptions
	rbs      []*rbacv1.RoleBinding
	crbs     []*rbacv1.ClusterRoleBinding
	roles    map[string][]rbacv1.PolicyRule
	bindings map[string]*Object // "ns/name" of a binding → its object
}

func newChecker(o Options) *checker {
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = "default"
	}
	decide := o.Decide
	if decide == nil {
		decide = offline
	}
	s := o.Policy.Kubernetes()
	cfg := podsec.Config{AllowedRegistries: s.Admission.AllowedRegistries, RequireDigest: true, RuntimeClass: s.Admission.RuntimeClass,
		HighRiskNamespaces: s.Admission.HighRiskNamespaces, HighRiskLabels: s.Admission.HighRiskLabels}
	return &checker{o: o, s: s, cfg: cfg, decide: decide, ns: map[string]*Object{}, netpols: map[string][]*networkingv1.NetworkPolicy{},
		wls: map[string][]*admission.ExceptionSet{}, roles: map[string][]rbacv1.PolicyRule{}, bindings: map[string]*Object{}}
}

func (c *checker) add(obj *Object, ns string, v podsec.Violation, ex *Excepted, exception string) {
	c.out = append(c.out, Finding{Source: obj.Source, Namespace: ns, Kind: obj.Kind, Name: obj.Name, Check: v.Check, Field: v.Field,
		Message: v.Message, Fix: v.Fix, Excepted: ex, Exception: exception})
}

func (c *checker) malformed(obj *Object, ns string, err error) {
	c.add(obj, ns, podsec.Violation{Check: CheckMalformed, Message: err.Error(), Fix: "fix the manifest: the apiserver and the admission webhook would refuse it"}, nil, "")
}

// object checks one object and gathers what the namespace-wide checks need.
func (c *checker) object(ctx context.Context, obj *Object) {
	ns := ""
	if Namespaced(obj.Kind) {
		ns = cmp.Or(obj.Namespace, c.o.DefaultNamespace)
		if _, ok := c.ns[ns]; !ok {
			c.ns[ns] = obj
		}
	}
	if obj.Kind == "Namespace" && obj.APIVersion == "v1" {
		c.ns[obj.Name] = obj
		return
	}
	if workloadGroups[groupOf(obj.APIVersion)] {
		if _, err := podsec.WorkloadOf(obj.Kind, nil); !isUnsupported(err) {
			c.workload(ctx, obj, ns) // an old apiVersion is refused there, as the apiserver refuses it
			return
		}
	}
	group := obj.APIVersion
	switch {
	case group == "v1" && obj.Kind == "Secret":
		c.secret(obj, ns)
	case group == "v1" && obj.Kind == "PersistentVolumeClaim":
		var pvc corev1.PersistentVolumeClaim
		if err := podsec.DecodeObject(obj.Kind, obj.JSON, &pvc); err != nil {
			c.malformed(obj, ns, err)
			return
		}
		data := admission.DataCheck{Policy: c.o.Policy, Settings: c.s, Decide: c.decide}
		vs, err := admission.ClaimViolations(ctx, data, ns, obj.Name, &pvc.Spec)
		if err != nil {
			c.malformed(obj, ns, err)
		}
		for _, v := range vs {
			c.add(obj, ns, v, nil, "")
		}
	case group == admission.SnapshotGroup+"/v1" && obj.Kind == "VolumeSnapshot":
		vs, err := admission.DecodeVolumeSnapshot(obj.JSON)
		if err != nil {
			c.malformed(obj, ns, err)
			return
		}
		if v := admission.SnapshotViolation(c.o.Policy, ns, obj.Name, vs.ClaimName()); v != nil {
			c.add(obj, ns, *v, nil, "")
		}
	case group == "networking.k8s.io/v1" && obj.Kind == "NetworkPolicy":
		np, err := admission.DecodeNetworkPolicy(obj.JSON)
		if err != nil {
			c.malformed(obj, ns, err)
			return
		}
		np.Namespace = ns
		c.netpols[ns] = append(c.netpols[ns], np)
		c.widening(obj, np)
	case group == "rbac.authorization.k8s.io/v1":
		c.rbacObject(obj, ns)
	}
}

// workloadGroups are the API groups of the workload kinds, now and in the past; a kind of the
// same name in another group (a custom resource) is not a workload the checks know.
var workloadGroups = map[string]bool{"": true, "apps": true, "batch": true, "extensions": true}

// groupOf is the group of an apiVersion ("" for the core group's "v1").
func groupOf(apiVersion string) string {
	g, _, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return ""
	}
	return g
}

// isUnsupported reports whether WorkloadOf refused the kind itself.
func isUnsupported(err error) bool {
	de, ok := err.(*podsec.DecodeError)
	return ok && de.Err == podsec.ErrUnsupportedKind
}

// workload runs the admission webhook's checks on a workload.
func (c *checker) workload(ctx context.Context, obj *Object, ns string) {
	wl, err := podsec.WorkloadOf(obj.Kind, obj.JSON)
	if err != nil {
		c.malformed(obj, ns, err)
		return
	}
	ex := admission.Exceptions(c.decide, c.s.Cluster, ns, wl)
	c.wls[ns] = append(c.wls[ns], ex)
	waived := map[string]*Excepted{}
	exempt := func(check string) *Excepted {
		if e, ok := waived[check]; ok {
			return e
		}
		var e *Excepted
		if ex.Exempt(check) {
			for _, u := range ex.Used() {
				if u.Check == check {
					e = &Excepted{GrantID: u.GrantID, ExpiresAt: u.ExpiresAt}
				}
			}
		}
		waived[check] = e
		return e
	}
	// Every violation, excepted or not, so that an excepted one is shown with its expiry.
	for _, v := range podsec.Check(wl, ns, c.cfg, nil) {
		var e *Excepted
		cmd := ""
		if admission.Waivable(v.Check) {
			e = exempt(v.Check)
			cmd = admission.ExceptionCommand(c.s.Cluster, ns, wl.Spec.ServiceAccountName, v.Check)
		}
		c.add(obj, ns, v, e, cmd)
	}
	data := admission.DataCheck{Policy: c.o.Policy, Settings: c.s, Decide: c.decide}
	for _, v := range data.Violations(ctx, wl, ns) {
		c.add(obj, ns, v, nil, "")
	}
}

// secret refuses a Secret manifest with data.
func (c *checker) secret(obj *Object, ns string) {
	var s struct {
		Data       map[string]json.RawMessage `json:"data"`
		StringData map[string]json.RawMessage `json:"stringData"`
	}
	if err := json.Unmarshal(obj.JSON, &s); err != nil {
		c.malformed(obj, ns, fmt.Errorf("a Secret: %w", err))
		return
	}
	for field, m := range map[string]map[string]json.RawMessage{"data": s.Data, "stringData": s.StringData} {
		if len(m) == 0 {
			continue
		}
		c.add(obj, ns, podsec.Violation{Check: CheckSecretData, Field: field,
			Message: fmt.Sprintf("the Secret carries %d value(s) in %s: it is in Git, readable by everyone who can read the repository, and stays in its history", len(m), field),
			Fix:     "keep the value in a secret store (rampart secret put, or your cloud's) and remove " + field + " from the manifest; the value is in Git history: rotate it"}, nil, "")
	}
}

// widening reports a NetworkPolicy that widens egress, as the webhook refuses it.
func (c *checker) widening(obj *Object, np *networkingv1.NetworkPolicy) {
	if !netpol.Governed(np.Namespace, c.s.Admission.ExemptNamespaces) {
		return
	}
	ws := netpol.Widens(np, c.s.Egress)
	if len(ws) == 0 {
		return
	}
	var e *Excepted
	if d, ok := admission.NetworkPolicyException(c.decide, c.s.Cluster, np.Namespace, np.Name); ok {
		e = &Excepted{GrantID: d.GrantID, ExpiresAt: d.ExpiresAt}
	}
	for _, w := range ws {
		c.add(obj, np.Namespace, podsec.Violation{Check: admission.CheckEgressWidened, Field: w.Field, Message: w.Message,
			Fix: "remove the rule, or narrow it to cluster DNS and the egress gateway"}, e,
			admission.ExceptionCommand(c.s.Cluster, np.Namespace, np.Name, admission.CheckEgressWidened))
	}
}

// namespaces checks that every governed namespace in use has an intact default-deny egress
// NetworkPolicy. Without one, the finding is excepted only when every workload of the
// namespace holds an exception to it (the webhook asks workload by workload), until the first
// of them ends.
func (c *checker) namespaces() {
	for ns, obj := range c.ns {
		if !netpol.Governed(ns, c.s.Admission.ExemptNamespaces) {
			continue
		}
		intact := false
		for _, np := range c.netpols[ns] {
			intact = intact || netpol.Intact(np, c.s.Egress)
		}
		if intact {
			continue
		}
		var e *Excepted
		for i, ex := range c.wls[ns] {
			if !ex.Exempt(admission.CheckNetworkPolicy) {
				e = nil
				break
			}
			used := ex.Used()
			u := used[len(used)-1]
			if i == 0 || u.ExpiresAt.Before(e.ExpiresAt) {
				e = &Excepted{GrantID: u.GrantID, ExpiresAt: u.ExpiresAt}
			}
		}
		f := Finding{Source: obj.Source, Kind: "Namespace", Name: ns, Check: admission.CheckNetworkPolicy, Field: "metadata.namespace",
			Message: fmt.Sprintf("namespace %q has no intact Rampart default-deny egress NetworkPolicy (%s) among the declared objects", ns, netpol.Name),
			Fix:     "add the output of rampart kube render netpol --namespace " + ns + " to the repository", Excepted: e}
		if obj.Kind != "Namespace" {
			f.Field = ""
		}
		c.out = append(c.out, f)
	}
}

// rbacObject gathers RBAC objects for rbac.
func (c *checker) rbacObject(obj *Object, ns string) {
	switch obj.Kind {
	case "RoleBinding":
		var b rbacv1.RoleBinding
		if err := podsec.DecodeObject(obj.Kind, obj.JSON, &b); err != nil {
			c.malformed(obj, ns, err)
			return
		}
		b.Namespace = ns
		delete(b.Labels, rbac.LabelManagedBy) // Rampart's bindings come from grants, never from Git
		c.rbs = append(c.rbs, &b)
		c.bindings[ns+"/"+b.Name] = obj
	case "ClusterRoleBinding":
		var b rbacv1.ClusterRoleBinding
		if err := podsec.DecodeObject(obj.Kind, obj.JSON, &b); err != nil {
			c.malformed(obj, "", err)
			return
		}
		delete(b.Labels, rbac.LabelManagedBy)
		c.crbs = append(c.crbs, &b)
		c.bindings["/"+b.Name] = obj
	case "ClusterRole":
		var r rbacv1.ClusterRole
		if err := podsec.DecodeObject(obj.Kind, obj.JSON, &r); err != nil {
			c.malformed(obj, "", err)
			return
		}
		c.roles[r.Name] = r.Rules
	}
}

// rbac reports the bindings the RBAC reconciler would report as drift.
func (c *checker) rbac() {
	rules := func(name string) ([]rbacv1.PolicyRule, bool) { r, ok := c.roles[name]; return r, ok }
	for _, sus := range rbac.FindDrift(c.s, c.rbs, c.crbs, rules) {
		b := sus.Binding
		obj := c.bindings[b.GetNamespace()+"/"+b.GetName()]
		v := podsec.Violation{Check: scan.CheckRBACDrift, Field: "roleRef", Message: sus.Why,
			Fix: "remove the binding from the repository: access to this role comes from a Rampart grant (rampart request create)"}
		if sus.Kind == rbac.DriftNodesProxy {
			v.Check, v.Field = scan.CheckNodesProxy, "roleRef"
			v.Fix = "remove the binding unless its subjects must reach kubelets (monitoring agents), and keep those out of reach of people"
		}
		c.add(obj, b.GetNamespace(), v, nil, "")
	}
}
