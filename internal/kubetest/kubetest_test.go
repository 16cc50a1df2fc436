package kubetest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rampart.dev/rampart/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// The control plane stores and lists what it is given, including a privileged pod (no kubelet:
// admission is all that happens to it), and is the version scripts/kube-assets.sh builds.
func TestControlPlane(t *testing.T) {
	env := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := env.Clientset

	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != kubetest.KubernetesVersion {
		t.Errorf("server version %q, want %q", v.GitVersion, kubetest.KubernetesVersion)
	}

	ns := env.Namespace(t)
	privileged := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "privileged", Namespace: ns},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:            "c",
				Image:           "registry.example/busybox@sha256:" + strings.Repeat("0", 64),
				SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
			}},
			HostNetwork: true,
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a privileged pod must be accepted by the bare apiserver (--allow-privileged=true): %v", err)
	}

	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasNamespace(nss.Items, ns) {
		t.Errorf("namespace %s not listed", ns)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Name != "privileged" {
		t.Fatalf("pods in %s: %d, want exactly the one created", ns, len(pods.Items))
	}
	got := pods.Items[0].Spec
	if sc := got.Containers[0].SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || !got.HostNetwork {
		t.Errorf("pod stored without its privileges: %+v", got)
	}
	if pods.Items[0].Spec.NodeName != "" || pods.Items[0].Status.Phase != corev1.PodPending {
		t.Errorf("nothing should schedule or run the pod: node %q phase %q", got.NodeName, pods.Items[0].Status.Phase)
	}

	if _, err := os.Stat(env.KubeconfigFile); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
}

// RBAC is enforced: a user with no binding is refused, the same as in a real cluster.
func TestRBACEnforced(t *testing.T) {
	env := kubetest.Shared(t)
	ns := env.Namespace(t)
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "alice@example.com"}
	alice, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("listing pods as a user with no RoleBinding: err = %v, want Forbidden", err)
	}
}

// A private control plane takes extra apiserver flags, and the etcd endpoint is reachable.
func TestStartWithFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second control plane (about 5 s)")
	}
	env := kubetest.Start(t, kubetest.APIServerFlag("enable-admission-plugins", "AlwaysPullImages"))
	ns := env.Namespace(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: "registry.example/app:1", ImagePullPolicy: corev1.PullIfNotPresent,
		}}},
	}
	got, err := env.Clientset.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p := got.Spec.Containers[0].ImagePullPolicy; p != corev1.PullAlways {
		t.Errorf("imagePullPolicy %q: the AlwaysPullImages admission plugin, enabled by flag, should have set Always", p)
	}
	if !strings.HasPrefix(env.EtcdEndpoint, "http://127.0.0.1:") {
		t.Errorf("EtcdEndpoint %q, want http://127.0.0.1:PORT", env.EtcdEndpoint)
	}
}

func hasNamespace(items []corev1.Namespace, name string) bool {
	for _, n := range items {
		if n.Name == name {
			return true
		}
	}
	return false
}
