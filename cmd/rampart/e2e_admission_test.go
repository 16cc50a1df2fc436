package main_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/install"
	"rampart.dev/rampart/kube/netpol"
)

const digestImage = "registry.internal.example/research/eval@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// restrictedPod is a pod that passes Pod Security restricted and the demo's research baseline.
func restrictedPod(name, sa string) *corev1.Pod {
	no, yes, uid := false, true, int64(1000)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName:           sa,
			AutomountServiceAccountToken: &no,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "eval", Image: digestImage,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}},
		},
	}
}

// The admission webhook behind a real kube-apiserver (failurePolicy: Fail), installed by
// rampart kube install and served by rampart server.
func TestAdmissionWebhook(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	cs := env.Clientset
	for _, ns := range []string{"research", "rampart"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, handler := range map[string]string{"gvisor": "runsc", "runc": "runc"} {
		if _, err := cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Handler: handler}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Made before the webhook exists: only a scan can find it.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	old := restrictedPod("old", "")
	old.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(bool)}
	*old.Spec.Containers[0].SecurityContext.Privileged = true
	if _, err := cs.CoreV1().Pods("legacy").Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr, hookAddr := freeAddr(t), freeAddr(t)
	certDir := filepath.Join(dir, "webhook")
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
policy_dir: ../../internal/demo/policy
oidc:
  dev_provider: true
kubernetes:
  kubeconfig: %s
  admission:
    listen: %s
    cert_file: %s
    key_file: %s
`, addr, filepath.Join(dir, "data"), env.KubeconfigFile, hookAddr, filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	out := c.ok("kube", "install", "--config", cfgPath, "--webhook-url", "https://"+hookAddr)
	if !strings.Contains(out, "failurePolicy: Fail") || !strings.Contains(out, "NetworkPolicy in place") {
		t.Fatalf("install: %s", out)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies("research").Get(ctx, netpol.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("install left research without its NetworkPolicy: %v", err)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies("rampart").Get(ctx, netpol.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the exempt rampart namespace got a default-deny policy: %v", err)
	}

	// failurePolicy: Fail — with the webhook registered but not running, nothing is admitted.
	if _, err := cs.CoreV1().Pods("research").Create(ctx, restrictedPod("early", ""), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("a pod was admitted while the webhook was down: %v", err)
	}

	startServer(t, addr, "server", "--config", cfgPath)
	waitForWebhook(t, hookAddr, filepath.Join(certDir, "ca.crt"))
	token := func(user string) string {
		return signInAs(t, addr, user)
	}
	alice, bob, dave, erin := token("alice"), token("bob"), token("dave"), token("erin")

	// A privileged pod: refused, naming the check, the field and the fix.
	bad := restrictedPod("privileged", "")
	priv := true
	bad.Spec.Containers[0].SecurityContext.Privileged = &priv
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil // the API refuses privileged with false
	_, err := cs.CoreV1().Pods("research").Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "restricted.privileged") || !strings.Contains(err.Error(), "spec.containers[0].securityContext.privileged") {
		t.Fatalf("privileged pod: %v", err)
	}

	// A compliant pod in a high-risk namespace: admitted, under gVisor.
	p, err := cs.CoreV1().Pods("research").Create(ctx, restrictedPod("eval", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("compliant pod: %v", err)
	}
	if p.Spec.RuntimeClassName == nil || *p.Spec.RuntimeClassName != "gvisor" {
		t.Fatalf("high-risk pod not put under gvisor: %v", p.Spec.RuntimeClassName)
	}
	// Asking for another runtime is refused.
	runc := restrictedPod("runc", "")
	rc := "runc"
	runc.Spec.RuntimeClassName = &rc
	if _, err := cs.CoreV1().Pods("research").Create(ctx, runc, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "baseline.runtime-class") {
		t.Fatalf("runc in a high-risk namespace: %v", err)
	}
	// The mutating webhook is called only for objects whose pod names no runtime class (its
	// CEL match condition): kube-apiserver's own count of the calls it made shows it.
	calls := func() float64 {
		return apiserverCount(t, cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw, "apiserver_admission_webhook_request_total", `name="mutate.`+install.WebhookName+`"`)
	}
	before := calls()
	named := restrictedPod("named", "")
	gv := "gvisor"
	named.Spec.RuntimeClassName = &gv
	if _, err := cs.CoreV1().Pods("research").Create(ctx, named, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod naming gvisor: %v", err)
	}
	if n := calls(); n != before {
		t.Fatalf("the mutating webhook was called %v times for a pod that names its runtime class", n-before)
	}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "trainer"}, Spec: appsv1.DeploymentSpec{Replicas: &one,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "trainer"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "trainer"}}, Spec: restrictedPod("", "").Spec}}}
	if d, err := cs.AppsV1().Deployments("research").Create(ctx, dep, metav1.CreateOptions{}); err != nil || d.Spec.Template.Spec.RuntimeClassName == nil || *d.Spec.Template.Spec.RuntimeClassName != "gvisor" {
		t.Fatalf("Deployment in a high-risk namespace: %v", err)
	}
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "nightly-eval"}, Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *",
		JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: restrictedPod("", "").Spec}}}}}
	cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	if c, err := cs.BatchV1().CronJobs("research").Create(ctx, cj, metav1.CreateOptions{}); err != nil || c.Spec.JobTemplate.Spec.Template.Spec.RuntimeClassName == nil || *c.Spec.JobTemplate.Spec.Template.Spec.RuntimeClassName != "gvisor" {
		t.Fatalf("CronJob in a high-risk namespace: %v", err)
	}
	if n := calls(); n < before+2 {
		t.Fatalf("the mutating webhook was called %v times for a Deployment and a CronJob without a runtime class", n-before)
	}

	// An image from elsewhere, by tag: refused on both counts.
	tagged := restrictedPod("tagged", "")
	tagged.Spec.Containers[0].Image = "docker.io/library/python:3.12"
	if _, err := cs.CoreV1().Pods("research").Create(ctx, tagged, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "baseline.registry") || !strings.Contains(err.Error(), "baseline.digest") {
		t.Fatalf("untrusted image: %v", err)
	}

	// The weights' volume claim: refused without a grant for the pod's service account,
	// admitted once the workload's request is approved.
	withWeights := func(name string) *corev1.Pod {
		p := restrictedPod(name, "evaluator")
		p.Spec.Volumes = []corev1.Volume{{Name: "weights", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "frontier-7-weights", ReadOnly: true}}}}
		return p
	}
	_, err = cs.CoreV1().Pods("research").Create(ctx, withWeights("weights-1"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "rampart.protected-volume") || !strings.Contains(err.Error(), "k8s:dev/research/evaluator") {
		t.Fatalf("weights without a grant: %v", err)
	}
	if strings.Contains(err.Error(), "exception request") {
		t.Fatalf("a refusal on protected data offers an exception: %v", err)
	}
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--for", "k8s:dev/research/evaluator", "--reason", "eval run 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	if _, err := cs.CoreV1().Pods("research").Create(ctx, withWeights("weights-2"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("weights with a grant: %v", err)
	}

	// exec into the pod holding the weights needs a grant for exec on them: nobody has one.
	execErr := cs.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("weights-2").SubResource("exec").
		Param("command", "sh").Param("stdout", "true").Do(ctx).Error()
	if execErr == nil || !strings.Contains(execErr.Error(), "rampart.protected-exec") {
		t.Fatalf("exec into the weights pod: %v", execErr)
	}
	// …while exec into a pod without protected data reaches the (absent) node: admission let it by.
	execErr = cs.CoreV1().RESTClient().Post().Namespace("research").Resource("pods").Name("eval").SubResource("exec").
		Param("command", "sh").Param("stdout", "true").Do(ctx).Error()
	if execErr == nil || strings.Contains(execErr.Error(), "rampart") {
		t.Fatalf("exec into an ordinary pod: %v", execErr)
	}

	// A namespace created later gets its default-deny policy from the running server; a
	// deleted one comes back, and both are in the ledger with the refusals.
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new namespace's NetworkPolicy", func() bool {
		_, err := cs.NetworkingV1().NetworkPolicies("later").Get(ctx, netpol.Name, metav1.GetOptions{})
		return err == nil
	})
	if err := cs.NetworkingV1().NetworkPolicies("later").Delete(ctx, netpol.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the deleted NetworkPolicy restored", func() bool {
		_, err := cs.NetworkingV1().NetworkPolicies("later").Get(ctx, netpol.Name, metav1.GetOptions{})
		return err == nil
	})
	// An exception (approved like any request) lets the gpu workload run under runc while it
	// is in force, at admission and in the scan, and not a moment after it ends. It ends here by
	// revocation, on the next call: nothing in this test waits for the wall clock, so a busy
	// machine cannot make it fail. (That an exception, like every grant, stops at the instant it
	// expires is shown with an injected clock by kube/admission's
	// TestExceptionEndsAtItsExpiryInstant and authz's expiry tests.)
	gpuPod := func(name string) *corev1.Pod {
		p := restrictedPod(name, "gpu")
		p.Spec.RuntimeClassName = &rc
		return p
	}
	if _, err := cs.CoreV1().Pods("research").Create(ctx, gpuPod("gpu-0"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "baseline.runtime-class") {
		t.Fatalf("runc without an exception: %v", err)
	}
	r := c.as(alice, "exception", "request", "--namespace", "research", "--workload", "gpu", "--check", "baseline.runtime-class",
		"--compensating", "dedicated GPU node pool, egress blocked", "--reason", "the GPU driver needs runc", "--duration", "1h", "--cluster", "dev", "--yes")
	exID := reqID.FindString(r.out)
	if r.code != 0 || exID == "" || !strings.Contains(r.out, "research-runtime-exception") {
		t.Fatalf("exception request: %+v", r)
	}
	c.as(dave, "request", "approve", exID)
	c.as(bob, "request", "approve", exID)
	exGrant := regexp.MustCompile(`grt_[a-z2-7]{16}`).FindString(c.as(alice, "request", "show", exID).out)
	if exGrant == "" {
		t.Fatalf("the approved exception %s shows no grant", exID)
	}
	if _, err := cs.CoreV1().Pods("research").Create(ctx, gpuPod("gpu-1"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("runc under an active exception: %v", err)
	}
	scanOut := func() result {
		return c.as(erin, "kube", "scan", "--kubeconfig", env.KubeconfigFile, "--policy", "../../internal/demo/policy")
	}
	if r := scanOut(); strings.Contains(r.out, "Pod research/gpu-1") {
		t.Fatalf("the scan ignores the active exception: %s", r.out)
	}
	if r := c.as(erin, "grant", "revoke", exGrant, "--reason", "the GPU driver was fixed"); r.code != 0 {
		t.Fatalf("revoke the exception: %+v", r)
	}
	if _, err := cs.CoreV1().Pods("research").Create(ctx, gpuPod("gpu-2"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "baseline.runtime-class") {
		t.Fatalf("runc after the exception ended: %v", err)
	}
	if r := scanOut(); !strings.Contains(r.out, "Pod research/gpu-1") || !strings.Contains(r.out, "baseline.runtime-class") {
		t.Fatalf("the scan still honours an ended exception: %s", r.out)
	}

	// The scan finds the pod made before the webhook, and writes SARIF; exit 3.
	sarif := filepath.Join(dir, "scan.sarif")
	r = c.as(erin, "kube", "scan", "--kubeconfig", env.KubeconfigFile, "--policy", "../../internal/demo/policy", "--sarif", sarif)
	if r.code != 3 || !strings.Contains(r.out, "Pod legacy/old") || !strings.Contains(r.out, "restricted.privileged") || strings.Contains(r.out, "research/weights-2") {
		t.Fatalf("scan: %+v", r)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID     string            `json:"ruleId"`
				Properties map[string]string `json:"properties"`
			} `json:"results"`
		} `json:"runs"`
	}
	raw, _ := os.ReadFile(sarif)
	if err := json.Unmarshal(raw, &log); err != nil || log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Results) == 0 {
		t.Fatalf("SARIF: %v\n%s", err, raw)
	}
	// Each finding an exception can waive says how to ask for one, for the workload's account.
	asked := false
	for _, res := range log.Runs[0].Results {
		if res.RuleID == "restricted.privileged" && res.Properties["name"] == "old" {
			asked = res.Properties["exception"] == "rampart exception request --cluster dev --namespace legacy --workload default --check restricted.privileged --compensating \"…\" --reason \"…\" --duration 72h"
		}
	}
	if !asked {
		t.Fatalf("the SARIF finding for legacy/old does not say how to ask for an exception:\n%s", raw)
	}

	tail := c.as(erin, "audit", "tail", "-n", "60").out
	for _, code := range []string{"kube.admission.denied", "kube.netpol.created", "kube.netpol.restored"} {
		if !strings.Contains(tail, code) {
			t.Errorf("the ledger lacks %s:\n%s", code, tail)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitForWebhook(t *testing.T, addr, caFile string) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitFor(t, 20*time.Second, "the admission webhook", func() bool {
		resp, err := hc.Get("https://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// apiserverCount sums the samples of a kube-apiserver counter whose labels include label.
func apiserverCount(t *testing.T, get func(context.Context) ([]byte, error), metric, label string) float64 {
	t.Helper()
	b, err := get(context.Background())
	if err != nil {
		t.Fatalf("apiserver /metrics: %v", err)
	}
	var n float64
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, metric+"{") && strings.Contains(line, label) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			n += v
		}
	}
	return n
}
