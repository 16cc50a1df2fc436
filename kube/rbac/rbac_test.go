package rbac_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

const extraRoles = `apiVersion: rampart.dev/v1alpha1
kind: Role
metadata:
  name: research-debugger
spec:
  description: Debug workloads in the research namespaces.
  rules:
  - actions: [exec]
    resources: [namespaces/research-sandbox]
  kubernetes:
    cluster_role: pod-debugger
    namespaces: [rbac-a, rbac-b]
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata:
  name: pvc-reader
spec:
  description: Read persistent volume claims everywhere.
  rules:
  - actions: [read]
    resources: [namespaces/research-sandbox]
  kubernetes:
    rules:
    - api_groups: [""]
      resources: [persistentvolumeclaims]
      verbs: [get, list]
`

func loadPolicy(t *testing.T, drift string) *policy.Policy {
	t.Helper()
	return loadPolicyWith(t, drift, extraRoles)
}

// loadPolicyWith is the demo policy with the given roles added and drift set.
func loadPolicyWith(t *testing.T, drift, roles string) *policy.Policy {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m["k8s-roles.yaml"] = &fstest.MapFile{Data: []byte(roles)}
	// The demo settings: cluster dev, user prefix "oidc:", cluster-admin protected, drift report.
	settings := strings.Replace(string(m["settings.yaml"].Data), "drift: report", "drift: "+drift, 1)
	if !strings.Contains(settings, "drift: "+drift) {
		t.Fatal("the demo settings have no kubernetes.drift to change")
	}
	m["settings.yaml"] = &fstest.MapFile{Data: []byte(settings)}
	p, err := policy.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// world is the reconciler's inputs, changed by the test.
type world struct {
	mu      sync.Mutex
	grants  []authz.GrantInfo
	stale   error
	pol     *policy.Policy
	entries []audit.Event
	store   *sqlstore.DB                       // when set, drift is recorded through it once (AppendOnce)
	clock   *clocktest.Clock                   // when set, the reconcilers' clock (else the wall clock)
	passes  map[*rbac.Reconciler]*atomic.Int64 // passes each reconciler began (it reads the grants once per pass)
}

func (w *world) Grants() ([]authz.GrantInfo, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stale != nil {
		return nil, w.stale
	}
	return append([]authz.GrantInfo(nil), w.grants...), nil
}

func (w *world) set(f func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f()
}

func (w *world) codes(code string) []audit.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []audit.Event
	for _, e := range w.entries {
		if e.Code == code {
			out = append(out, e)
		}
	}
	return out
}

func start(t *testing.T, env *kubetest.Env, w *world) *rbac.Reconciler {
	t.Helper()
	passes := new(atomic.Int64)
	r := &rbac.Reconciler{
		Client: env.Clientset,
		Policy: func() *policy.Policy { w.mu.Lock(); defer w.mu.Unlock(); return w.pol },
		Grants: func() ([]authz.GrantInfo, error) { passes.Add(1); return w.Grants() },
		Record: func(_ context.Context, e audit.Event) error {
			w.mu.Lock()
			w.entries = append(w.entries, e)
			w.mu.Unlock()
			return nil
		},
	}
	w.mu.Lock()
	if w.clock != nil {
		r.Now = w.clock.Now
	}
	if w.passes == nil {
		w.passes = map[*rbac.Reconciler]*atomic.Int64{}
	}
	w.passes[r] = passes
	w.mu.Unlock()
	if w.store != nil {
		r.RecordOnce = func(ctx context.Context, key string, e audit.Event) error {
			ok, err := w.store.AppendOnce(ctx, key, e)
			if ok {
				w.mu.Lock()
				w.entries = append(w.entries, e)
				w.mu.Unlock()
			}
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return r
}

// morePasses waits until each reconciler has finished n more passes than when it was called (it
// has begun n+1), triggering them meanwhile. The minute is a limit for failures only.
func morePasses(t *testing.T, w *world, n int64, rs ...*rbac.Reconciler) {
	t.Helper()
	w.mu.Lock()
	want := make([]int64, len(rs))
	counters := make([]*atomic.Int64, len(rs))
	for i, r := range rs {
		counters[i] = w.passes[r]
		want[i] = counters[i].Load() + n + 1
	}
	w.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for i, r := range rs {
		for counters[i].Load() < want[i] {
			if time.Now().After(deadline) {
				t.Fatalf("reconciler %d made %d passes in a minute, want %d", i, counters[i].Load(), want[i])
			}
			r.Trigger()
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// eventually polls cond every 20 ms for up to d and reports how long it took.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, d)
	return 0
}

func roleBinding(env *kubetest.Env, ns, name string) (*rbacv1.RoleBinding, bool) {
	b, err := env.Clientset.RbacV1().RoleBindings(ns).Get(context.Background(), name, metav1.GetOptions{})
	return b, err == nil
}

// canListPods asks the real apiserver, as user, whether listing pods in ns is allowed.
func canListPods(t *testing.T, env *kubetest.Env, user, ns string) bool {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	switch {
	case err == nil:
		return true
	case apierrors.IsForbidden(err):
		return false
	}
	t.Fatalf("list pods as %s: %v", user, err)
	return false
}

func TestGrantsBecomeBindings(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	for _, ns := range []string{"rbac-a", "rbac-b"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// (envtest runs no controller-manager, so the aggregated edit/view roles have no rules: the
	// test brings its own ClusterRole.)
	if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-debugger"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The reconcilers' clock is the test's: expiry is reached by advancing it, not by waiting.
	w := &world{pol: loadPolicy(t, policy.DriftReport), clock: clocktest.New(time.Now())}
	now := w.clock.Now()
	alice := authz.GrantInfo{ID: "grt_alice1", Role: "research-debugger", Subject: "alice", StartsAt: now, ExpiresAt: now.Add(time.Hour)}
	trainer := authz.GrantInfo{ID: "grt_trainer1", Role: "pvc-reader", Subject: "k8s:dev/rbac-a/trainer", StartsAt: now, ExpiresAt: now.Add(time.Hour)}
	elsewhere := authz.GrantInfo{ID: "grt_prod1", Role: "pvc-reader", Subject: "k8s:prod/ml/trainer", StartsAt: now, ExpiresAt: now.Add(time.Hour)}
	w.grants = []authz.GrantInfo{alice, trainer, elsewhere}

	if canListPods(t, env, "oidc:alice", "rbac-a") {
		t.Fatal("alice can list pods before any grant")
	}
	r := start(t, env, w)

	// alice: a RoleBinding to edit in each namespace of the role, and real access.
	name := rbac.BindingName(alice.ID)
	eventually(t, 5*time.Second, "alice's bindings", func() bool {
		_, a := roleBinding(env, "rbac-a", name)
		_, b := roleBinding(env, "rbac-b", name)
		return a && b
	})
	b, _ := roleBinding(env, "rbac-a", name)
	if b.Labels[rbac.LabelManagedBy] != "rampart" || b.Annotations[rbac.AnnotationGrantID] != alice.ID || b.RoleRef.Name != "pod-debugger" ||
		len(b.Subjects) != 1 || b.Subjects[0].Name != "oidc:alice" || b.Subjects[0].Kind != "User" {
		t.Fatalf("binding: %+v", b)
	}
	if !canListPods(t, env, "oidc:alice", "rbac-a") {
		t.Fatal("alice's grant does not let her list pods in rbac-a")
	}
	// The workload: Rampart's own ClusterRole from the rules, bound cluster-wide.
	eventually(t, 5*time.Second, "the trainer's ClusterRoleBinding", func() bool {
		_, err := env.Clientset.RbacV1().ClusterRoleBindings().Get(ctx, rbac.BindingName(trainer.ID), metav1.GetOptions{})
		return err == nil
	})
	cr, err := env.Clientset.RbacV1().ClusterRoles().Get(ctx, "rampart:pvc-reader", metav1.GetOptions{})
	if err != nil || len(cr.Rules) != 1 || cr.Rules[0].Resources[0] != "persistentvolumeclaims" {
		t.Fatalf("managed ClusterRole: %+v %v", cr, err)
	}
	crb, _ := env.Clientset.RbacV1().ClusterRoleBindings().Get(ctx, rbac.BindingName(trainer.ID), metav1.GetOptions{})
	if s := crb.Subjects[0]; s.Kind != "ServiceAccount" || s.Namespace != "rbac-a" || s.Name != "trainer" {
		t.Fatalf("workload subject: %+v", s)
	}
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Get(ctx, rbac.BindingName(elsewhere.ID), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("another cluster's workload was bound here: %v", err)
	}

	// Tampering: someone points alice's binding at bob. It is replaced by the right one.
	b.Subjects[0].Name = "oidc:bob"
	if _, err := env.Clientset.RbacV1().RoleBindings("rbac-a").Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the altered binding restored", func() bool {
		b, ok := roleBinding(env, "rbac-a", name)
		return ok && b.Subjects[0].Name == "oidc:alice"
	})
	// A binding that claims to be Rampart's but has no grant behind it is removed.
	forged := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "rampart-grt-forged", Namespace: "rbac-a",
			Labels:      map[string]string{rbac.LabelManagedBy: "rampart", rbac.LabelGrant: "grt-forged"},
			Annotations: map[string]string{rbac.AnnotationGrantID: "grt_forged", rbac.AnnotationExpiresAt: time.Now().Add(time.Hour).Format(time.RFC3339Nano)}},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings("rbac-a").Create(ctx, forged, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the forged binding removed", func() bool {
		_, ok := roleBinding(env, "rbac-a", "rampart-grt-forged")
		return !ok
	})

	// Revocation: the grant leaves the index; the bindings go within 2 s, and so does access.
	w.set(func() { w.grants = []authz.GrantInfo{trainer, elsewhere} })
	took := eventually(t, 2*time.Second, "alice's bindings deleted after revocation", func() bool {
		_, a := roleBinding(env, "rbac-a", name)
		_, b := roleBinding(env, "rbac-b", name)
		return !a && !b
	})
	t.Logf("revocation → bindings gone in %s (no Trigger: the 1 s resync)", took.Round(time.Millisecond))
	if canListPods(t, env, "oidc:alice", "rbac-a") {
		t.Fatal("alice still lists pods after her grant was revoked")
	}

	// Expiry: a grant that ends in 1.5 s (of the reconcilers' clock, which the test advances). Its
	// binding is made while the grant is active however slow this machine is, and goes at the
	// next pass after the end: woken by the timer set for the expiry instant or the 1 s resync,
	// whichever comes first (the minute is a limit for failures only; the time is logged).
	short := authz.GrantInfo{ID: "grt_short1", Role: "research-debugger", Subject: "carol", StartsAt: w.clock.Now(), ExpiresAt: w.clock.Now().Add(1500 * time.Millisecond)}
	w.set(func() { w.grants = append(w.grants, short) })
	r.Trigger()
	eventually(t, time.Minute, "the short grant's binding", func() bool {
		_, ok := roleBinding(env, "rbac-b", rbac.BindingName(short.ID))
		return ok
	})
	w.clock.Advance(1500 * time.Millisecond)
	took = eventually(t, time.Minute, "the short grant's binding deleted after its end", func() bool {
		_, ok := roleBinding(env, "rbac-b", rbac.BindingName(short.ID))
		return !ok
	})
	t.Logf("expiry → binding gone %s after the grant's end (no Trigger)", took.Round(time.Millisecond))

	// Every change is in the ledger.
	if len(w.codes("kube.binding.create")) < 4 || len(w.codes("kube.binding.delete")) < 5 {
		t.Fatalf("ledger: %d creates, %d deletes", len(w.codes("kube.binding.create")), len(w.codes("kube.binding.delete")))
	}
}

// Drift: a hand-made binding to cluster-admin is reported once in report mode, by two replicas
// sharing a store and by a third started later (a restart), and deleted in enforce mode. The
// apiserver's own bootstrap binding is left alone.
func TestDrift(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rampart.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &world{pol: loadPolicy(t, policy.DriftReport), store: st}
	r1, r2 := start(t, env, w), start(t, env, w)
	hand := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "break-glass-by-hand", Namespace: ns},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "oidc:mallory"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
	}
	if _, err := env.Clientset.RbacV1().RoleBindings(ns).Create(ctx, hand, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "drift reported", func() bool {
		for _, e := range w.codes("kube.drift") {
			if e.Details["binding"] == "break-glass-by-hand" {
				return true
			}
		}
		return false
	})
	r3 := start(t, env, w) // a replica that has reported nothing yet
	// Two more passes of every replica, the new one included: still reported once, still there.
	morePasses(t, w, 2, r1, r2, r3)
	if n, err := st.LedgerSize(ctx); err != nil || n != 1 {
		t.Fatalf("the store's ledger holds %d drift entries (%v), want 1", n, err)
	}
	n := 0
	for _, e := range w.codes("kube.drift") {
		if e.Details["binding"] == "break-glass-by-hand" {
			n++
			if e.Severity != audit.SeverityHigh || !strings.Contains(e.Message, "report") {
				t.Errorf("drift entry: %+v", e)
			}
		}
		if e.Details["binding"] == "cluster-admin" {
			t.Errorf("the apiserver's bootstrap binding was reported: %+v", e)
		}
	}
	if n != 1 {
		t.Fatalf("drift reported %d times", n)
	}
	if _, ok := roleBinding(env, ns, "break-glass-by-hand"); !ok {
		t.Fatal("report mode deleted the binding")
	}
	// Enforce: deleted, and recorded as such.
	w.set(func() { w.pol = loadPolicy(t, policy.DriftEnforce) })
	eventually(t, 3*time.Second, "drift removed in enforce mode", func() bool {
		_, ok := roleBinding(env, ns, "break-glass-by-hand")
		return !ok
	})
	if _, err := env.Clientset.RbacV1().ClusterRoleBindings().Get(ctx, "cluster-admin", metav1.GetOptions{}); err != nil {
		t.Fatalf("the bootstrap cluster-admin binding: %v", err)
	}
}

// When the grants cannot be trusted (the store is down), nothing is created, and what exists
// still goes at the expiry written on it.
func TestStaleGrantsFailClosed(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	for _, ns := range []string{"rbac-a", "rbac-b"} {
		if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	w := &world{pol: loadPolicy(t, policy.DriftReport)}
	// The expiry leaves a busy machine time to create the binding first; the waits below are
	// failure limits.
	g := authz.GrantInfo{ID: "grt_stale1", Role: "research-debugger", Subject: "dave", StartsAt: time.Now(), ExpiresAt: time.Now().Add(6 * time.Second)}
	w.grants = []authz.GrantInfo{g}
	r := start(t, env, w)
	eventually(t, 6*time.Second, "the binding", func() bool { _, ok := roleBinding(env, "rbac-a", rbac.BindingName(g.ID)); return ok })

	w.set(func() {
		w.stale = errors.New("grant index has not synced with the store for 6s")
		w.grants = append(w.grants, authz.GrantInfo{ID: "grt_stale2", Role: "research-debugger", Subject: "erin", StartsAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	})
	r.Trigger()
	for time.Now().Before(g.ExpiresAt) {
		if _, ok := roleBinding(env, "rbac-a", rbac.BindingName("grt_stale2")); ok {
			t.Fatal("a binding was created while the grants could not be trusted")
		}
		// Missing counts only if it was already missing before the expiry: a lookup that ends
		// after it may see the deletion the expiry is due to cause.
		if _, ok := roleBinding(env, "rbac-a", rbac.BindingName(g.ID)); !ok && time.Now().Before(g.ExpiresAt) {
			t.Fatal("a binding was deleted before its written expiry while the store was down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, 30*time.Second, "deleted at its written expiry despite the outage", func() bool {
		_, ok := roleBinding(env, "rbac-a", rbac.BindingName(g.ID))
		return !ok
	})
}

// A ClusterRole someone else labelled as Rampart's is not Rampart's to delete: the reconciler
// deletes only rampart:<role> ClusterRoles that have left the policy.
func TestForeignClusterRoleLabelledAsRampartsIsKept(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := context.Background()
	for _, name := range []string{"team-reader", "rampart:left-the-policy"} {
		if _, err := env.Clientset.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{rbac.LabelManagedBy: rbac.ManagedBy}},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = env.Clientset.RbacV1().ClusterRoles().Delete(ctx, "team-reader", metav1.DeleteOptions{}) })
	start(t, env, &world{pol: loadPolicy(t, policy.DriftReport)})
	eventually(t, 3*time.Second, "the stale rampart: ClusterRole deleted", func() bool {
		_, err := env.Clientset.RbacV1().ClusterRoles().Get(ctx, "rampart:left-the-policy", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := env.Clientset.RbacV1().ClusterRoles().Get(ctx, "team-reader", metav1.GetOptions{}); err != nil {
		t.Fatalf("a ClusterRole Rampart did not name was deleted: %v", err)
	}
}
