package main_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/rbac"
)

// A production server connected to a real kube-apiserver as its own ServiceAccount, with only
// the RBAC that rampart kube render rbac gives it: approving a request creates the grant's
// RoleBinding, which really lets the person read the weights' volume claim; revoking the grant
// removes it within 2 s, and both are in the ledger; the NetworkPolicy keeper works too.
func TestKubernetesRBACFromGrants(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	for _, ns := range []string{"research", "rampart"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}

	// The server runs as system:serviceaccount:rampart:rampart (a kubeconfig that impersonates
	// it), which can do nothing until the rendered RBAC is applied.
	const self = "system:serviceaccount:rampart:rampart"
	asSelf := rest.CopyConfig(env.Config)
	asSelf.Impersonate = rest.ImpersonationConfig{UserName: self}
	selfClient, err := kubernetes.NewForConfig(asSelf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := selfClient.RbacV1().RoleBindings("research").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the ServiceAccount may list bindings before any RBAC: %v", err)
	}
	applyYAML(t, env.Clientset, c.ok("kube", "render", "rbac", "--policy", "../../internal/demo/policy"))
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc, err := clientcmd.LoadFromFile(env.KubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = self
	}
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\noidc:\n  dev_provider: true\nkubernetes:\n  kubeconfig: %s\n", addr, filepath.Join(dir, "data"), kubeconfig)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// An allow-all NetworkPolicy beside the default-deny one (issue 13, item 5): under the demo's
	// drift: report the keeper records it once and leaves it.
	allowAll := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "allow-all", Namespace: "research"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, Egress: []networkingv1.NetworkPolicyEgressRule{{}}}}
	if _, err := env.Clientset.NetworkingV1().NetworkPolicies("research").Create(ctx, allowAll, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startServer(t, addr, "server", "--config", cfgPath)
	// The keeper, as the ServiceAccount, gives research its default-deny policy.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := env.Clientset.NetworkingV1().NetworkPolicies("research").Get(ctx, netpol.Name, metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no NetworkPolicy in research 5 s after the server started")
		}
	}
	token := func(user string) string {
		return signInAs(t, addr, user)
	}
	alice, bob, dave, erin := token("alice"), token("bob"), token("dave"), token("erin")

	// As alice, through the apiserver's own authorization: 403 without a binding, 404 (allowed,
	// the claim does not exist) with one.
	impersonated := rest.CopyConfig(env.Config)
	impersonated.Impersonate = rest.ImpersonationConfig{UserName: "oidc:alice"}
	asAlice, err := kubernetes.NewForConfig(impersonated)
	if err != nil {
		t.Fatal(err)
	}
	mayGetClaim := func() bool {
		_, err := asAlice.CoreV1().PersistentVolumeClaims("research").Get(ctx, "frontier-7-weights", metav1.GetOptions{})
		if apierrors.IsForbidden(err) {
			return false
		}
		if !apierrors.IsNotFound(err) {
			t.Fatalf("get the claim as alice: %v", err)
		}
		return true
	}
	if mayGetClaim() {
		t.Fatal("alice may read the weights' claim before any grant")
	}

	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	out := c.as(alice, "check", "alice", "read", "weights/frontier-7").out
	grant := regexp.MustCompile(`grt_[A-Za-z0-9_]+`).FindString(out)
	if grant == "" {
		t.Fatalf("no grant in: %s", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !mayGetClaim() {
		if time.Now().After(deadline) {
			t.Fatal("no RoleBinding 5 s after the grant activated")
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := env.Clientset.RbacV1().RoleBindings("research").Get(ctx, rbac.BindingName(grant), metav1.GetOptions{})
	if err != nil || b.RoleRef.Name != "rampart:weights-reader-frontier-7" || b.Annotations[rbac.AnnotationGrantID] != grant {
		t.Fatalf("binding: %+v %v", b, err)
	}

	if r := c.as(erin, "grant", "revoke", grant, "--reason", "eval finished"); r.code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	revoked := time.Now()
	for mayGetClaim() {
		if time.Since(revoked) > 2*time.Second {
			t.Fatal("alice could still read the claim 2 s after her grant was revoked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("revoked → access gone in the apiserver after %s", time.Since(revoked).Round(time.Millisecond))
	// A binding made by hand to a role Rampart protects is drift; the demo policy reports it.
	hand := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: "research"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings("research").Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(c.as(erin, "audit", "tail", "-n", "30").out, "kube.drift") {
		if time.Now().After(deadline) {
			t.Fatal("no kube.drift entry 10 s after a binding to a protected role was made by hand")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Issue 11, item 5: disabling alice removes her bindings within the same 2 s.
	id = reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4412", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	for deadline := time.Now().Add(5 * time.Second); !mayGetClaim(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no RoleBinding 5 s after the second grant activated")
		}
	}
	if r := c.as(erin, "user", "disable", "alice", "--reason", "left the company"); r.code != 0 || !strings.Contains(r.out, "1 grant(s) revoked") {
		t.Fatalf("disable alice: %+v", r)
	}
	disabled := time.Now()
	for mayGetClaim() {
		if time.Since(disabled) > 2*time.Second {
			t.Fatal("alice could still read the claim 2 s after she was disabled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("disabled → access gone in the apiserver after %s", time.Since(disabled).Round(time.Millisecond))
	tail := c.as(erin, "audit", "tail", "-n", "60").out
	for _, code := range []string{"kube.binding.create", "kube.binding.delete", "kube.netpol.widened"} {
		if !strings.Contains(tail, code) {
			t.Errorf("the ledger lacks %s:\n%s", code, tail)
		}
	}
}

// applyYAML creates the objects of a multi-document YAML stream (ServiceAccounts, ClusterRoles,
// ClusterRoleBindings) as the cluster's administrator.
func applyYAML(t *testing.T, cs kubernetes.Interface, docs string) {
	t.Helper()
	ctx := context.Background()
	decode := scheme.Codecs.UniversalDeserializer().Decode
	n := 0
	for doc := range strings.SplitSeq(docs, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, _, err := decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = cs.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T in the rendered YAML", obj)
		}
		if err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("nothing to apply in %q", docs)
	}
}
