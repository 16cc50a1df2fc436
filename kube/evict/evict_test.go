package evict_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/evict"
	"rampart.dev/rampart/policy"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func weightsPod(name, sa string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{ServiceAccountName: sa,
		Containers: []corev1.Container{{Name: "c", Image: "registry.internal.example/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
		Volumes: []corev1.Volume{{Name: "w", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "frontier-7-weights", ReadOnly: true}}}}}}
}

// Against a real apiserver: a pod that mounts the weights stays while its service account may
// read them, stays while the decision engine cannot be trusted (no deletion on its word), and
// is deleted, and the deletion recorded, once the decision says no. A pod without protected
// data, and one in an exempt namespace, are never touched.
func TestEvictorDeletesPodsWhoseGrantEnded(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	// The demo's protected claim lives in research; the test's namespaces are its own, so the
	// policy is asked about research and the pods are placed there.
	for _, ns := range []string{"research", "rampart"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	const (
		allow = iota
		unavailable
		deny
	)
	var state, asked atomic.Int32
	decide := func(q authz.Query) authz.Decision {
		asked.Add(1)
		switch state.Load() {
		case allow:
			return authz.Decision{Allowed: true, GrantID: "grt_test"}
		case unavailable:
			return authz.Decision{Reason: "denied: failing closed because the store is unreachable", Unavailable: true}
		}
		return authz.Decision{Reason: "denied: no active grant"}
	}
	var mu sync.Mutex
	var entries []audit.Event
	e := &evict.Evictor{Client: env.Clientset, Policy: func() *policy.Policy { return pol }, Decide: decide,
		Record: func(_ context.Context, ev audit.Event) error {
			mu.Lock()
			entries = append(entries, ev)
			mu.Unlock()
			return nil
		}}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	create := func(ns string, p *corev1.Pod) {
		if _, err := env.Clientset.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Clientset.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}) })
	}
	exists := func(ns, name string) bool {
		_, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}
	plain := weightsPod("plain", "evaluator")
	plain.Spec.Volumes = nil
	create("research", weightsPod("weights", "evaluator"))
	create("research", plain)
	create("rampart", weightsPod("exempt", "evaluator"))
	// Each phase waits until the weights pod has been judged twice more in it (the only pod
	// whose judgement asks the decision engine), then looks.
	judged := func(whileWhat string) {
		t.Helper()
		from := asked.Load()
		deadline := time.Now().Add(10 * time.Second)
		for asked.Load() < from+2 {
			if !exists("research", "weights") {
				t.Fatal("the pod was deleted " + whileWhat)
			}
			if time.Now().After(deadline) {
				t.Fatal("the evictor did not judge the pod twice within 10 s")
			}
			e.Trigger()
			time.Sleep(10 * time.Millisecond)
		}
	}
	judged("while its grant was active")
	if !exists("research", "weights") {
		t.Fatal("a pod was deleted while its grant was active")
	}
	state.Store(unavailable)
	judged("on the word of an untrusted decision engine")
	if !exists("research", "weights") {
		t.Fatal("a pod was deleted on the word of an untrusted decision engine")
	}
	state.Store(deny)
	e.Trigger()
	deadline := time.Now().Add(5 * time.Second)
	for exists("research", "weights") {
		if time.Now().After(deadline) {
			t.Fatal("the pod whose grant ended still exists 5 s later")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !exists("research", "plain") || !exists("rampart", "exempt") {
		t.Fatal("a pod without protected data, or in an exempt namespace, was deleted")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(entries) != 1 || entries[0].Code != "kube.pod.deleted" || entries[0].Details["pod"] != "weights" || entries[0].Severity != audit.SeverityHigh {
		t.Fatalf("ledger: %+v", entries)
	}
}
