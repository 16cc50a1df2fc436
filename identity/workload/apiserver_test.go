package workload_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/workload"
	"rampart.dev/rampart/internal/kubetest"
)

// A token the real kube-apiserver issued (TokenRequest, as the kubelet asks for a projected
// token) verifies against the apiserver's own discovery document and JWKS, fetched over TLS with
// the cluster CA; a token for another audience, and one whose payload was changed, do not. The
// other tests of this package sign tokens themselves, the way the apiserver does; this one is
// the apiserver.
func TestTokenFromARealAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	cs := env.Clientset
	// Discovery and keys are served to the unauthenticated only when allowed, as the Kubernetes
	// documentation says to do for verifiers outside the cluster.
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "rampart-test-issuer-discovery"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:service-account-issuer-discovery"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: rbacv1.GroupName, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ml"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("ml").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "trainer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	issue := func(audience string) string {
		t.Helper()
		ttl := int64(600) // the apiserver's minimum
		tr, err := cs.CoreV1().ServiceAccounts("ml").CreateToken(ctx, "trainer", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}

	// The issuer, exactly as the apiserver puts it in its tokens and its discovery document.
	raw, err := cs.RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	if err != nil {
		t.Fatalf("the apiserver's discovery document: %v", err)
	}
	issuer := jsonField(t, raw, "issuer")
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, env.Config.CAData, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := workload.New([]workload.Cluster{{Name: "dev", Issuer: issuer, CAFile: ca}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	p, err := v.Verify(ctx, issue("rampart"))
	if err != nil {
		t.Fatalf("a token the apiserver issued for audience rampart: %v", err)
	}
	if p.Subject != "k8s:dev/ml/trainer" {
		t.Fatalf("principal %+v, want k8s:dev/ml/trainer", p)
	}
	if _, err := v.Verify(ctx, issue("vault")); err == nil {
		t.Fatal("a token for another audience verified")
	}
	// The same token naming another service account: the apiserver's signature no longer holds.
	tok := strings.Split(issue("rampart"), ".")
	payload, err := base64.RawURLEncoding.DecodeString(tok[1])
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(payload), "system:serviceaccount:ml:trainer", "system:serviceaccount:ml:admin", 1)
	if edited == string(payload) {
		t.Fatalf("the token's payload does not name the service account as expected: %s", payload)
	}
	forged := tok[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(edited)) + "." + tok[2]
	if _, err := v.Verify(ctx, forged); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("a token whose subject was changed: %v", err)
	}
}

func jsonField(t *testing.T, raw []byte, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	s, _ := m[name].(string)
	if s == "" {
		t.Fatalf("no %q in %s", name, raw)
	}
	return s
}
