package install

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
)

// ServerRoleName names the ClusterRole (and its binding) that ServerRBAC renders.
const ServerRoleName = "rampart-server"

// ServerRBAC renders the identity Rampart's server runs under in the cluster: a ServiceAccount
// and a ClusterRole bound to it with what the RBAC reconciler, the NetworkPolicy keeper and the
// admission webhook need under this policy, and no more than Kubernetes' RBAC lets one say:
//
//   - bindings: read and watch all, create and delete (grants come and go; drift in enforce
//     mode is deleted). RBAC cannot restrict create by name.
//   - ClusterRoles: read and watch all, create; update and delete only the rampart:<role>
//     ClusterRoles of this policy.
//   - what Rampart grants: RBAC lets a binding or a ClusterRole be made only by someone who
//     holds its permissions or may bind it. Rampart therefore holds the rules of the policy's
//     roles (those it writes into rampart:<role> ClusterRoles) and may bind, by name, the
//     existing ClusterRoles that roles name (cluster_role). Nothing else: no escalate, no
//     wildcard.
//   - namespaces: read and watch (the keeper gives new ones their NetworkPolicy);
//     NetworkPolicies: read, watch, create, update, and delete (the keeper removes those that
//     widen egress, with kubernetes.drift: enforce).
//   - pods: get (exec into pods holding protected data; what the admission webhook reads),
//     list (the pods a Service selects) and watch, and delete (kube/evict deletes the pods whose
//     grant to protected data has ended).
//   - what the admission webhook reads to see what a request reaches: services and endpoints
//     (get: the pods a service proxy dials), persistent volumes, claims and VolumeSnapshots
//     (get: what a new claim clones or binds).
//
// Re-render and apply it when the policy's roles change. Whoever may change the policy may
// grant what it says: protect the policy as you protect this ClusterRole.
func ServerRBAC(pol *policy.Policy, namespace, serviceAccount string) (*corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, error) {
	for flag, v := range map[string]string{"namespace": namespace, "service account": serviceAccount} {
		if errs := validation.IsDNS1123Label(v); len(errs) > 0 {
			return nil, nil, nil, fmt.Errorf("install: %s %q: %s", flag, v, errs[0])
		}
	}
	// Not Rampart's managed-by label: that marks what the reconciler makes from grants and may
	// delete. These are installed by an administrator, and Rampart leaves them alone.
	labels := map[string]string{"app.kubernetes.io/name": "rampart", "app.kubernetes.io/component": "server"}
	const rbacGroup = rbacv1.GroupName
	rules := []rbacv1.PolicyRule{
		{APIGroups: []string{rbacGroup}, Resources: []string{"rolebindings", "clusterrolebindings"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{rbacGroup}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "persistentvolumes", "persistentvolumeclaims"}, Verbs: []string{"get"}},
		{APIGroups: []string{admission.SnapshotGroup}, Resources: []string{"volumesnapshots"}, Verbs: []string{"get"}},
	}
	managed := rbac.ManagedClusterRoles(pol)
	if names := slices.Sorted(maps.Keys(managed)); len(names) > 0 {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{rbacGroup}, Resources: []string{"clusterroles"}, Verbs: []string{"update", "delete"}, ResourceNames: names})
		for _, name := range names {
			rules = append(rules, managed[name]...)
		}
	}
	var bind []string
	for _, role := range pol.Roles() {
		if k := role.Kubernetes; k != nil && k.ClusterRole != "" && !slices.Contains(bind, k.ClusterRole) {
			bind = append(bind, k.ClusterRole)
		}
	}
	if len(bind) > 0 {
		slices.Sort(bind)
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{rbacGroup}, Resources: []string{"clusterroles"}, Verbs: []string{"bind"}, ResourceNames: bind})
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: namespace, Labels: labels},
	}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: metav1.ObjectMeta{Name: ServerRoleName, Labels: labels},
		Rules:      rules,
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: ServerRoleName, Labels: labels},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: serviceAccount, Namespace: namespace}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: ServerRoleName},
	}
	return sa, role, binding, nil
}
