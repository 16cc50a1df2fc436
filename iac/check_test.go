package iac

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/kube/scan"
	"rampart.dev/rampart/policy"
)

func demoPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func render(t testing.TB, dir string) []Object {
	t.Helper()
	objs, err := Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// checks lists "Kind ns/name check" of each finding, "excepted" appended to those waived.
func checks(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		s := f.Object() + " " + f.Check
		if f.Excepted != nil {
			s += " excepted"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

func TestCheckCompliantRepository(t *testing.T) {
	for _, dir := range []string{"testdata/good", "testdata/kustomize/overlays/research"} {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			if len(objs) < 3 {
				t.Fatalf("rendered %d objects: %+v", len(objs), objs)
			}
			if fs := Check(context.Background(), objs, Options{Policy: demoPolicy(t)}); len(fs) != 0 {
				t.Fatalf("findings in a compliant repository: %+v", fs)
			}
		})
	}
}

func TestCheckFindsEachProblem(t *testing.T) {
	fs := Check(context.Background(), render(t, "testdata/bad"), Options{Policy: demoPolicy(t)})
	got := checks(fs)
	for _, want := range []string{
		"Pod research/debug " + podsec.CheckPrivileged,
		"Pod research/debug " + podsec.CheckDigest,
		"Pod research/debug " + podsec.CheckRuntimeClass,
		"Pod research/debug " + podsec.CheckSeccomp,
		"Job research/eval " + admission.CheckProtectedVolume,
		"ClusterRoleBinding ops-admin " + scan.CheckRBACDrift,
		"Secret research/deploy-key " + CheckSecretData,
		"NetworkPolicy research/allow-all-egress " + admission.CheckEgressWidened,
		"Namespace research " + admission.CheckNetworkPolicy,
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no finding %q; got:\n%s", want, strings.Join(got, "\n"))
		}
	}
	for _, f := range fs {
		if f.Source.File == "" || f.Source.Line == 0 || f.Message == "" || f.Fix == "" {
			t.Errorf("finding without a source line, message or fix: %+v", f)
		}
		if strings.Contains(f.Message, "not-a-real-key") {
			t.Errorf("a finding repeats the secret's value: %+v", f)
		}
	}
}

// An exception is an active grant: with one, the finding is shown as excepted with its expiry,
// and does not fail; without a server, none is.
func TestCheckExceptedFindings(t *testing.T) {
	pol := demoPolicy(t)
	objs := render(t, "testdata/bad")
	end := time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)
	decide := func(q authz.Query) authz.Decision {
		if q.Subject == "k8s:dev/research/allow-all-egress" && q.Action == admission.ExemptAction(admission.CheckEgressWidened) && q.Resource == "namespaces/research" {
			return authz.Decision{Allowed: true, GrantID: "gr_netpol", ExpiresAt: end}
		}
		if q.Subject == "k8s:dev/research/default" && q.Action == admission.ExemptAction(podsec.CheckDigest) {
			return authz.Decision{Allowed: true, GrantID: "gr_digest", ExpiresAt: end}
		}
		return authz.Decision{Reason: "no grant"}
	}
	fs := Check(context.Background(), objs, Options{Policy: pol, Decide: decide})
	var excepted int
	for _, f := range fs {
		if f.Excepted == nil {
			continue
		}
		excepted++
		if !f.Excepted.ExpiresAt.Equal(end) || (f.Check != admission.CheckEgressWidened && f.Check != podsec.CheckDigest) {
			t.Errorf("excepted: %+v", f)
		}
	}
	if excepted != 2 {
		t.Errorf("%d excepted findings, want 2 (the widening NetworkPolicy, the debug pod's digest): %s", excepted, checks(fs))
	}
	if n := len(Failing(fs)); n != len(fs)-2 {
		t.Errorf("Failing: %d of %d", n, len(fs))
	}
	// A standing binding is not an exception: it must come from a grant.
	standing := func(q authz.Query) authz.Decision { return authz.Decision{Allowed: true, Binding: "b"} }
	for _, f := range Check(context.Background(), objs, Options{Policy: pol, Decide: standing}) {
		if f.Excepted != nil {
			t.Errorf("excepted by a standing binding: %+v", f)
		}
	}
}

// A binding in Git that carries Rampart's managed-by label is still a binding nobody approved:
// the label says who made it, and anyone who writes the manifest may set it.
func TestCheckManagedByLabelNotBelieved(t *testing.T) {
	fs := Check(context.Background(), render(t, "testdata/bad"), Options{Policy: demoPolicy(t)})
	if !slices.Contains(checks(fs), "ClusterRoleBinding ops-admin "+scan.CheckRBACDrift) {
		t.Fatalf("a binding of cluster-admin labelled rampart.dev/managed-by: rampart passed: %s", checks(fs))
	}
}

func TestCheckMalformedWorkload(t *testing.T) {
	objs, err := Decode("w.yaml", []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x, namespace: ml}\nspec:\n  template:\n    spec:\n      containers:\n      - name: a\n        image: b\n        securityContext: {privilegd: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs := Check(context.Background(), objs, Options{Policy: demoPolicy(t)})
	if !slices.Contains(checks(fs), "Deployment ml/x "+CheckMalformed) {
		t.Fatalf("a misspelt field passed: %s", checks(fs))
	}
}

// A custom resource whose kind is named like a workload is not one.
func TestCheckCustomKindNotAWorkload(t *testing.T) {
	objs, err := Decode("j.yaml", []byte("apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nmetadata: {name: x, namespace: rampart}\nspec: {tasks: []}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fs := Check(context.Background(), objs, Options{Policy: demoPolicy(t)}); len(fs) != 0 {
		t.Fatalf("findings: %+v", fs)
	}
}

func TestRenderRefusesRemoteBase(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- https://github.com/example/manifests//base?ref=main\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Render(dir)
	if err == nil || !strings.Contains(err.Error(), "vendor it into the repository") {
		t.Fatalf("Render: %v", err)
	}
}
