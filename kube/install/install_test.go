package install_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
