package iac

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"rampart.dev/rampart/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// Drift against a real apiserver: an object nobody touched is in sync even though the server
// filled in defaults (a Deployment's strategy, revisionHistoryLimit, a pod template's
// terminationGracePeriodSeconds…) and owns fields (status, managedFields, resourceVersion); an
// object edited by hand is changed, at the edited path; a declared object that is not there is
// missing; an object nobody declared in the namespace is extra.
func TestDriftAgainstAnAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	manifest := fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s}
data: {replicas: "3", mode: train}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: never-applied, namespace: %[1]s}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: trainer, namespace: %[1]s, labels: {app: trainer}}
spec:
  selector: {matchLabels: {app: trainer}}
  template:
    metadata: {labels: {app: trainer}}
    spec:
      containers:
      - name: train
        image: registry.internal.example/trainer@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: %[1]s}
type: Opaque
`, ns)
	objs, err := Decode("deploy.yaml", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	// Deploy everything but never-applied, as a CD tool would (server-side apply, its own
	// field manager).
	for _, o := range objs {
		if o.Name == "never-applied" {
			continue
		}
		res := map[string]string{"ConfigMap": "configmaps", "Deployment": "deployments", "Secret": "secrets"}[o.Kind]
		force := true
		rc := env.Clientset.CoreV1().RESTClient()
		if o.Kind == "Deployment" {
			rc = env.Clientset.AppsV1().RESTClient()
		}
		if err := rc.Patch(types.ApplyPatchType).Namespace(ns).Resource(res).Name(o.Name).
			VersionedParams(&metav1.PatchOptions{FieldManager: "argocd", Force: &force}, metav1.ParameterCodec).Body([]byte(o.JSON)).Do(ctx).Error(); err != nil {
			t.Fatalf("apply %s: %v", o.ID(), err)
		}
	}
	got, err := Drift(ctx, env.Config, objs, DriftOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"missing ConfigMap " + ns + "/never-applied"}; !slices.Equal(states(got), want) {
		t.Fatalf("right after deploying: %v, want %v (%+v)", states(got), want, got)
	}
	// By hand: a changed value, and an object of its own; and someone writes the Secret's data.
	cm, err := env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["replicas"] = "300"
	if _, err := env.Clientset.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-hand"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err = Drift(ctx, env.Config, objs, DriftOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"changed ConfigMap " + ns + "/settings", "extra ConfigMap " + ns + "/by-hand", "missing ConfigMap " + ns + "/never-applied"}
	if !slices.Equal(states(got), want) {
		t.Fatalf("after edits by hand: %v, want %v (%+v)", states(got), want, got)
	}
	for _, f := range got {
		if f.State == DriftChanged && !slices.Equal(f.Fields, []string{"data.replicas"}) {
			t.Errorf("changed fields: %v, want [data.replicas]", f.Fields)
		}
		if strings.Contains(f.Message, "300") {
			t.Errorf("a drift message carries a value: %s", f.Message)
		}
	}
	// Nothing was written: the dry runs left the hand edit in place.
	cm, err = env.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil || cm.Data["replicas"] != "300" {
		t.Fatalf("drift wrote to the cluster: %v %v", err, cm.Data)
	}
}

func states(fs []DriftFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.State+" "+f.Object())
	}
	return out
}
