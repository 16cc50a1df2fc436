package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
)

func demoPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// clusterWith is the cluster as the webhook reads it: a namespace's NetworkPolicies.
type clusterWith map[string][]*networkingv1.NetworkPolicy

func (c clusterWith) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	return nil, fmt.Errorf("pod %s/%s not found", ns, name)
}
func (c clusterWith) NetworkPolicies(ns string) ([]*networkingv1.NetworkPolicy, error) {
	return c[ns], nil
}
func (c clusterWith) Service(_ context.Context, ns, name string) (*corev1.Service, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("services"), name)
}
func (c clusterWith) EndpointPods(context.Context, string, string) ([]string, error) { return nil, nil }
func (c clusterWith) Pods(context.Context, string, labels.Selector) ([]corev1.Pod, error) {
	return nil, nil
}
func (c clusterWith) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumes"), name)
}
func (c clusterWith) PersistentVolumeClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumeclaims"), name)
}
func (c clusterWith) VolumeSnapshotSource(_ context.Context, ns, name string) (string, error) {
	return "", apierrors.NewNotFound(corev1.Resource("volumesnapshots"), name)
}

const podReview = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u-1",
"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
"namespace":"research","operation":"CREATE","userInfo":{"username":"oidc:alice"},
"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"research"},"spec":{"automountServiceAccountToken":false,"runtimeClassName":"gvisor",
"securityContext":{"runAsNonRoot":true,"runAsUser":1000,"seccompProfile":{"type":"RuntimeDefault"}},
"containers":[{"name":"c","image":"registry.internal.example/e@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}}}`

func post(t *testing.T, h http.Handler, path, contentType string, body []byte) (*httptest.ResponseRecorder, *admissionv1.AdmissionResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		return rec, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("answer: %v\n%s", err, rec.Body)
	}
	return rec, out.Response
}

// An index that has never loaded (the store was never reached) cannot be trusted: the webhook
// refuses even a perfect pod, says why, and records the refusal.
func TestFailsClosedWithoutTrustedDecisions(t *testing.T) {
	pol := demoPolicy(t)
	var recorded []audit.Event
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: authz.New(nil, pol, authz.Options{}),
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}},
		Record:  func(_ context.Context, e audit.Event) error { recorded = append(recorded, e); return nil }}
	_, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(podReview))
	if resp == nil || resp.Allowed || resp.UID != "u-1" || !strings.Contains(resp.Result.Message, admission.CheckUnavailable) {
		t.Fatalf("answer with an untrusted engine: %+v", resp)
	}
	if len(recorded) != 1 || recorded[0].Code != "kube.admission.denied" || !recorded[0].Failed {
		t.Fatalf("ledger: %+v", recorded)
	}
}

// A namespace whose default-deny policy is missing or widened refuses pods; other policies
// that allow egress come back as warnings.
func TestNetworkPolicyRequired(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol)}
	edited := netpol.Render("research", pol.Kubernetes().Egress)
	edited.Spec.Egress = append(edited.Spec.Egress, networkingv1.NetworkPolicyEgressRule{}) // allow everything
	wide := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, Egress: []networkingv1.NetworkPolicyEgressRule{{}}}}
	wide.Name, wide.Namespace = "allow-all", "research"
	for name, c := range map[string]struct {
		nps     []*networkingv1.NetworkPolicy
		allowed bool
		warn    bool
	}{
		"intact":         {[]*networkingv1.NetworkPolicy{netpol.Render("research", pol.Kubernetes().Egress)}, true, false},
		"missing":        {nil, false, false},
		"edited":         {[]*networkingv1.NetworkPolicy{edited}, false, true},
		"widened beside": {[]*networkingv1.NetworkPolicy{netpol.Render("research", pol.Kubernetes().Egress), wide}, true, true},
	} {
		hook.Cluster = clusterWith{"research": c.nps}
		_, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(podReview))
		if resp == nil || resp.Allowed != c.allowed || (len(resp.Warnings) > 0) != c.warn {
			t.Errorf("%s: %+v", name, resp)
			continue
		}
		if !c.allowed && !strings.Contains(resp.Result.Message, admission.CheckNetworkPolicy) {
			t.Errorf("%s: %s", name, resp.Result.Message)
		}
	}
}

// trusted is a loaded index over a real (empty) SQLite store.
func trusted(t *testing.T, pol *policy.Policy) *authz.Index {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ix := authz.New(st, pol, authz.Options{})
	if err := ix.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ix
}

// Hostile or wrong requests get a precise HTTP error (with failurePolicy: Fail, a refusal).
func TestHostileRequests(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol), Cluster: clusterWith{}}
	h := hook.Handler()
	for name, c := range map[string]struct {
		ct   string
		body []byte
		code int
		want string
	}{
		"garbage":    {"application/json", []byte("{not json"), 400, ""},
		"empty":      {"application/json", nil, 400, ""},
		"v1beta1":    {"application/json", []byte(strings.Replace(podReview, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1)), 400, "v1"},
		"no request": {"application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, ""},
		"yaml":       {"application/yaml", []byte(podReview), 415, "application/json"},
		"huge":       {"application/json", bytes.Repeat([]byte(" "), 9<<20), 413, "larger than"},
	} {
		rec, _ := post(t, h, "/validate", c.ct, c.body)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	// A malformed object inside a well-formed review is a refusal that says what is wrong.
	bad := strings.Replace(podReview, `"containers":[`, `"containers":"nope","x":[`, 1)
	if _, resp := post(t, h, "/validate", "application/json", []byte(bad)); resp == nil || resp.Allowed {
		t.Fatalf("malformed pod: %+v", resp)
	}
}

// FuzzValidate: whatever the body, the webhook answers with an HTTP error or a well-formed
// review for the same uid, and never admits what it could not decode.
func FuzzValidate(f *testing.F) {
	f.Add([]byte(podReview))
	f.Add([]byte(strings.Replace(podReview, `"kind":"Pod"}`, `"kind":"Deployment"}`, 1)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod"},"object":null}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","resource":{"resource":"pods"},"subResource":"exec","name":"p","namespace":"research"}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Service"},"resource":{"version":"v1","resource":"services"},"subResource":"proxy","name":"https:s:443","namespace":"research","operation":"CONNECT"}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"PersistentVolumeClaim"},"resource":{"version":"v1","resource":"persistentvolumeclaims"},"name":"c","namespace":"research","operation":"CREATE","object":{"apiVersion":"v1","kind":"PersistentVolumeClaim","spec":{"dataSource":{"kind":"PersistentVolumeClaim","name":"frontier-7-weights"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"snapshot.storage.k8s.io","version":"v1","kind":"VolumeSnapshot"},"resource":{"group":"snapshot.storage.k8s.io","version":"v1","resource":"volumesnapshots"},"name":"s","namespace":"research","operation":"CREATE","object":{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshot","spec":{"source":{"persistentVolumeClaimName":"frontier-7-weights"}}}}}`))
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		f.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "r.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	ix := authz.New(st, pol, authz.Options{})
	if err := ix.Load(context.Background()); err != nil {
		f.Fatal(err)
	}
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: ix,
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}}}
	h := hook.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, resp := post(t, h, "/validate", "application/json", body)
		if rec.Code != 200 {
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			t.Fatalf("answered 200 to a body that is not a review: %q", body)
		}
		if resp == nil || resp.UID != in.Request.UID {
			t.Fatalf("answer %+v for uid %q", resp, in.Request.UID)
		}
		if _, _, err := podsec.DecodeReview(body); resp.Allowed && err != nil {
			t.Fatalf("admitted a review it could not decode (%v): %q", err, body)
		}
	})
}

// A deletion carries no object: it is not refused as malformed.
func TestDeleteIsNotJudged(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol), Cluster: clusterWith{}}
	del := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"d-1","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"research","name":"p","operation":"DELETE","userInfo":{"username":"oidc:alice"}}}`
	if _, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(del)); resp == nil || !resp.Allowed {
		t.Fatalf("delete: %+v", resp)
	}
}

// A refusal says how to ask for an exception to each check an exception can waive, for the
// pod's own service account, and offers none for protected data.
func TestRefusalSaysHowToAskForAnException(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol),
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}}}
	bad := strings.Replace(podReview, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":true`, 1)
	bad = strings.Replace(bad, `"automountServiceAccountToken":false,`, `"automountServiceAccountToken":false,"serviceAccountName":"trainer",`, 1)
	_, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(bad))
	if resp == nil || resp.Allowed {
		t.Fatalf("admitted: %+v", resp)
	}
	msg := resp.Result.Message
	want := "rampart exception request --cluster dev --namespace research --workload trainer --check restricted.privilege-escalation"
	if !strings.Contains(msg, want) || strings.Count(msg, "rampart exception request") != 1 {
		t.Fatalf("refusal:\n%s\nwant one exception command: %s", msg, want)
	}
	// The weights' claim without a grant: refused, with no exception to offer.
	weights := strings.Replace(podReview, `"containers":[`, `"volumes":[{"name":"w","persistentVolumeClaim":{"claimName":"frontier-7-weights"}}],"containers":[`, 1)
	if _, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(weights)); resp == nil || resp.Allowed ||
		!strings.Contains(resp.Result.Message, admission.CheckProtectedVolume) || strings.Contains(resp.Result.Message, "exception request") {
		t.Fatalf("protected volume refusal: %+v", resp)
	}
	for _, c := range []string{admission.CheckProtectedVolume, admission.CheckProtectedExec, admission.CheckUnavailable, "rampart.malformed"} {
		if admission.Waivable(c) {
			t.Errorf("%s is waivable", c)
		}
	}
	for _, c := range []string{admission.CheckNetworkPolicy, "restricted.privileged", "baseline.runtime-class"} {
		if !admission.Waivable(c) {
			t.Errorf("%s is not waivable", c)
		}
	}
}
