package install_test

import (
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"cel.dev/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/kube/install"
	"rampart.dev/rampart/kube/rbac"
	"rampart.dev/rampart/policy"
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
	for _, want := range []string{"pods", "replicationcontrollers", "deployments", "cronjobs", "pods/exec", "pods/attach", "pods/portforward",
		"pods/proxy", "services/proxy", "pods/ephemeralcontainers", "persistentvolumeclaims", "volumesnapshots", "networkpolicies"} {
		if !slices.Contains(resources, want) {
			t.Errorf("the validating webhook does not see %s", want)
		}
	}
	// The mutating webhook changes only workloads' runtime class: it sees no subresource, claim
	// or snapshot.
	for _, r := range mw.Rules {
		for _, res := range r.Resources {
			if strings.Contains(res, "/") || res == "persistentvolumeclaims" || res == "volumesnapshots" {
				t.Errorf("the mutating webhook sees %s", res)
			}
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

// The server's RBAC holds what the policy's roles grant and may bind the ClusterRoles they
// name, by name; it never escalates or uses wildcards, and it does not carry the label that
// marks what the reconciler may delete.
func TestServerRBAC(t *testing.T) {
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	sa, role, binding, err := install.ServerRBAC(pol, "rampart", "rampart")
	if err != nil {
		t.Fatal(err)
	}
	if sa.Namespace != "rampart" || binding.Subjects[0].Name != "rampart" || binding.Subjects[0].Namespace != "rampart" || binding.RoleRef.Name != role.Name {
		t.Fatalf("identity: %+v %+v", sa.ObjectMeta, binding)
	}
	for _, o := range []metav1.Object{sa, role, binding} {
		if o.GetLabels()[rbac.LabelManagedBy] != "" {
			t.Errorf("%s carries %s: the reconciler would take it for its own", o.GetName(), rbac.LabelManagedBy)
		}
	}
	has := func(group, resource, verb, name string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(name == "" && len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
				return true
			}
		}
		return false
	}
	for _, want := range [][4]string{
		{"rbac.authorization.k8s.io", "rolebindings", "create", ""},
		{"rbac.authorization.k8s.io", "clusterrolebindings", "delete", ""},
		{"rbac.authorization.k8s.io", "clusterroles", "watch", ""},
		{"rbac.authorization.k8s.io", "clusterroles", "update", "rampart:weights-reader-frontier-7"},
		{"", "persistentvolumeclaims", "get", "frontier-7-weights"}, // the role's own rule
		{"networking.k8s.io", "networkpolicies", "create", ""},
		{"networking.k8s.io", "networkpolicies", "delete", ""}, // the keeper removes widening policies
		{"", "namespaces", "watch", ""},
		{"", "pods", "get", ""},
		{"", "pods", "list", ""},
		{"", "services", "get", ""},
		{"", "endpoints", "get", ""},
		{"", "persistentvolumes", "get", ""},
		{"", "persistentvolumeclaims", "get", ""},
		{"snapshot.storage.k8s.io", "volumesnapshots", "get", ""},
	} {
		if !has(want[0], want[1], want[2], want[3]) {
			t.Errorf("missing %v", want)
		}
	}
	// Exactly these rights beside the policy's roles (issue 13: delete on NetworkPolicies for the
	// keeper, list/watch/delete on pods for pod revocation; nothing on evictions or roles).
	fixed := []rbacv1.PolicyRule{
		{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"rolebindings", "clusterrolebindings"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
	}
	if len(role.Rules) < len(fixed) || !reflect.DeepEqual(role.Rules[:len(fixed)], fixed) {
		t.Errorf("the server's fixed rights changed:\n got %+v\nwant %+v", role.Rules[:min(len(fixed), len(role.Rules))], fixed)
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v == "*" || v == "escalate" || (v == "bind" && len(r.ResourceNames) == 0) || (v == "update" || v == "delete") && slices.Contains(r.Resources, "clusterroles") && len(r.ResourceNames) == 0 {
				t.Errorf("too broad: %+v", r)
			}
		}
		if slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("wildcard: %+v", r)
		}
	}
	// A role naming an existing ClusterRole: bind on exactly that name.
	m := fstest.MapFS{}
	if err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		m[path] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	m["debugger.yaml"] = &fstest.MapFile{Data: []byte(`apiVersion: rampart.dev/v1alpha1
kind: Role
metadata:
  name: research-debugger
spec:
  description: Debug workloads in research.
  rules:
  - actions: [exec]
    resources: [namespaces/research-sandbox]
  kubernetes:
    cluster_role: pod-debugger
    namespaces: [research]
`)}
	withBind, err := policy.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	_, role, _, err = install.ServerRBAC(withBind, "rampart", "rampart")
	if err != nil {
		t.Fatal(err)
	}
	if !has(rbacv1.GroupName, "clusterroles", "bind", "pod-debugger") {
		t.Errorf("no bind on pod-debugger: %+v", role.Rules)
	}
	for _, bad := range [][2]string{{"Rampart", "rampart"}, {"rampart", ""}, {"", "rampart"}, {"ns/x", "rampart"}} {
		if _, _, _, err := install.ServerRBAC(pol, bad[0], bad[1]); err == nil {
			t.Errorf("ServerRBAC(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
