package rbac_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
)

// cmReader is a role whose kubernetes section lets a grant read ConfigMaps, with verbs as given.
func cmReader(verbs string) string {
	return extraRoles + `---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata:
  name: cm-reader
spec:
  rules:
  - actions: [read]
    resources: [namespaces/research-sandbox]
  kubernetes:
    rules:
    - api_groups: [""]
      resources: [configmaps]
      verbs: ` + verbs + `
`
}

// may asks the real apiserver whether the service account may verb configmaps in ns.
func may(t *testing.T, env *kubetest.Env, ns, sa, verb string) bool {
	t.Helper()
	sar, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{User: "system:serviceaccount:" + ns + ":" + sa,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "configmaps"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// Approval is for what was approved (invariant 9), in Kubernetes: a grant is bound only while
// its role's kubernetes section is the one it was approved for. Broadening the section (get →
// get, list, delete) must not reach grants approved before: their bindings go, and only grants
// approved under the new section are bound to the broadened ClusterRole. A grant from before
// pinning (no definition) follows the current section until the server pins it.
func TestKubernetesSectionChangeUnbindsOlderGrants(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rbac-a"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	before, after := loadPolicyWith(t, policy.DriftReport, cmReader("[get]")), loadPolicyWith(t, policy.DriftReport, cmReader("[get, list, delete]"))
	if before.RoleDefinition("cm-reader").Digest() == after.RoleDefinition("cm-reader").Digest() {
		t.Fatal("the two sections have one digest")
	}
	now := time.Now()
	old := authz.GrantInfo{ID: "grt_pinold", Role: "cm-reader", Subject: "k8s:dev/rbac-a/reader-old", StartsAt: now, ExpiresAt: now.Add(time.Hour),
		Definition: before.RoleDefinition("cm-reader")}
	legacy := authz.GrantInfo{ID: "grt_pinlegacy", Role: "cm-reader", Subject: "k8s:dev/rbac-a/reader-legacy", StartsAt: now, ExpiresAt: now.Add(time.Hour)}
	w := &world{pol: before, grants: []authz.GrantInfo{old, legacy}}
	r := start(t, env, w)
	bound := func(g authz.GrantInfo) bool {
		_, err := env.Clientset.RbacV1().ClusterRoleBindings().Get(ctx, rbac.BindingName(g.ID), metav1.GetOptions{})
		return err == nil
	}
	eventually(t, 5*time.Second, "the bindings under the first section", func() bool { return bound(old) && bound(legacy) })
	if !may(t, env, "rbac-a", "reader-old", "get") || may(t, env, "rbac-a", "reader-old", "delete") {
		t.Fatal("the old grant's access under the first section is wrong")
	}

	// The section is broadened and a grant is approved under it.
	fresh := authz.GrantInfo{ID: "grt_pinnew", Role: "cm-reader", Subject: "k8s:dev/rbac-a/reader-new", StartsAt: now, ExpiresAt: now.Add(time.Hour),
		Definition: after.RoleDefinition("cm-reader")}
	w.set(func() { w.pol, w.grants = after, []authz.GrantInfo{old, legacy, fresh} })
	r.Trigger()
	eventually(t, 5*time.Second, "the old grant unbound, the new one bound", func() bool { return !bound(old) && bound(fresh) })
	eventually(t, 5*time.Second, "the ClusterRole broadened", func() bool {
		cr, err := env.Clientset.RbacV1().ClusterRoles().Get(ctx, "rampart:cm-reader", metav1.GetOptions{})
		return err == nil && len(cr.Rules) == 1 && len(cr.Rules[0].Verbs) == 3
	})
	if may(t, env, "rbac-a", "reader-old", "delete") || may(t, env, "rbac-a", "reader-old", "get") {
		t.Fatal("the grant approved for get reaches the broadened ClusterRole")
	}
	if !may(t, env, "rbac-a", "reader-new", "delete") {
		t.Fatal("the grant approved under the new section is not bound to it")
	}
	if !bound(legacy) {
		t.Fatal("an unpinned grant lost its binding")
	}
	said := false
	for _, e := range w.codes("kube.binding.delete") {
		said = said || (strings.Contains(e.Message, rbac.BindingName(old.ID)) && strings.Contains(e.Message, "kubernetes section of role cm-reader changed"))
	}
	if !said {
		t.Fatalf("no ledger entry says why the old grant's binding went: %+v", w.codes("kube.binding.delete"))
	}
}
