package main_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/internal/kubetest"
)

// offline runs the binary without --addr or RAMPART_ADDR, as a CI job without a server would.
func offline(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RAMPART_ADDR=") && !strings.HasPrefix(kv, "RAMPART_TOKEN=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "RAMPART_CONFIG_DIR="+t.TempDir())
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// iac check on the fixture repositories, offline: a compliant one (plain and kustomized)
// passes, the one with every problem fails with each, in the table, JSON and SARIF.
func TestIACCheckOffline(t *testing.T) {
	policyDir, _ := filepath.Abs("../../internal/demo/policy")
	for _, dir := range []string{"../../iac/testdata/good", "../../iac/testdata/kustomize/overlays/research"} {
		if r := offline(t, ".", "iac", "check", dir, "--policy", policyDir); r.code != 0 || !strings.Contains(r.err, "0 problems") {
			t.Fatalf("iac check %s: %+v", dir, r)
		}
	}
	sarif := filepath.Join(t.TempDir(), "iac.sarif")
	r := offline(t, ".", "iac", "check", "../../iac/testdata/bad", "--policy", policyDir, "--sarif", sarif)
	if r.code != 3 {
		t.Fatalf("iac check bad: %+v", r)
	}
	for _, want := range []string{"workloads.yaml:7", "restricted.privileged", "baseline.digest", "baseline.runtime-class", "rampart.protected-volume",
		"access.yaml:1", "rampart.rbac-drift", "rampart.secret-in-git", "rampart.egress-widened", "rampart.default-deny-egress"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("the table has no %q:\n%s", want, r.out)
		}
	}
	if strings.Contains(r.out+r.err, "not-a-real-key") {
		t.Errorf("the output repeats the Secret's value")
	}
	raw, err := os.ReadFile(sarif)
	if err != nil {
		t.Fatal(err)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct{ ID string } `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }    `json:"artifactLocation"`
						Region           struct{ StartLine int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(raw, &log); err != nil || log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Results) < 9 {
		t.Fatalf("SARIF: %v\n%s", err, raw)
	}
	for _, res := range log.Runs[0].Results {
		loc := res.Locations[0].PhysicalLocation
		if loc.ArtifactLocation.URI == "" || loc.Region.StartLine == 0 {
			t.Errorf("a SARIF result without a file and line: %+v", res)
		}
	}
	// A document that is not YAML: exit 1, with the file and line.
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "x.yaml"), []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [\n"), 0o600)
	if r := offline(t, ".", "iac", "check", dir); r.code != 1 || !strings.Contains(r.err, "x.yaml:5:") {
		t.Fatalf("invalid YAML: %+v", r)
	}
}

// An approved exception, asked of the server with --addr: the finding it waives is shown as
// excepted, with its expiry, and no longer fails the check; without the server it does.
func TestIACCheckException(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"), "--egress-addr", "")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	tok := map[string]string{}
	for _, u := range []string{"alice", "bob", "dave", "erin"} {
		tok[u] = strings.TrimSpace(c.ok("login", "--dev", "--user", u, "--print-token"))
	}
	// The research namespace with its default-deny policy, and a pod whose only fault is an
	// image by tag.
	dir := t.TempDir()
	ns, err := os.ReadFile("../../iac/testdata/good/namespace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pod := `apiVersion: v1
kind: Pod
metadata: {name: tagged, namespace: research}
spec:
  serviceAccountName: legacy
  automountServiceAccountToken: false
  runtimeClassName: gvisor
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: app
    image: registry.internal.example/research/app:v3
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`
	_ = os.WriteFile(filepath.Join(dir, "namespace.yaml"), ns, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "pod.yaml"), []byte(pod), 0o600)
	check := func() result {
		return c.as(tok["erin"], "iac", "check", dir, "--policy", "../../internal/demo/policy", "-o", "json")
	}
	if r := check(); r.code != 3 || !strings.Contains(r.out, `"check": "baseline.digest"`) || strings.Contains(r.out, "excepted") {
		t.Fatalf("before the exception: %+v", r)
	}
	r := c.as(tok["alice"], "exception", "request", "--namespace", "research", "--workload", "legacy", "--check", "baseline.digest",
		"--compensating", "the tag is immutable in our registry", "--reason", "the vendor publishes no digest", "--duration", "2h", "--cluster", "dev", "--yes")
	id := reqID.FindString(r.out)
	if r.code != 0 || id == "" {
		t.Fatalf("exception request: %+v", r)
	}
	c.as(tok["dave"], "request", "approve", id)
	c.as(tok["bob"], "request", "approve", id)
	r = check()
	var fs []struct {
		Check    string `json:"check"`
		Excepted *struct {
			GrantID   string    `json:"grant_id"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"excepted"`
	}
	if err := json.Unmarshal([]byte(r.out), &fs); err != nil || r.code != 0 || len(fs) != 1 || fs[0].Excepted == nil {
		t.Fatalf("under the exception: %v %+v", err, r)
	}
	if left := time.Until(fs[0].Excepted.ExpiresAt); left <= 0 || left > 2*time.Hour || !strings.HasPrefix(fs[0].Excepted.GrantID, "grt_") {
		t.Fatalf("the excepted finding's grant and expiry: %+v", fs[0].Excepted)
	}
	if r := c.as(tok["erin"], "iac", "check", dir, "--policy", "../../internal/demo/policy"); r.code != 0 || !strings.Contains(r.out, "excepted until") {
		t.Fatalf("table under the exception: %+v", r)
	}
	// Offline, nothing is granted: the same repository fails.
	if r := offline(t, ".", "iac", "check", dir, "--policy", "../../internal/demo/policy"); r.code != 3 {
		t.Fatalf("offline: %+v", r)
	}
}

// iac drift against a real apiserver, through the binary: a repository not yet deployed is
// all missing (exit 3); deployed, the cluster matches (exit 0); edited by hand, the edit is
// reported at its path.
func TestIACDrift(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "app.yaml"), []byte(`apiVersion: v1
kind: Namespace
metadata: {name: drift-e2e}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: drift-e2e}
data: {replicas: "3"}
`), 0o600)
	c := &cli{t: t, addr: "127.0.0.1:1"}
	drift := func() result {
		return c.run(nil, "iac", "drift", dir, "--kubeconfig", env.KubeconfigFile, "-o", "json")
	}
	if r := drift(); r.code != 3 || strings.Count(r.out, `"state": "missing"`) != 2 {
		t.Fatalf("before deploying: %+v", r)
	}
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "drift-e2e"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "drift-e2e"}, Data: map[string]string{"replicas": "3"}}
	if _, err := env.Clientset.CoreV1().ConfigMaps("drift-e2e").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if r := drift(); r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Fatalf("deployed: %+v", r)
	}
	cm.Data["replicas"] = "30"
	if _, err := env.Clientset.CoreV1().ConfigMaps("drift-e2e").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := c.run(nil, "iac", "drift", dir, "--kubeconfig", env.KubeconfigFile)
	if r.code != 3 || !strings.Contains(r.out, "changed") || !strings.Contains(r.out, "data.replicas") || !strings.Contains(r.out, "app.yaml:5") {
		t.Fatalf("edited by hand: %+v", r)
	}
}

// Issue 16: `rampart server` with iac_drift runs iac drift against the real kube-apiserver every
// interval: a missing object is one iac.drift entry (object names, never values), the same drift
// at later runs writes nothing more, and once the cluster matches, one iac.drift_cleared.
func TestIACDriftServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o700); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(repo, "app.yaml"), []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: drift-server}
data: {replicas: "3"}
`), 0o600)
	if _, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "drift-server"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := "listen: " + addr + "\ndata_dir: " + filepath.Join(dir, "data") + "\npolicy_dir: ../../internal/demo/policy\noidc:\n  dev_provider: true\n" +
		"kubernetes:\n  kubeconfig: " + env.KubeconfigFile + "\n  rbac: false\n  network_policies: false\n  pod_revocation: false\n" +
		"iac_drift:\n  path: " + repo + "\n  interval: 1s\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startServer(t, addr, "server", "--config", cfgPath)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	erin := signInAs(t, addr, "erin")
	tail := func() string { return c.as(erin, "-o", "json", "audit", "tail", "-n", "200").out }
	// The waits below are failure limits: the job runs every second on the lease holder.
	waitFor(t, 30*time.Second, "an iac.drift entry for the missing ConfigMap", func() bool {
		return strings.Contains(tail(), `"iac.drift"`)
	})
	if out := tail(); !strings.Contains(out, "missing ConfigMap drift-server/settings") {
		t.Fatalf("the iac.drift entry does not name the missing object:\n%s", out)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: "drift-server"}, Data: map[string]string{"replicas": "3"}}
	if _, err := env.Clientset.CoreV1().ConfigMaps("drift-server").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "an iac.drift_cleared entry once the ConfigMap exists", func() bool {
		return strings.Contains(tail(), `"iac.drift_cleared"`)
	})
	if out := tail(); strings.Count(out, `"iac.drift"`) != 1 || strings.Count(out, `"iac.drift_cleared"`) != 1 {
		t.Fatalf("want one iac.drift and one iac.drift_cleared, however many runs saw the same drift:\n%s", out)
	}
}
