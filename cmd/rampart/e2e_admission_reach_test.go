package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/netpol"
)

// Issue 13 (items 1, 2, 3, 4, 7a, 10): what an ordinary researcher — mallory, who may create
// pods, claims and NetworkPolicies and use pod subresources in two research namespaces, and
// holds no Rampart grant — tries against a real kube-apiserver, with the webhook installed by
// rampart kube install and served by rampart server running as its own ServiceAccount with only
// the RBAC rampart kube render rbac gives it. Each attack is refused; the ways real deployments
// reach the same data (the requester's own pods, a controller's pods) are admitted; and rampart
// kube scan reports every such object made before the webhook existed.
func TestAdmissionReach(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	cs := env.Clientset
	for _, ns := range []string{"research", "sandbox", "rampart"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, handler := range map[string]string{"gvisor": "runsc", "runc": "runc"} {
		if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The snapshot API is not built into the apiserver: its CRD, as a CSI snapshotter installs it.
	snapshots := installSnapshotCRD(t, env.Config)

	// The policy: the demo's, with frontier-7's token Secret and a named nightly snapshot.
	dir := t.TempDir()
	policyDir := filepath.Join(dir, "policy")
	copyDemoPolicy(t, policyDir, func(name, text string) string {
		if name == "roles.yaml" {
			// A role to debug the weights' pods: exec on frontier-7.
			return text + "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata: {name: weights-debugger-frontier-7}\nspec:\n  rules:\n  - actions: [exec]\n    resources: [weights/frontier-7]\n"
		}
		if name != "resources.yaml" {
			return text
		}
		const claims = "    persistent_volume_claims: [frontier-7-weights]\n"
		if !strings.Contains(text, claims) {
			t.Fatal("the demo policy's frontier-7 claims moved")
		}
		return strings.Replace(text, claims, claims+"    secrets: [frontier-7-hf-token]\n    volume_snapshots: [frontier-7-nightly]\n", 1)
	})

	// The weights: a volume bound to their claim, and the token.
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-frontier-7"},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv/frontier-7"}},
			ClaimRef:               &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "research", Name: "frontier-7-weights"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("frontier-7-weights", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-frontier-7" }), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Secrets("research").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "frontier-7-hf-token"}, StringData: map[string]string{"token": "hf_x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Leftovers made before the webhook exists: only kube scan can find them.
	leftovers := map[string]string{} // "Kind research/name" → the check the scan must report
	mustCreate := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := cs.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("old-clone", cloneOf("frontier-7-weights")), metav1.CreateOptions{})
	mustCreate("old-clone", err)
	leftovers["PersistentVolumeClaim research/old-clone"] = "rampart.protected-copy"
	_, err = cs.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("old-bound", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-frontier-7" }), metav1.CreateOptions{})
	mustCreate("old-bound", err)
	leftovers["PersistentVolumeClaim research/old-bound"] = "rampart.protected-copy"
	_, err = cs.CoreV1().Pods("research").Create(ctx, ephemeralClone("old-ephemeral", "default"), metav1.CreateOptions{})
	mustCreate("old-ephemeral", err)
	leftovers["Pod research/old-ephemeral"] = "rampart.protected-copy"
	_, err = cs.CoreV1().Pods("research").Create(ctx, tokenPod("old-token", "default"), metav1.CreateOptions{})
	mustCreate("old-token", err)
	leftovers["Pod research/old-token"] = "rampart.protected-volume"
	_, err = cs.CoreV1().Pods("research").Create(ctx, weightsPod("old-debugged", "default"), metav1.CreateOptions{})
	mustCreate("old-debugged", err)
	_, err = cs.CoreV1().Pods("research").Patch(ctx, "old-debugged", types.StrategicMergePatchType, debugPatch(t, cleanDebugger()), metav1.PatchOptions{}, "ephemeralcontainers")
	mustCreate("old-debugged's ephemeral container", err)
	leftovers["Pod research/old-debugged"] = "rampart.protected-exec"
	_, err = snapshots.Namespace("research").Create(ctx, volumeSnapshot("old-snapshot", "frontier-7-weights"), metav1.CreateOptions{})
	mustCreate("old-snapshot", err)
	leftovers["VolumeSnapshot research/old-snapshot"] = "rampart.protected-copy"

	// The server runs as system:serviceaccount:rampart:rampart with the rendered RBAC alone; an
	// administrator installs the webhook.
	addr, hookAddr := freeAddr(t), freeAddr(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	applyYAML(t, cs, c.ok("kube", "render", "rbac", "--policy", policyDir))
	selfKubeconfig := filepath.Join(dir, "self.kubeconfig")
	kc, err := clientcmd.LoadFromFile(env.KubeconfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:rampart:rampart"
	}
	if err := clientcmd.WriteToFile(*kc, selfKubeconfig); err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "webhook")
	// Pod revocation is off: the leftover pods made before the webhook mount protected data
	// without a grant, and the server would delete them (TestClusterBypasses tests that); here
	// they stay for kube scan to find.
	config := func(name, kubeconfig string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\noidc:\n  dev_provider: true\nkubernetes:\n  kubeconfig: %s\n  pod_revocation: false\n  admission:\n    listen: %s\n    cert_file: %s\n    key_file: %s\n",
			addr, filepath.Join(dir, "data"), policyDir, kubeconfig, hookAddr, filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c.ok("kube", "install", "--config", config("install.yaml", env.KubeconfigFile), "--webhook-url", "https://"+hookAddr)
	startServer(t, addr, "server", "--config", config("server.yaml", selfKubeconfig))
	waitForWebhook(t, hookAddr, filepath.Join(certDir, "ca.crt"))
	alice, bob, dave, erin := signInAs(t, addr, "alice"), signInAs(t, addr, "bob"), signInAs(t, addr, "dave"), signInAs(t, addr, "erin")

	// mallory and alice are researchers in research and sandbox.
	researcher(t, cs, "research", "sandbox")
	as := func(user string) kubernetes.Interface {
		cfg := rest.CopyConfig(env.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		k, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	mallory, asAlice := as("oidc:mallory"), as("oidc:alice")

	// alice's evaluation is approved for the evaluator workload; she runs it.
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--for", "k8s:dev/research/evaluator", "--reason", "eval run 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	if _, err := asAlice.CoreV1().Pods("research").Create(ctx, weightsPod("weights-eval", "evaluator"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("alice's evaluation pod, under her grant: %v", err)
	}
	if _, err := asAlice.CoreV1().Pods("research").Create(ctx, tokenPod("token-user", "evaluator"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("alice's pod taking the token from its environment, under her grant: %v", err)
	}
	if _, err := cs.CoreV1().Services("research").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "weights-eval"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "weights-eval"}, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.CoreV1().Pods("research").Create(ctx, restrictedPod("plain", ""), metav1.CreateOptions{}); err != nil {
		t.Fatalf("mallory's ordinary pod: %v", err)
	}
	refusedFor := func(t *testing.T, what string, err error, check string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "["+check+"]") {
			t.Fatalf("%s: want a refusal for %s, got %v", what, check, err)
		}
	}
	// notByRampart: admission let the request by; the apiserver then fails it for want of a node.
	notByRampart := func(t *testing.T, what string, err error) {
		t.Helper()
		if err != nil && strings.Contains(err.Error(), "rampart") {
			t.Fatalf("%s: refused by Rampart: %v", what, err)
		}
	}

	t.Run("ephemeral containers", func(t *testing.T) {
		// kubectl debug: a privileged root SYS_ADMIN container added to the pod that mounts the
		// weights, mounting them too.
		priv, root := true, int64(0)
		attack := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox", Stdin: true, TTY: true,
			Command:         []string{"sh", "-c", "tar c /w | base64"},
			SecurityContext: &corev1.SecurityContext{Privileged: &priv, RunAsUser: &root, Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}},
			VolumeMounts:    []corev1.VolumeMount{{Name: "weights", MountPath: "/w"}}}}
		_, err := mallory.CoreV1().Pods("research").Patch(ctx, "weights-eval", types.StrategicMergePatchType, debugPatch(t, attack), metav1.PatchOptions{}, "ephemeralcontainers")
		refusedFor(t, "a privileged debugger in the weights pod", err, "restricted.privileged")
		refusedFor(t, "a privileged debugger in the weights pod", err, "rampart.protected-exec")
		// One that passes every other check still runs mallory's command with the weights.
		_, err = mallory.CoreV1().Pods("research").Patch(ctx, "weights-eval", types.StrategicMergePatchType, debugPatch(t, cleanDebugger()), metav1.PatchOptions{}, "ephemeralcontainers")
		refusedFor(t, "a restricted debugger in the weights pod", err, "rampart.protected-exec")
		p, err := cs.CoreV1().Pods("research").Get(ctx, "weights-eval", metav1.GetOptions{})
		if err != nil || len(p.Spec.EphemeralContainers) != 0 {
			t.Fatalf("the weights pod has ephemeral containers: %v %v", p.Spec.EphemeralContainers, err)
		}
		// kubectl debug still works on mallory's own pod, within Pod Security.
		attack.VolumeMounts = nil
		_, err = mallory.CoreV1().Pods("research").Patch(ctx, "plain", types.StrategicMergePatchType, debugPatch(t, attack), metav1.PatchOptions{}, "ephemeralcontainers")
		refusedFor(t, "a privileged debugger in mallory's pod", err, "restricted.privileged")
		if _, err := mallory.CoreV1().Pods("research").Patch(ctx, "plain", types.StrategicMergePatchType, debugPatch(t, cleanDebugger()), metav1.PatchOptions{}, "ephemeralcontainers"); err != nil {
			t.Fatalf("a restricted debugger in mallory's own pod: %v", err)
		}
	})

	t.Run("borrowed service accounts", func(t *testing.T) {
		_, err := mallory.CoreV1().Pods("research").Create(ctx, weightsPod("borrowed", "evaluator"), metav1.CreateOptions{})
		refusedFor(t, "mallory's pod mounting the weights under evaluator", err, "rampart.workload-grant")
		if !strings.Contains(err.Error(), "alice") {
			t.Fatalf("the refusal does not name the grant's requester: %v", err)
		}
		one := int32(1)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "weights-rs"}, Spec: appsv1.ReplicaSetSpec{Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "weights-rs"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "weights-rs"}}, Spec: weightsPod("", "evaluator").Spec}}}
		_, err = mallory.AppsV1().ReplicaSets("research").Create(ctx, rs, metav1.CreateOptions{})
		refusedFor(t, "mallory's ReplicaSet under evaluator", err, "rampart.workload-grant")
		// alice's ReplicaSet is admitted; with no controller-manager running, its pod is made
		// the way the kube-controller-manager makes it (--use-service-account-credentials): as
		// the replicaset-controller's own service account, from the template, owned by the
		// ReplicaSet. The apiserver's bootstrap RBAC lets that account create pods.
		made, err := asAlice.AppsV1().ReplicaSets("research").Create(ctx, rs, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("alice's ReplicaSet: %v", err)
		}
		yes := true
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "weights-rs-", Labels: made.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: made.Name, UID: made.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
			Spec: made.Spec.Template.Spec}
		if _, err := as("system:serviceaccount:kube-system:replicaset-controller").CoreV1().Pods("research").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("the replicaset controller's pod for alice's ReplicaSet: %v", err)
		}
		// The gpu workload's exception to run under runc, requested by alice.
		r := c.as(alice, "exception", "request", "--namespace", "research", "--workload", "gpu", "--check", "baseline.runtime-class",
			"--compensating", "dedicated GPU node pool, egress blocked", "--reason", "the GPU driver needs runc", "--duration", "1h", "--cluster", "dev", "--yes")
		exID := reqID.FindString(r.out)
		if r.code != 0 || exID == "" {
			t.Fatalf("exception request: %+v", r)
		}
		c.as(dave, "request", "approve", exID)
		c.as(bob, "request", "approve", exID)
		gpu := func(name string) *corev1.Pod {
			p := restrictedPod(name, "gpu")
			rc := "runc"
			p.Spec.RuntimeClassName = &rc
			return p
		}
		_, err = mallory.CoreV1().Pods("research").Create(ctx, gpu("gpu-mallory"), metav1.CreateOptions{})
		refusedFor(t, "mallory's runc pod under gpu's exception", err, "rampart.workload-grant")
		if _, err := asAlice.CoreV1().Pods("research").Create(ctx, gpu("gpu-alice"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("alice's runc pod under her exception: %v", err)
		}
	})

	t.Run("protected data through env", func(t *testing.T) {
		for _, sub := range []string{"exec", "attach", "portforward"} {
			err := mallory.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("token-user").SubResource(sub).
				Param("command", "env").Param("stdout", "true").Do(ctx).Error()
			refusedFor(t, sub+" into the pod holding the token in its environment", err, "rampart.protected-exec")
		}
		err := mallory.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("plain").SubResource("exec").
			Param("command", "env").Param("stdout", "true").Do(ctx).Error()
		notByRampart(t, "exec into mallory's pod", err)
		// alice, granted exec on frontier-7, gets in; the exec is recorded (kube.exec, which
		// detection's exec-into-protected-pod rule watches).
		id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-debugger-frontier-7", "--reason", "debug eval 4411", "--duration", "1h").out)
		c.as(bob, "request", "approve", id)
		c.as(dave, "request", "approve", id)
		err = asAlice.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("token-user").SubResource("exec").
			Param("command", "env").Param("stdout", "true").Do(ctx).Error()
		notByRampart(t, "alice's exec under her grant", err)
		if tail := c.as(erin, "audit", "tail", "-n", "20"); !strings.Contains(tail.out, "kube.exec") {
			t.Fatalf("no kube.exec in the ledger after alice's exec:\n%s%s", tail.out, tail.err)
		}
	})

	t.Run("cloning protected claims", func(t *testing.T) {
		_, err := mallory.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("stolen-1", cloneOf("frontier-7-weights")), metav1.CreateOptions{})
		refusedFor(t, "a claim cloning the weights (dataSource)", err, "rampart.protected-copy")
		_, err = mallory.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("stolen-2", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "frontier-7-weights"}
		}), metav1.CreateOptions{})
		refusedFor(t, "a claim cloning the weights (dataSourceRef)", err, "rampart.protected-copy")
		_, err = mallory.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("stolen-3", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-frontier-7" }), metav1.CreateOptions{})
		refusedFor(t, "a claim pinned to the weights' volume", err, "rampart.protected-copy")
		_, err = mallory.CoreV1().Pods("research").Create(ctx, ephemeralClone("stolen-4", "default"), metav1.CreateOptions{})
		refusedFor(t, "a generic ephemeral volume cloning the weights", err, "rampart.protected-copy")
		// A pending claim pinned to the volume by a later update.
		if _, err := mallory.CoreV1().PersistentVolumeClaims("research").Create(ctx, reachClaim("pending", nil), metav1.CreateOptions{}); err != nil {
			t.Fatalf("an ordinary claim: %v", err)
		}
		_, err = mallory.CoreV1().PersistentVolumeClaims("research").Patch(ctx, "pending", types.MergePatchType, []byte(`{"spec":{"volumeName":"pv-frontier-7"}}`), metav1.PatchOptions{})
		refusedFor(t, "volumeName set on a pending claim", err, "rampart.protected-copy")
		_, err = snapshots.Namespace("research").Create(ctx, volumeSnapshot("grab", "frontier-7-weights"), metav1.CreateOptions{})
		refusedFor(t, "a snapshot of the weights", err, "rampart.protected-copy")
		if _, err := snapshots.Namespace("research").Create(ctx, volumeSnapshot("scratch", "pending"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("a snapshot of an ordinary claim: %v", err)
		}
	})

	t.Run("pod and service proxies", func(t *testing.T) {
		for _, name := range []string{"weights-eval", "weights-eval:8080", "http:weights-eval:8080"} {
			err := mallory.CoreV1().RESTClient().Get().Namespace("research").Resource("pods").Name(name).SubResource("proxy").Suffix("v1/models").Do(ctx).Error()
			refusedFor(t, "pods/proxy "+name, err, "rampart.protected-exec")
		}
		err := mallory.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("weights-eval").SubResource("portforward").Do(ctx).Error()
		refusedFor(t, "port-forward to the weights pod", err, "rampart.protected-exec")
		for _, name := range []string{"weights-eval", "weights-eval:http", "http:weights-eval:8080"} {
			err := mallory.CoreV1().RESTClient().Get().Namespace("research").Resource("services").Name(name).SubResource("proxy").Suffix("v1/models").Do(ctx).Error()
			refusedFor(t, "services/proxy "+name, err, "rampart.protected-exec")
		}
		err = mallory.CoreV1().RESTClient().Get().Namespace("research").Resource("pods").Name("plain").SubResource("proxy").Do(ctx).Error()
		notByRampart(t, "pods/proxy to mallory's pod", err)
	})

	t.Run("kube-* namespaces", func(t *testing.T) {
		// A namespace anyone who may create namespaces could name: governed like any other. The
		// keeper gives it its default-deny policy, and compliant pods are admitted.
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-tools"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "kube-tools' default-deny NetworkPolicy", func() bool {
			_, err := cs.NetworkingV1().NetworkPolicies("kube-tools").Get(ctx, netpol.Name, metav1.GetOptions{})
			return err == nil
		})
		if _, err := cs.CoreV1().Pods("kube-tools").Create(ctx, restrictedPod("tool", ""), metav1.CreateOptions{}); err != nil {
			t.Fatalf("a compliant pod in kube-tools: %v", err)
		}
		bad := restrictedPod("privileged", "")
		priv := true
		bad.Spec.Containers[0].SecurityContext.Privileged = &priv
		bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		_, err := cs.CoreV1().Pods("kube-tools").Create(ctx, bad, metav1.CreateOptions{})
		refusedFor(t, "a privileged pod in kube-tools", err, "restricted.privileged")
	})

	t.Run("scan", func(t *testing.T) {
		r := c.as(erin, "kube", "scan", "--kubeconfig", env.KubeconfigFile, "--policy", policyDir)
		if r.code != 3 {
			t.Fatalf("scan: %+v", r)
		}
		// Each finding is a line: the object's kind and namespace/name, the check, …
		found := map[string]bool{}
		for line := range strings.Lines(r.out) {
			if f := strings.Fields(line); len(f) >= 3 {
				found[f[0]+" "+f[1]] = true
				found[f[0]+" "+f[1]+" "+f[2]] = true
			}
		}
		for obj, check := range leftovers {
			if !found[obj+" "+check] {
				t.Errorf("the scan does not report %s (%s)", obj, check)
			}
		}
		for _, admitted := range []string{"Pod research/weights-eval", "Pod research/token-user", "Pod research/gpu-alice", "PersistentVolumeClaim research/frontier-7-weights", "PersistentVolumeClaim research/pending"} {
			if found[admitted] {
				t.Errorf("the scan reports %s, admitted under a grant", admitted)
			}
		}
		if t.Failed() {
			t.Logf("scan:\n%s", r.out)
		}
	})
}

// copyDemoPolicy copies the demo policy to dir, through edit.
func copyDemoPolicy(t *testing.T, dir string, edit func(name, text string) string) {
	t.Helper()
	src := "../../internal/demo/policy"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), []byte(edit(e.Name(), string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// researcher gives oidc:mallory and oidc:alice what a researcher has in each namespace.
func researcher(t *testing.T, cs kubernetes.Interface, namespaces ...string) {
	t.Helper()
	ctx := context.Background()
	all := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "researcher"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "persistentvolumeclaims", "replicationcontrollers"}, Verbs: all},
		{APIGroups: []string{""}, Resources: []string{"pods/ephemeralcontainers"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "pods/log", "services/proxy"}, Verbs: []string{"get", "create"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets"}, Verbs: all},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: all},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: all},
		{APIGroups: []string{"snapshot.storage.k8s.io"}, Resources: []string{"volumesnapshots"}, Verbs: all},
	}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		b := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "researchers"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "researcher"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}, {Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:alice"}}}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func reachClaim(name string, mut func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if mut != nil {
		mut(c)
	}
	return c
}

func cloneOf(claim string) func(*corev1.PersistentVolumeClaim) {
	return func(c *corev1.PersistentVolumeClaim) {
		c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: claim}
	}
}

// weightsPod mounts the weights' claim; its container serves on 8080.
func weightsPod(name, sa string) *corev1.Pod {
	p := restrictedPod(name, sa)
	p.Labels = map[string]string{"app": name}
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	p.Spec.Volumes = []corev1.Volume{{Name: "weights", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "frontier-7-weights", ReadOnly: true}}}}
	return p
}

// tokenPod takes frontier-7's token Secret through its environment only: envFrom in its
// container, secretKeyRef in an init container.
func tokenPod(name, sa string) *corev1.Pod {
	p := restrictedPod(name, sa)
	p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "frontier-7-hf-token"}}}}
	fetch := restrictedPod("", "").Spec.Containers[0]
	fetch.Name = "fetch"
	fetch.Env = []corev1.EnvVar{{Name: "HF_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "frontier-7-hf-token"}, Key: "token"}}}}
	p.Spec.InitContainers = []corev1.Container{fetch}
	return p
}

// ephemeralClone has a generic ephemeral volume whose claim clones the weights.
func ephemeralClone(name, sa string) *corev1.Pod {
	p := restrictedPod(name, sa)
	c := reachClaim("", cloneOf("frontier-7-weights"))
	p.Spec.Volumes = []corev1.Volume{{Name: "copy", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
		VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: c.Spec}}}}}
	return p
}

// cleanDebugger is an ephemeral container that passes Pod Security restricted and the baseline.
func cleanDebugger() corev1.EphemeralContainer {
	c := restrictedPod("", "").Spec.Containers[0]
	c.Name = "debugger"
	c.Stdin, c.TTY = true, true
	return corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(c)}
}

// debugPatch is the strategic merge patch kubectl debug sends to pods/ephemeralcontainers.
func debugPatch(t *testing.T, ec corev1.EphemeralContainer) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"spec": map[string]any{"ephemeralContainers": []corev1.EphemeralContainer{ec}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var volumeSnapshotsGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}

// installSnapshotCRD serves snapshot.storage.k8s.io/v1 VolumeSnapshots (a CRD whose schema
// keeps every field, standing in for the external snapshotter's) and returns a client for them.
func installSnapshotCRD(t *testing.T, cfg *rest.Config) dynamic.NamespaceableResourceInterface {
	t.Helper()
	ctx := context.Background()
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "volumesnapshots.snapshot.storage.k8s.io",
			// *.k8s.io groups need it; "unapproved…" is what the apiserver accepts from others.
			"annotations": map[string]any{"api-approved.kubernetes.io": "unapproved, a stand-in for the CSI external snapshotter's CRD"}},
		"spec": map[string]any{"group": "snapshot.storage.k8s.io", "scope": "Namespaced",
			"names": map[string]any{"kind": "VolumeSnapshot", "listKind": "VolumeSnapshotList", "plural": "volumesnapshots", "singular": "volumesnapshot"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}
	crds := dc.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	snaps := dc.Resource(volumeSnapshotsGVR)
	waitFor(t, 30*time.Second, "the VolumeSnapshot API", func() bool {
		_, err := snaps.Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil
	})
	return snaps
}

func volumeSnapshot(name, claim string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"source": map[string]any{"persistentVolumeClaimName": claim}}}}
}
