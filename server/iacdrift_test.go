package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

// driftEntries returns the iac.drift and iac.drift_cleared entries of the ledger, in order.
func driftEntries(t *testing.T, in *server.Instance) []string {
	t.Helper()
	recs, err := in.Store.Entries(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		s, err := audit.Summarize(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(s.Code, "iac.drift") {
			out = append(out, string(r.Data))
		}
	}
	return out
}

// driftGauge reads rampart_iac_drift_objects{kind} and rampart_iac_drift_errors_total.
func driftGauge(t *testing.T, in *server.Instance, name, kind string) float64 {
	t.Helper()
	mfs, err := in.API.Registry().(prometheus.Gatherer).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if kind == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{kind=%q}", name, kind)
	return 0
}

// Issue 16: the server runs iac drift against the real kube-apiserver. A drift is one entry;
// the same drift at the next run is none (invariant 11); a different drift is one more; once the
// cluster matches again, one iac.drift_cleared and the gauge back to 0. Entries name objects,
// never field values. A repository that does not render is counted, not fatal.
func TestIACDriftJob(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	repo := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(repo, "app.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: drift-job}\ndata: {replicas: \"3\"}\n")
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "drift-job"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	off := false
	cfg := testConfig(t, "")
	cfg.Kubernetes = server.KubernetesConfig{Kubeconfig: env.KubeconfigFile, RBAC: &off, NetworkPolicies: &off, PodRevocation: &off}
	cfg.IACDrift = &server.IACDriftConfig{Path: repo}
	in := start(t, cfg, server.Options{}, nil)
	defer in.Close()
	run := func() {
		t.Helper()
		if err := in.CheckIACDrift(ctx); err != nil {
			t.Fatal(err)
		}
	}

	run() // declared, missing
	got := driftEntries(t, in)
	if len(got) != 1 || !strings.Contains(got[0], `"iac.drift"`) || !strings.Contains(got[0], `missing ConfigMap drift-job/settings`) {
		t.Fatalf("after a missing object, want one iac.drift entry naming it: %q", got)
	}
	if n := driftGauge(t, in, "rampart_iac_drift_objects", "missing"); n != 1 {
		t.Fatalf("missing gauge %v, want 1", n)
	}
	run() // the same drift: no new entry
	if got := driftEntries(t, in); len(got) != 1 {
		t.Fatalf("the same drift at the next run was recorded again: %q", got)
	}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "drift-job"}, Data: map[string]string{"replicas": "30-secret-value"}}
	if _, err := env.Clientset.CoreV1().ConfigMaps("drift-job").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	run() // now changed: a different set, one more entry, without the value
	run()
	got = driftEntries(t, in)
	if len(got) != 2 || !strings.Contains(got[1], `changed ConfigMap drift-job/settings`) || strings.Contains(got[1], "30-secret-value") {
		t.Fatalf("after the object changed, want a second entry naming it, never its value: %q", got)
	}
	if m, c := driftGauge(t, in, "rampart_iac_drift_objects", "missing"), driftGauge(t, in, "rampart_iac_drift_objects", "changed"); m != 0 || c != 1 {
		t.Fatalf("gauge missing=%v changed=%v, want 0 and 1", m, c)
	}

	cm.Data["replicas"] = "3"
	if _, err := env.Clientset.CoreV1().ConfigMaps("drift-job").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	run() // fixed: cleared once
	run()
	got = driftEntries(t, in)
	if len(got) != 3 || !strings.Contains(got[2], `"iac.drift_cleared"`) {
		t.Fatalf("after the cluster matched again, want one iac.drift_cleared: %q", got)
	}
	if c := driftGauge(t, in, "rampart_iac_drift_objects", "changed"); c != 0 {
		t.Fatalf("changed gauge %v after the fix, want 0", c)
	}

	// A repository that does not render: counted and reported, no entry, the server goes on.
	write("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n")
	if err := in.CheckIACDrift(ctx); err == nil || !strings.Contains(err.Error(), "does not render") {
		t.Fatalf("a repository that does not render: %v", err)
	}
	if n := driftGauge(t, in, "rampart_iac_drift_errors_total", ""); n != 1 {
		t.Fatalf("errors counter %v, want 1", n)
	}
	if got := driftEntries(t, in); len(got) != 3 {
		t.Fatalf("a failed run wrote to the ledger: %q", got)
	}
}

// A bad iac_drift configuration is refused at start, naming the field.
func TestIACDriftConfigRefused(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"no path":       {"kubernetes: {kubeconfig: " + kc + "}\niac_drift: {interval: 1m}\n", "iac_drift.path"},
		"missing path":  {"kubernetes: {kubeconfig: " + kc + "}\niac_drift: {path: " + filepath.Join(dir, "nope") + "}\n", "iac_drift.path"},
		"file path":     {"kubernetes: {kubeconfig: " + kc + "}\niac_drift: {path: " + kc + "}\n", "not a directory"},
		"short":         {"kubernetes: {kubeconfig: " + kc + "}\niac_drift: {path: " + dir + ", interval: 10ms}\n", "iac_drift.interval"},
		"no cluster":    {"iac_drift: {path: " + dir + "}\n", "set kubernetes.kubeconfig or kubernetes.in_cluster"},
		"unknown field": {"kubernetes: {kubeconfig: " + kc + "}\niac_drift: {path: " + dir + ", every: 1m}\n", "every"},
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "rampart.yaml")
			body := "data_dir: " + dir + "\npolicy_dir: " + dir + "\n" + tc.body
			if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := server.LoadConfig(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error naming %q, got %v", tc.want, err)
			}
		})
	}
}

// The job runs on the jobs-lease holder at once and then every interval of the injected
// clock: with interval 1h, the fix is seen only once the clock has moved an hour.
func TestIACDriftScheduleOnInjectedClock(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "ns.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: drift-clock}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	off := false
	cfg := testConfig(t, "")
	cfg.Kubernetes = server.KubernetesConfig{Kubeconfig: env.KubeconfigFile, RBAC: &off, NetworkPolicies: &off, PodRevocation: &off}
	cfg.IACDrift = &server.IACDriftConfig{Path: repo, Interval: policy.Duration(time.Hour)}
	clock := clocktest.New(time.Now())
	in := start(t, cfg, server.Options{Now: clock.Now}, nil)
	defer in.Close()
	// Waits are failure limits only.
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 60s", what)
			}
		}
	}
	waitUntil("the first run's iac.drift", func() bool { return len(driftEntries(t, in)) == 1 })
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "drift-clock"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	waitUntil("iac.drift_cleared after the clock moved an hour", func() bool {
		got := driftEntries(t, in)
		return len(got) == 2 && strings.Contains(got[1], `"iac.drift_cleared"`)
	})
}
