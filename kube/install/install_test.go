package install_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"cel.dev/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"rampart.dev/rampart/kube/install"
)

func TestSelfIssueAndWebhooks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "webhook")
	c, err := install.SelfIssue(dir, []string{"rampart-admission.rampart.svc", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(c.CAFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, host := range []string{"rampart-admission.rampart.svc", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", host, err)
		}
	}
	if st, _ := os.Stat(c.KeyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	// A second call keeps what exists (the CA in the cluster's webhook configuration stays valid).
	before, _ := os.ReadFile(c.CertFile)
	if _, err := install.SelfIssue(dir, []string{"other"}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(c.CertFile); string(after) != string(before) {
		t.Fatal("SelfIssue replaced an existing certificate")
	}

	val, mut, err := install.Webhooks("https://127.0.0.1:8443", caPEM, []string{"rampart"})
	if err != nil {
		t.Fatal(err)
	}
	vw, mw := val.Webhooks[0], mut.Webhooks[0]
	if *vw.FailurePolicy != admissionregistrationv1.Fail || *mw.FailurePolicy != admissionregistrationv1.Fail {
		t.Fatal("a webhook that fails open")
	}
	if *vw.ClientConfig.URL != "https://127.0.0.1:8443/validate" || *mw.ClientConfig.URL != "https://127.0.0.1:8443/mutate" || string(vw.ClientConfig.CABundle) != string(caPEM) {
		t.Fatalf("client config: %+v", vw.ClientConfig)
	}
	skip := vw.NamespaceSelector.MatchExpressions[0].Values
	for _, ns := range []string{"kube-system", "rampart"} {
		if !slices.Contains(skip, ns) {
			t.Errorf("namespace %s is not exempt: %v", ns, skip)
		}
	}
	var resources []string
	for _, r := range vw.Rules {
		resources = append(resources, r.Resources...)
	}
	for _, want := range []string{"pods", "deployments", "cronjobs", "pods/exec", "pods/attach", "pods/portforward"} {
		if !slices.Contains(resources, want) {
			t.Errorf("the validating webhook does not see %s", want)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:8443", "127.0.0.1:8443", "https://"} {
		if _, _, err := install.Webhooks(bad, caPEM, nil); err == nil || !strings.Contains(err.Error(), "https://host:port") {
			t.Errorf("Webhooks(%q): %v", bad, err)
		}
	}
}

// The mutating webhook's match condition, evaluated with CEL's optional types as the
// apiserver evaluates it: true (call the webhook) exactly when the pod could need a runtime
// class. The end-to-end test runs it inside a real kube-apiserver.
func TestRuntimeClassUnset(t *testing.T) {
	env, err := cel.NewEnv(cel.OptionalTypes(), cel.Variable("request", cel.DynType), cel.Variable("object", cel.DynType))
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(install.RuntimeClassUnset)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatal(err)
	}
	spec := func(rc ...string) map[string]any {
		s := map[string]any{"containers": []any{}}
		if len(rc) > 0 {
			s["runtimeClassName"] = rc[0]
		}
		return s
	}
	tmpl := func(s map[string]any) map[string]any { return map[string]any{"template": map[string]any{"spec": s}} }
	for name, c := range map[string]struct {
		kind, op string
		object   map[string]any
		call     bool
	}{
		"pod without a runtime class":   {"Pod", "CREATE", map[string]any{"spec": spec()}, true},
		"pod with an empty one":         {"Pod", "CREATE", map[string]any{"spec": spec("")}, true},
		"pod naming gvisor":             {"Pod", "CREATE", map[string]any{"spec": spec("gvisor")}, false},
		"pod naming runc":               {"Pod", "CREATE", map[string]any{"spec": spec("runc")}, false},
		"pod update":                    {"Pod", "UPDATE", map[string]any{"spec": spec()}, false},
		"pod without a spec":            {"Pod", "CREATE", map[string]any{}, true},
		"deployment without":            {"Deployment", "CREATE", map[string]any{"spec": tmpl(spec())}, true},
		"deployment update without":     {"Deployment", "UPDATE", map[string]any{"spec": tmpl(spec())}, true},
		"deployment naming gvisor":      {"Deployment", "CREATE", map[string]any{"spec": tmpl(spec("gvisor"))}, false},
		"deployment without a template": {"Deployment", "CREATE", map[string]any{"spec": map[string]any{}}, true},
		"job without":                   {"Job", "CREATE", map[string]any{"spec": tmpl(spec())}, true},
		"cronjob without":               {"CronJob", "CREATE", map[string]any{"spec": map[string]any{"jobTemplate": map[string]any{"spec": tmpl(spec())}}}, true},
		"cronjob naming gvisor":         {"CronJob", "CREATE", map[string]any{"spec": map[string]any{"jobTemplate": map[string]any{"spec": tmpl(spec("gvisor"))}}}, false},
		"cronjob with a pod's path":     {"CronJob", "CREATE", map[string]any{"spec": spec("gvisor")}, true},
	} {
		out, _, err := prg.Eval(map[string]any{"request": map[string]any{"kind": map[string]any{"kind": c.kind}, "operation": c.op}, "object": c.object})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if out.Value() != c.call {
			t.Errorf("%s: the condition says %v, want %v", name, out.Value(), c.call)
		}
	}
}
