package bench

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// `rampart iac check` (docs/iac.md, issue 16's target: 5,000 objects under 2 s), measured on the
// binary users run, beside OPA evaluating the same admission checks (testdata/admission, the
// Rego of the admission benchmark) over the same workloads in one `opa eval` process, as a
// conftest-style CI step would: the peer is given the workloads already as JSON admission
// reviews, so it parses no YAML and renders nothing, and it checks only the workloads (Rampart
// also checks namespaces, NetworkPolicies, Services and ConfigMaps). Three rounds, interleaved.
//
// The corpus: 50 namespaces, each with its Namespace, its default-deny egress NetworkPolicy,
// 40 Deployments of the three-container training pod (one in twenty privileged), 29 Services
// and 29 ConfigMaps: 5,000 objects in 50 YAML files.

const (
	iacNamespaces     = 50
	iacDeployments    = 40
	iacOthers         = 29 // Services and ConfigMaps each, per namespace
	iacPrivilegedEach = 20 // one Deployment in this many is privileged
)

// iacCorpus writes the corpus under dir/repo and the peer's input (dir/reviews.json) and data
// (dir/config.json); it returns the number of objects and of privileged Deployments.
func iacCorpus(tb testing.TB, dir string) (objects, privileged int) {
	tb.Helper()
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		tb.Fatal(err)
	}
	var reviews []any
	for n := range iacNamespaces {
		ns := fmt.Sprintf("research-%02d", n)
		var docs []string
		add := func(v any) {
			b, err := yaml.Marshal(v)
			if err != nil {
				tb.Fatal(err)
			}
			docs = append(docs, string(b))
			objects++
		}
		add(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ns}})
		np := renderNetpol(tb, ns)
		docs = append(docs, np)
		objects++
		for i := range iacDeployments {
			p := trainingPod()
			p.Namespace = ns
			if i%iacPrivilegedEach == 0 {
				p.Spec.Containers[0].SecurityContext.Privileged = ptrTo(true)
				privileged++
			}
			d := wrap("Deployment", p)
			meta := d.(metav1.ObjectMetaAccessor).GetObjectMeta()
			meta.SetName(fmt.Sprintf("trainer-%02d", i))
			add(d)
			obj, err := json.Marshal(d)
			if err != nil {
				tb.Fatal(err)
			}
			reviews = append(reviews, map[string]any{"request": map[string]any{"kind": map[string]any{"kind": "Deployment"}, "namespace": ns,
				"operation": "CREATE", "object": json.RawMessage(obj)}})
		}
		for i := range iacOthers {
			add(&corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%02d", i), Namespace: ns},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "trainer"}, Ports: []corev1.ServicePort{{Port: 8080}}}})
			add(&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cfg-%02d", i), Namespace: ns},
				Data: map[string]string{"config.yaml": "lr: 0.0003\nbatch: 4096\n"}})
		}
		if err := os.WriteFile(filepath.Join(repo, ns+".yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	b, _ := json.Marshal(reviews)
	if err := os.WriteFile(filepath.Join(dir, "reviews.json"), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	// The demo policy's baseline, as the admission benchmark gives it to OPA; digests required,
	// as iac check always requires them.
	cfg := map[string]any{"rampart": map[string]any{"config": map[string]any{
		"allowed_registries": []string{"registry.internal.example"}, "require_digest": true, "runtime_class": "gvisor",
		"high_risk_namespaces": []string{"research"}, "high_risk_labels": map[string]string{"rampart.dev/risk": "high"}}}}
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	// The Rego files, and the query over every review.
	rego := filepath.Join(dir, "rego")
	_ = os.MkdirAll(rego, 0o755)
	files, _ := fs.Glob(admissionRego, "testdata/admission/*.rego")
	for _, f := range files {
		src, _ := admissionRego.ReadFile(f)
		_ = os.WriteFile(filepath.Join(rego, filepath.Base(f)), src, 0o644)
	}
	_ = os.WriteFile(filepath.Join(rego, "all.rego"), []byte("package iacbench\n\nfailing := [i | some i, r in input; d := data.rampart.admission.deny with input as r; count(d) > 0]\n"), 0o644)
	return objects, privileged
}

// renderNetpol is `rampart kube render netpol` for ns, as a repository would hold it.
func renderNetpol(tb testing.TB, ns string) string {
	tb.Helper()
	return fmt.Sprintf(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: rampart-default-deny-egress
  namespace: %s
  labels: {rampart.dev/managed-by: rampart}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: rampart}}
      podSelector: {matchLabels: {app.kubernetes.io/name: rampart-egress}}
    ports: [{port: 8471, protocol: TCP}]
`, ns)
}

// BenchmarkIACCheck times `rampart iac check` and the OPA peer over the corpus, three rounds.
func BenchmarkIACCheck(b *testing.B) {
	bin := rampartBin(b)
	opaBin := os.Getenv("OPA_BIN")
	if opaBin == "" {
		opaBin = filepath.Join("bin", "opa")
	}
	if _, err := os.Stat(opaBin); err != nil {
		b.Fatalf("the OPA binary is missing (%v); build it with: go build -o bin/opa github.com/open-policy-agent/opa (run.sh does)", err)
	}
	dir := b.TempDir()
	n, privileged := iacCorpus(b, dir)
	policyDir, _ := filepath.Abs("../internal/demo/policy")
	var rt, ot []time.Duration
	for round := range 3 {
		start := time.Now()
		cmd := exec.Command(bin, "iac", "check", filepath.Join(dir, "repo"), "--policy", policyDir, "-o", "json")
		out, err := cmd.Output()
		rd := time.Since(start)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			b.Fatalf("rampart iac check: %v (want exit 3: the privileged Deployments)\n%s", err, out)
		}
		var fs []struct{ Name, Namespace, Check string }
		if err := json.Unmarshal(out, &fs); err != nil {
			b.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range fs {
			if f.Check == "restricted.privileged" {
				seen[f.Namespace+"/"+f.Name] = true
			}
		}
		start = time.Now()
		cmd = exec.Command(opaBin, "eval", "--format", "json", "-d", filepath.Join(dir, "rego"), "-d", filepath.Join(dir, "config.json"),
			"-i", filepath.Join(dir, "reviews.json"), "data.iacbench.failing")
		oout, err := cmd.Output()
		od := time.Since(start)
		if err != nil {
			b.Fatalf("opa eval: %v\n%s", err, oout)
		}
		var res struct {
			Result []struct {
				Expressions []struct{ Value []int } `json:"expressions"`
			} `json:"result"`
		}
		if err := json.Unmarshal(oout, &res); err != nil || len(res.Result) != 1 {
			b.Fatalf("opa eval output: %v\n%.500s", err, oout)
		}
		if got := len(res.Result[0].Expressions[0].Value); got != privileged || len(seen) != privileged {
			b.Fatalf("the peers disagree: %d privileged Deployments, Rampart reports %d, OPA %d failing", privileged, len(seen), got)
		}
		rt, ot = append(rt, rd), append(ot, od)
		fmt.Printf("iac check round %d: %d objects (%d findings): rampart %.3fs, opa eval %.3fs (workloads only), opa/rampart %.2fx; %s\n",
			round+1, n, len(fs), rd.Seconds(), od.Seconds(), od.Seconds()/rd.Seconds(), loadAverage())
	}
	ratios := make([]float64, len(rt))
	for i := range rt {
		ratios[i] = ot[i].Seconds() / rt[i].Seconds()
	}
	slices.Sort(ratios)
	slices.Sort(rt)
	fmt.Printf("iac check: %d objects: rampart min %.3fs median %.3fs (target < 2s: %s); opa/rampart min %.2fx median %.2fx\n",
		n, rt[0].Seconds(), rt[1].Seconds(), map[bool]string{true: "met", false: "NOT met"}[rt[1] < 2*time.Second], ratios[0], ratios[1])
	for b.Loop() {
	}
	b.ReportMetric(rt[1].Seconds(), "s/check")
}
