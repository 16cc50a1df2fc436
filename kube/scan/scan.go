// Package scan checks what already runs in a cluster against the baseline the admission webhook
// enforces (kube/podsec, protected data reached by volumes, environment or clones, claims and
// snapshots copying protected data, ephemeral containers in pods holding it, the default-deny
// egress policy and NetworkPolicies that widen it), for objects created before the webhook, or
// while a namespace was exempt, and the RBAC the reconciler reports as drift (bindings to
// protected or rampart: ClusterRoles that Rampart did not make, bindings that grant
// nodes/proxy). It reports; it changes nothing.
//
// What it cannot see: who created an object. Kubernetes does not record it, so a pod that
// borrowed another workload's grant (kube/admission's deployer rule) looks like the pods its
// requester deploys, and an ephemeral container does not say who added it: every ephemeral
// container in a pod holding protected data is reported.
package scan

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
)

// Finding is one problem with one object.
type Finding struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Check     string `json:"check"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
	// Exception is the command that asks for an exception to the check for the workload's
	// service account, when an exception can waive it.
	Exception string `json:"exception,omitempty"`
}

// Object is "Kind namespace/name", or "Kind name" for a cluster-scoped object.
func (f Finding) Object() string {
	if f.Namespace == "" {
		return f.Kind + " " + f.Name
	}
	return f.Kind + " " + f.Namespace + "/" + f.Name
}

// Checks of RBAC drift (kube/rbac.FindDrift).
const (
	// CheckRBACDrift: a binding to a protected ClusterRole (or a rampart: one) that Rampart did
	// not make.
	CheckRBACDrift = "rampart.rbac-drift"
	// CheckNodesProxy: a ClusterRoleBinding that grants nodes/proxy, which bypasses admission.
	CheckNodesProxy = "rampart.nodes-proxy"
)

// Scan lists the workloads of every governed namespace and checks each. decide answers the
// protected-volume questions (the decision engine, or the API's batch check). Pods and
// ReplicaSets and Jobs made by a controller are checked through their controller, not twice.
func Scan(ctx context.Context, c kubernetes.Interface, pol *policy.Policy, decide func(authz.Query) authz.Decision) ([]Finding, error) {
	s := pol.Kubernetes()
	cfg := podsec.Config{AllowedRegistries: s.Admission.AllowedRegistries, RequireDigest: s.Admission.RequireDigest,
		RuntimeClass: s.Admission.RuntimeClass, HighRiskNamespaces: s.Admission.HighRiskNamespaces, HighRiskLabels: s.Admission.HighRiskLabels}
	nss, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	storage := admission.KubeStorage{Client: c}
	data := admission.DataCheck{Policy: pol, Settings: s, Decide: decide, Storage: storage}
	out, err := rbacDrift(ctx, c, s)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss.Items {
		if !netpol.Governed(ns.Name, s.Admission.ExemptNamespaces) {
			continue
		}
		nps, err := c.NetworkingV1().NetworkPolicies(ns.Name).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list NetworkPolicies in %s: %w", ns.Name, err)
		}
		intact := false
		for i := range nps.Items {
			np := &nps.Items[i]
			intact = intact || netpol.Intact(np, s.Egress)
			if f, ok := widening(np, s, decide); ok {
				out = append(out, f)
			}
		}
		if !intact {
			out = append(out, Finding{Namespace: ns.Name, Kind: "Namespace", Name: ns.Name, Check: admission.CheckNetworkPolicy,
				Message: "no intact Rampart default-deny egress NetworkPolicy (" + netpol.Name + ")", Fix: "rampart kube install, or apply rampart kube render netpol --namespace " + ns.Name})
		}
		objs, err := workloads(ctx, c, ns.Name)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			wl, err := podsec.WorkloadFromObject(obj)
			if err != nil {
				return nil, err
			}
			// Active exceptions waive checks here exactly as at admission (same decisions).
			vs := podsec.Check(wl, ns.Name, cfg, admission.Exceptions(decide, s.Cluster, ns.Name, wl).Exempt)
			vs = append(vs, data.Violations(ctx, wl, ns.Name)...)
			if pod, ok := obj.(*corev1.Pod); ok && len(pod.Spec.EphemeralContainers) > 0 {
				more, err := ephemeral(ctx, data, pod)
				if err != nil {
					return nil, err
				}
				vs = append(vs, more...)
			}
			for _, v := range vs {
				f := Finding{Namespace: ns.Name, Kind: wl.Kind, Name: wl.Meta.Name, Check: v.Check, Field: v.Field, Message: v.Message, Fix: v.Fix}
				if admission.Waivable(v.Check) && wl.Spec != nil {
					f.Exception = admission.ExceptionCommand(s.Cluster, ns.Name, wl.Spec.ServiceAccountName, v.Check)
				}
				out = append(out, f)
			}
		}
		more, err := copies(ctx, c, storage, data, ns.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		return strings.Compare(a.Namespace+"\x00"+a.Kind+"\x00"+a.Name, b.Namespace+"\x00"+b.Kind+"\x00"+b.Name)
	})
	return out, nil
}

// ephemeral reports the ephemeral containers of a pod that holds protected data: each runs its
// own command with the pod's data, as exec would, and nobody can tell afterwards whether whoever
// added it had a grant to exec on the data.
func ephemeral(ctx context.Context, data admission.DataCheck, pod *corev1.Pod) ([]podsec.Violation, error) {
	held, err := data.HeldResources(ctx, pod, pod.Namespace)
	if err != nil || len(held) == 0 {
		return nil, err
	}
	var out []podsec.Violation
	for i, ec := range pod.Spec.EphemeralContainers {
		for _, res := range slices.Sorted(maps.Keys(held)) {
			out = append(out, podsec.Violation{Check: admission.CheckProtectedExec, Field: fmt.Sprintf("spec.ephemeralContainers[%d]", i),
				Message: fmt.Sprintf("ephemeral container %q runs its own command in a pod that holds %s (%s), as exec into it would; whoever added it needed a grant for exec on it", ec.Name, res, held[res]),
				Fix:     "find who added it (the apiserver's audit log), and delete the pod: an ephemeral container cannot be removed"})
		}
	}
	return out, nil
}

// copies checks the namespace's claims and snapshots: what copies or binds protected data must
// be named in the policy as holding it.
func copies(ctx context.Context, c kubernetes.Interface, storage admission.KubeStorage, data admission.DataCheck, ns string) ([]Finding, error) {
	pvcs, err := c.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list persistentvolumeclaims in %s: %w", ns, err)
	}
	var out []Finding
	for i := range pvcs.Items {
		pvc := &pvcs.Items[i]
		vs, err := admission.ClaimViolations(ctx, data, ns, pvc.Name, &pvc.Spec)
		if err != nil {
			return nil, fmt.Errorf("PersistentVolumeClaim %s/%s: %w", ns, pvc.Name, err)
		}
		for _, v := range vs {
			out = append(out, Finding{Namespace: ns, Kind: "PersistentVolumeClaim", Name: pvc.Name, Check: v.Check, Field: v.Field, Message: v.Message, Fix: v.Fix})
		}
	}
	snaps, err := storage.VolumeSnapshots(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("list volumesnapshots in %s: %w", ns, err)
	}
	for _, vs := range snaps {
		if v := admission.SnapshotViolation(data.Policy, ns, vs.Name, vs.ClaimName()); v != nil {
			out = append(out, Finding{Namespace: ns, Kind: "VolumeSnapshot", Name: vs.Name, Check: v.Check, Field: v.Field, Message: v.Message, Fix: v.Fix})
		}
	}
	return out, nil
}

// rbacDrift is the findings about bindings the RBAC reconciler reports as drift, in every
// namespace (a binding to a protected role grants it wherever it is).
func rbacDrift(ctx context.Context, c kubernetes.Interface, s policy.KubernetesSettings) ([]Finding, error) {
	rbl, err := c.RbacV1().RoleBindings("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list RoleBindings: %w", err)
	}
	crbl, err := c.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ClusterRoleBindings: %w", err)
	}
	crl, err := c.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list ClusterRoles: %w", err)
	}
	rbs := make([]*rbacv1.RoleBinding, len(rbl.Items))
	for i := range rbl.Items {
		rbs[i] = &rbl.Items[i]
	}
	crbs := make([]*rbacv1.ClusterRoleBinding, len(crbl.Items))
	for i := range crbl.Items {
		crbs[i] = &crbl.Items[i]
	}
	roles := map[string][]rbacv1.PolicyRule{}
	for _, cr := range crl.Items {
		roles[cr.Name] = cr.Rules
	}
	var out []Finding
	for _, sus := range rbac.FindDrift(s, rbs, crbs, func(name string) ([]rbacv1.PolicyRule, bool) { r, ok := roles[name]; return r, ok }) {
		b := sus.Binding
		f := Finding{Namespace: b.GetNamespace(), Name: b.GetName(), Kind: "ClusterRoleBinding", Field: "roleRef", Message: sus.Why}
		if f.Namespace != "" {
			f.Kind = "RoleBinding"
		}
		switch sus.Kind {
		case rbac.DriftNodesProxy:
			f.Check, f.Fix = CheckNodesProxy, "remove the binding unless its subjects must reach kubelets (monitoring agents), and keep those out of reach of people"
		default:
			f.Check, f.Fix = CheckRBACDrift, "remove it; access to this role comes from a Rampart grant (kubernetes.drift: enforce removes such bindings)"
		}
		out = append(out, f)
	}
	return out, nil
}

// widening is the finding about a NetworkPolicy that widens egress without an active exception
// (what the webhook refuses and the keeper removes or reports).
func widening(np *networkingv1.NetworkPolicy, s policy.KubernetesSettings, decide func(authz.Query) authz.Decision) (Finding, bool) {
	ws := netpol.Widens(np, s.Egress)
	if len(ws) == 0 {
		return Finding{}, false
	}
	if _, ok := admission.NetworkPolicyException(decide, s.Cluster, np.Namespace, np.Name); ok {
		return Finding{}, false
	}
	msg := ws[0].Message
	if len(ws) > 1 {
		msg += fmt.Sprintf(" (and %d more rules)", len(ws)-1)
	}
	return Finding{Namespace: np.Namespace, Kind: "NetworkPolicy", Name: np.Name, Check: admission.CheckEgressWidened, Field: ws[0].Field,
		Message: msg, Fix: "remove it, or narrow it to cluster DNS and the egress gateway",
		Exception: admission.ExceptionCommand(s.Cluster, np.Namespace, np.Name, admission.CheckEgressWidened)}, true
}

// workloads lists the objects of a namespace that carry a pod template, leaving out those a
// controller made (they are checked through it).
func workloads(ctx context.Context, c kubernetes.Interface, ns string) ([]runtime.Object, error) {
	var out []runtime.Object
	owned := func(m metav1.ObjectMeta) bool { return metav1.GetControllerOf(&m) != nil }
	lo := metav1.ListOptions{}
	pods, err := c.CoreV1().Pods(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	for i := range pods.Items {
		if !owned(pods.Items[i].ObjectMeta) {
			out = append(out, &pods.Items[i])
		}
	}
	deps, err := c.AppsV1().Deployments(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list deployments in %s: %w", ns, err)
	}
	for i := range deps.Items {
		out = append(out, &deps.Items[i])
	}
	sts, err := c.AppsV1().StatefulSets(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list statefulsets in %s: %w", ns, err)
	}
	for i := range sts.Items {
		out = append(out, &sts.Items[i])
	}
	dss, err := c.AppsV1().DaemonSets(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list daemonsets in %s: %w", ns, err)
	}
	for i := range dss.Items {
		out = append(out, &dss.Items[i])
	}
	rss, err := c.AppsV1().ReplicaSets(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list replicasets in %s: %w", ns, err)
	}
	for i := range rss.Items {
		if !owned(rss.Items[i].ObjectMeta) {
			out = append(out, &rss.Items[i])
		}
	}
	jobs, err := c.BatchV1().Jobs(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list jobs in %s: %w", ns, err)
	}
	for i := range jobs.Items {
		if !owned(jobs.Items[i].ObjectMeta) {
			out = append(out, &jobs.Items[i])
		}
	}
	rcs, err := c.CoreV1().ReplicationControllers(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list replicationcontrollers in %s: %w", ns, err)
	}
	for i := range rcs.Items {
		out = append(out, &rcs.Items[i])
	}
	cjs, err := c.BatchV1().CronJobs(ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("list cronjobs in %s: %w", ns, err)
	}
	for i := range cjs.Items {
		out = append(out, &cjs.Items[i])
	}
	return out, nil
}
