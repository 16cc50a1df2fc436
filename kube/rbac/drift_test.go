package rbac_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
)

// The bootstrap bindings Rampart leaves alone are exactly those the real apiserver creates,
// pinned by name and content: a binding that merely carries the apiserver's label, or the
// apiserver's cluster-admin binding with a subject added, is not one of them.
func TestBootstrapBindingsPinned(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: "kubernetes.io/bootstrapping=rbac-defaults"}
	crbs, err := env.Clientset.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	rbs, err := env.Clientset.RbacV1().RoleBindings("").List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, b := range crbs.Items {
		live = append(live, "/"+b.Name)
		if !rbac.Bootstrap("", b.Name, b.RoleRef, b.Subjects) {
			t.Errorf("the apiserver's ClusterRoleBinding %s is not recognised as bootstrap: %+v %+v", b.Name, b.RoleRef, b.Subjects)
		}
	}
	for _, b := range rbs.Items {
		live = append(live, b.Namespace+"/"+b.Name)
		if !rbac.Bootstrap(b.Namespace, b.Name, b.RoleRef, b.Subjects) {
			t.Errorf("the apiserver's RoleBinding %s/%s is not recognised as bootstrap: %+v %+v", b.Namespace, b.Name, b.RoleRef, b.Subjects)
		}
	}
	slices.Sort(live)
	if pinned := rbac.BootstrapNames(); !slices.Equal(live, pinned) {
		t.Fatalf("the apiserver bootstraps %d bindings, %d are pinned (kube/rbac/bootstrap.json; re-read them when the apiserver version changes):\nlive   %v\npinned %v", len(live), len(pinned), live, pinned)
	}
	admin := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}
	masters := rbacv1.Subject{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "system:masters"}
	mallory := rbacv1.Subject{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}
	for name, c := range map[string]struct {
		name     string
		subjects []rbacv1.Subject
		want     bool
	}{
		"the apiserver's":      {"cluster-admin", []rbacv1.Subject{masters}, true},
		"another name":         {"mallory-admin", []rbacv1.Subject{masters}, false},
		"a subject added":      {"cluster-admin", []rbacv1.Subject{masters, mallory}, false},
		"the subject replaced": {"cluster-admin", []rbacv1.Subject{mallory}, false},
	} {
		if got := rbac.Bootstrap("", c.name, admin, c.subjects); got != c.want {
			t.Errorf("%s: Bootstrap = %v", name, got)
		}
	}
}

// Issue 13, items 6, 9 and 7b, as mallory would leave them: a ClusterRoleBinding to
// cluster-admin wearing the apiserver's bootstrap label, a RoleBinding by hand to one of
// Rampart's own rampart: ClusterRoles, and a ClusterRoleBinding that grants nodes/proxy. In
// enforce mode the first two are deleted; the third is reported and kept. The apiserver's own
// cluster-admin binding is neither.
func TestDriftBeyondTheLabel(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	cs := env.Clientset.RbacV1()
	mallory := []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}}
	forged := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mallory-bootstrapped", Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}},
		Subjects:   mallory,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
	}
	own := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "weights-by-hand", Namespace: ns},
		Subjects:   mallory,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: rbac.ClusterRolePrefix + "weights-reader-frontier-7"},
	}
	proxyRole := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "node-proxy-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/proxy"}, Verbs: []string{"get"}}}}
	proxy := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "mallory-node-proxy"},
		Subjects:   mallory,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: proxyRole.Name},
	}
	t.Cleanup(func() {
		_ = cs.ClusterRoleBindings().Delete(ctx, forged.Name, metav1.DeleteOptions{})
		_ = cs.ClusterRoleBindings().Delete(ctx, proxy.Name, metav1.DeleteOptions{})
		_ = cs.ClusterRoles().Delete(ctx, proxyRole.Name, metav1.DeleteOptions{})
	})
	if _, err := cs.ClusterRoleBindings().Create(ctx, forged, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RoleBindings(ns).Create(ctx, own, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ClusterRoles().Create(ctx, proxyRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.ClusterRoleBindings().Create(ctx, proxy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w := &world{pol: loadPolicy(t, policy.DriftEnforce)}
	start(t, env, w)
	reported := func(binding, kind string) bool {
		for _, e := range w.codes("kube.drift") {
			if e.Details["binding"] == binding && e.Details["drift"] == kind {
				return true
			}
		}
		return false
	}
	eventually(t, 5*time.Second, "the forged bootstrap binding and the hand-made binding to a rampart: role deleted, nodes/proxy reported", func() bool {
		_, errF := cs.ClusterRoleBindings().Get(ctx, forged.Name, metav1.GetOptions{})
		_, errO := cs.RoleBindings(ns).Get(ctx, own.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(errF) && apierrors.IsNotFound(errO) && reported(proxy.Name, rbac.DriftNodesProxy)
	})
	if !reported(forged.Name, rbac.DriftProtected) || !reported(own.Name, rbac.DriftProtected) {
		t.Errorf("the deletions are not in the ledger: %+v", w.codes("kube.drift"))
	}
	if _, err := cs.ClusterRoleBindings().Get(ctx, proxy.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the nodes/proxy binding was deleted: %v", err)
	}
	if _, err := cs.ClusterRoleBindings().Get(ctx, "cluster-admin", metav1.GetOptions{}); err != nil {
		t.Errorf("the apiserver's cluster-admin binding: %v", err)
	}
	for _, e := range w.codes("kube.drift") {
		if e.Details["binding"] == "cluster-admin" {
			t.Errorf("the apiserver's own binding was reported: %+v", e)
		}
	}
}

// GrantsNodesProxy agrees with the real apiserver's RBAC authorizer: each rule is bound to a
// user of its own and SubjectAccessReviews ask whether that user may get or create
// nodes/proxy. The last case is known to be allowed, and is waited for: the authorizer reads
// RBAC objects from a watch, in order.
func TestGrantsNodesProxy(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	cs := env.Clientset
	core := []string{""}
	cases := []struct {
		groups, resources, verbs []string
	}{
		{core, []string{"*/proxy"}, []string{"get"}},
		{[]string{"*"}, []string{"*"}, []string{"*"}},
		{core, []string{"*"}, []string{"get"}},
		{core, []string{"nodes"}, []string{"get"}},
		{core, []string{"nodes/*"}, []string{"get"}},
		{core, []string{"pods/proxy"}, []string{"get"}},
		{[]string{"apps"}, []string{"nodes/proxy"}, []string{"get"}},
		{core, []string{"nodes/proxy"}, []string{"create"}},
		{core, []string{"nodes/proxy"}, []string{"get"}}, // last: allowed
	}
	name := func(i int) string { return fmt.Sprintf("rampart-test-nodes-proxy-%d", i) }
	rules := func(i int) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{{APIGroups: cases[i].groups, Resources: cases[i].resources, Verbs: cases[i].verbs}}
	}
	for i := range cases {
		name := name(i)
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules(i)}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.RbacV1().ClusterRoles().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	for i := range cases {
		name := name(i)
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: name}},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	may := func(i int) bool {
		for _, verb := range []string{"get", "create"} {
			sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: name(i), ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "nodes", Subresource: "proxy", Name: "node-1"}}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed {
				return true
			}
		}
		return false
	}
	eventually(t, 10*time.Second, "the apiserver's authorizer sees the last binding", func() bool { return may(len(cases) - 1) })
	for i := range cases {
		if got, want := rbac.GrantsNodesProxy(rules(i)), may(i); got != want {
			t.Errorf("%+v: GrantsNodesProxy = %v, the apiserver says %v", rules(i)[0], got, want)
		}
	}
}
