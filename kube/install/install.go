// Package install puts Rampart's enforcement into a cluster: the admission webhook
// configurations (failurePolicy: Fail, with the CA bundle of the webhook's serving certificate)
// and the default-deny egress NetworkPolicy of every governed namespace. It also issues the
// webhook's serving certificate when none is given.
package install

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// WebhookName names both webhook configurations and their webhooks' prefix.
const WebhookName = "rampart.dev"

// Certs are the webhook's serving certificate files.
type Certs struct {
	CAFile, CertFile, KeyFile string
}

// SelfIssue makes, in dir, a CA (ca.crt, ca.key) and a serving certificate for hosts (tls.crt,
// tls.key; host names and IP addresses), valid for a year, unless they already exist. Keys are
// ECDSA P-256, files mode 0600 (certificates 0644). It returns the file names.
func SelfIssue(dir string, hosts []string) (Certs, error) {
	c := Certs{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if _, err := os.Stat(c.CertFile); err == nil {
		return c, nil
	}
	if len(hosts) == 0 {
		return c, errors.New("install: name at least one host (DNS name or IP address) for the webhook's certificate")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return c, err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "Rampart admission webhook CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, MaxPathLenZero: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return c, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: hosts[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return c, err
	}
	caKeyDER, _ := x509.MarshalECPrivateKey(caKey)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	for _, f := range []struct {
		path  string
		typ   string
		der   []byte
		perms fs.FileMode
	}{
		{filepath.Join(dir, "ca.key"), "EC PRIVATE KEY", caKeyDER, 0o600},
		{c.KeyFile, "EC PRIVATE KEY", keyDER, 0o600},
		{c.CAFile, "CERTIFICATE", caDER, 0o644},
		{c.CertFile, "CERTIFICATE", der, 0o644}, // last: its presence means the set is complete
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.perms); err != nil {
			return c, err
		}
	}
	return c, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// RuntimeClassUnset is the CEL match condition of the mutating webhook: the apiserver calls it
// only for objects whose pod could need a runtime class, that is a pod being created, or a
// controller created or updated, whose pod spec has no runtimeClassName (or an empty one).
// The mutating webhook never changes anything else (podsec.Mutate), so skipping the rest
// changes no outcome and spares the apiserver a webhook call for most pods; the validating
// webhook still sees every object. An expression that fails to evaluate counts as a webhook
// failure, which failurePolicy: Fail turns into a refusal.
const RuntimeClassUnset = `!(request.kind.kind == 'Pod' && request.operation == 'UPDATE') &&
(request.kind.kind == 'Pod' ? object.?spec.?runtimeClassName :
 request.kind.kind == 'CronJob' ? object.?spec.?jobTemplate.?spec.?template.?spec.?runtimeClassName :
 object.?spec.?template.?spec.?runtimeClassName).orValue('') == ''`

// Webhooks renders the validating and mutating webhook configurations for a webhook served at
// baseURL (https://host:port; /validate and /mutate are appended), trusted through caPEM.
// The system namespaces (netpol.SystemNamespaces) and those in exempt are left out: the same
// namespaces netpol.Governed leaves out, so that what is reviewed is what gets the default-deny
// policy and what kube scan checks.
func Webhooks(baseURL string, caPEM []byte, exempt []string) (*admissionregistrationv1.ValidatingWebhookConfiguration, *admissionregistrationv1.MutatingWebhookConfiguration, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("install: webhook URL %q: want https://host:port (the apiserver calls webhooks over TLS only)", baseURL)
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	equivalent := admissionregistrationv1.Equivalent
	skip := slices.Concat(netpol.SystemNamespaces, exempt)
	slices.Sort(skip)
	skip = slices.Compact(skip)
	nsSel := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: skip}}}
	createUpdate := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	workloads := []admissionregistrationv1.RuleWithOperations{
		{Operations: createUpdate,
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "replicationcontrollers"}}},
		{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}}},
		{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"batch"}, APIVersions: []string{"v1"}, Resources: []string{"jobs", "cronjobs"}}},
	}
	// Only the validating webhook sees these. A rule naming "pods" does not match a pod's
	// subresources: kubectl debug adds an ephemeral container by an update of
	// pods/ephemeralcontainers, which would otherwise reach no webhook at all.
	validateOnly := []admissionregistrationv1.RuleWithOperations{
		{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}}},
		{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Connect},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: connectResources()}},
		// Claims and snapshots that copy or bind protected data (kube/admission claims.go).
		{Operations: createUpdate,
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"persistentvolumeclaims"}}},
		{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{admission.SnapshotGroup}, APIVersions: []string{"v1"}, Resources: []string{"volumesnapshots"}}},
		// NetworkPolicies that widen egress are refused (nothing to mutate).
		{Operations: createUpdate,
			Rule: admissionregistrationv1.Rule{APIGroups: []string{"networking.k8s.io"}, APIVersions: []string{"v1"}, Resources: []string{"networkpolicies"}}},
	}
	client := func(path string) admissionregistrationv1.WebhookClientConfig {
		v := u.String() + path
		return admissionregistrationv1.WebhookClientConfig{URL: &v, CABundle: caPEM}
	}
	labels := map[string]string{netpol.LabelManagedBy: netpol.ManagedBy}
	val := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookName, Labels: labels},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate." + WebhookName, ClientConfig: client("/validate"), Rules: slices.Concat(workloads, validateOnly),
			FailurePolicy: &fail, MatchPolicy: &equivalent, SideEffects: &none, TimeoutSeconds: &timeout,
			AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nsSel,
		}},
	}
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	mut := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookName, Labels: labels},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "mutate." + WebhookName, ClientConfig: client("/mutate"), Rules: workloads,
			FailurePolicy: &fail, MatchPolicy: &equivalent, SideEffects: &none, TimeoutSeconds: &timeout,
			AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: nsSel, ReinvocationPolicy: &reinvoke,
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "runtime-class-unset", Expression: RuntimeClassUnset}},
		}},
	}
	return val, mut, nil
}

// connectResources lists the CONNECT subresources the webhook reviews
// (admission.ConnectSubresources), as "resource/subresource".
func connectResources() []string {
	var out []string
	for _, r := range slices.Sorted(maps.Keys(admission.ConnectSubresources)) {
		for _, sub := range admission.ConnectSubresources[r] {
			out = append(out, r+"/"+sub)
		}
	}
	return out
}

// ApplyWebhooks creates or replaces both webhook configurations.
func ApplyWebhooks(ctx context.Context, c kubernetes.Interface, val *admissionregistrationv1.ValidatingWebhookConfiguration, mut *admissionregistrationv1.MutatingWebhookConfiguration) error {
	vc := c.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if old, err := vc.Get(ctx, val.Name, metav1.GetOptions{}); err == nil {
		val.ResourceVersion = old.ResourceVersion
		if _, err := vc.Update(ctx, val, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update ValidatingWebhookConfiguration %s: %w", val.Name, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	} else if _, err := vc.Create(ctx, val, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ValidatingWebhookConfiguration %s: %w", val.Name, err)
	}
	mc := c.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if old, err := mc.Get(ctx, mut.Name, metav1.GetOptions{}); err == nil {
		mut.ResourceVersion = old.ResourceVersion
		if _, err := mc.Update(ctx, mut, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update MutatingWebhookConfiguration %s: %w", mut.Name, err)
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	} else if _, err := mc.Create(ctx, mut, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create MutatingWebhookConfiguration %s: %w", mut.Name, err)
	}
	return nil
}

// Exempt returns the namespaces enforcement leaves alone under these settings.
func Exempt(s policy.KubernetesSettings) []string { return s.Admission.ExemptNamespaces }
