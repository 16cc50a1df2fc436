package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/bench/reviewdecode"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// A prototype of the webhook's POST /validate (and /mutate) with the changes the profile of
// BenchmarkAdmission/pod/rampart-http points to, built from kube/admission's and kube/podsec's
// exported pieces so that each change can be measured alone and together. For the compliant pod
// as kube-apiserver sends it (10 KB, half of it managedFields), kube/admission spends about 87%
// of the handler decoding JSON (36% in sigs.k8s.io/json's validation pre-scan alone), 5% asking
// the decision engine about exceptions (one query per check, 19 per pod, each denial building
// its reason string), 4% comparing the namespace's NetworkPolicy with a fresh rendering
// (netpol.Intact: two deep copies and reflect.DeepEqual), 2% in io.ReadAll; the garbage
// collector's mark worker takes another 12% of the CPU on the other core. On the 3.9 KB pod
// without defaults and managedFields the shares are 72%, 13%, 8% and 2%.
//
//   - decode: reviewdecode.V2OnePass instead of podsec's decoders;
//   - lazy exceptions: run the checks without exceptions, and ask the decision engine only about
//     the checks that failed (none for a compliant pod). The verdict is the same: an exception
//     only matters to a check that fails. The "admitted under exceptions" warning and ledger
//     entry then name the exceptions that waived something, not every one that exists;
//   - intact cache: remember netpol.Intact per NetworkPolicy object (the informer hands out the
//     same pointer until the object changes) and policy; the production version would key on
//     UID and resourceVersion and bound its size;
//   - body pool: read the body into a reused buffer of its Content-Length rather than through
//     io.ReadAll, which allocates about twice the body's size per review as it grows.
//
// protoWebhook.validate follows kube/admission's (*Webhook).validate step by step for pod
// reviews (exec and attach reviews, and refusal messages, are left out); TestPrototypeAgrees
// checks that it reaches the same verdicts and checks as the real webhook on the corpus.
type protoWebhook struct {
	Policy  func() *policy.Policy
	Decide  admission.Decider
	Cluster admission.Cluster
	Decode  func([]byte) (*admissionv1.AdmissionReview, podsec.Workload, error)
	Lazy    bool // lazy exceptions
	Cache   bool // intact cache
	Pool    bool // body buffers sized from Content-Length and reused

	intact sync.Map // intactKey → bool
}

type intactKey struct {
	np  *networkingv1.NetworkPolicy
	pol *policy.Policy
}

// ServeHTTP serves POST /validate.
func (h *protoWebhook) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.serve(w, r, false) }

// Handler serves POST /validate and POST /mutate, as kube/admission's Handler does.
func (h *protoWebhook) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /validate", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, false) })
	mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, true) })
	return mux
}

func (h *protoWebhook) serve(w http.ResponseWriter, r *http.Request, mutate bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "want application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, release, err := h.readBody(w, r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	defer release()
	review, wl, err := h.Decode(body)
	var resp *admissionv1.AdmissionResponse
	switch {
	case err != nil && review == nil && !isObjectError(err):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case mutate && err != nil:
		resp = &admissionv1.AdmissionResponse{Allowed: true} // the validating webhook refuses it
	case mutate:
		resp = h.mutate(review.Request, wl)
	case err != nil:
		resp = &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: http.StatusForbidden, Message: "- [rampart.malformed] " + err.Error()}}
	default:
		resp = h.validate(r.Context(), review.Request, wl)
	}
	if review != nil {
		resp.UID = review.Request.UID
	}
	out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// bodyBuffers holds request-body buffers for reuse. The decoders copy what they keep (strings,
// RawExtensions), so a buffer can go back once the answer is written.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// readBody reads the body, at most podsec.MaxReviewBytes. With Pool, it reads into a reused
// buffer of the announced Content-Length (kube-apiserver always sends one) instead of letting
// io.ReadAll grow a new one through every power of two: 24 of the 117 KB the webhook
// allocates per 10 KB review.
func (h *protoWebhook) readBody(w http.ResponseWriter, r *http.Request) ([]byte, func(), error) {
	body := http.MaxBytesReader(w, r.Body, podsec.MaxReviewBytes)
	n := r.ContentLength
	if !h.Pool || n <= 0 || n > podsec.MaxReviewBytes {
		b, err := io.ReadAll(body)
		return b, func() {}, err
	}
	bp := bodyBuffers.Get().(*[]byte)
	if int64(cap(*bp)) < n+1 {
		*bp = make([]byte, n+1)
	}
	buf := (*bp)[:n+1]
	m, err := io.ReadFull(body, buf)
	release := func() { bodyBuffers.Put(bp) }
	switch {
	case err == io.ErrUnexpectedEOF && int64(m) == n:
		return buf[:n], release, nil // exactly Content-Length bytes, as announced
	case err == nil:
		release()
		return nil, func() {}, fmt.Errorf("the body is longer than its Content-Length (%d)", n)
	default:
		release()
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("the body is shorter than its Content-Length (%d): %w", n, err)
		}
		return nil, func() {}, err
	}
}

// mutate follows kube/admission's (*Webhook).mutate.
func (h *protoWebhook) mutate(req *admissionv1.AdmissionRequest, wl podsec.Workload) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && (req.Operation != admissionv1.Update || req.Kind.Kind == "Pod") || wl.Spec == nil {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	a := h.Policy().Kubernetes().Admission
	patch := podsec.Mutate(wl, req.Namespace, podsec.Config{AllowedRegistries: a.AllowedRegistries, RequireDigest: a.RequireDigest,
		RuntimeClass: a.RuntimeClass, HighRiskNamespaces: a.HighRiskNamespaces, HighRiskLabels: a.HighRiskLabels})
	if len(patch) == 0 {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: 500, Message: err.Error()}}
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: b, PatchType: &pt}
}

// isObjectError: the decoders report problems in request.object under the object's kind.
func isObjectError(err error) bool {
	var de *podsec.DecodeError
	return errors.As(err, &de) && de.What != "AdmissionReview"
}

func (h *protoWebhook) validate(_ context.Context, req *admissionv1.AdmissionRequest, wl podsec.Workload) *admissionv1.AdmissionResponse {
	pol := h.Policy()
	settings := pol.Kubernetes()
	what := fmt.Sprintf("%s %s/%s", req.Kind.Kind, req.Namespace, req.Name)
	if err := h.Decide.Health(); err != nil {
		return refuse(what, []podsec.Violation{{Check: admission.CheckUnavailable, Message: err.Error()}})
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update || wl.Spec == nil {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	ns := req.Namespace
	a := settings.Admission
	cfg := podsec.Config{AllowedRegistries: a.AllowedRegistries, RequireDigest: a.RequireDigest, RuntimeClass: a.RuntimeClass,
		HighRiskNamespaces: a.HighRiskNamespaces, HighRiskLabels: a.HighRiskLabels}
	ex := admission.Exceptions(h.Decide.Check, settings.Cluster, ns, wl)
	var out []podsec.Violation
	if h.Lazy {
		waived := map[string]bool{}
		for _, v := range podsec.Check(wl, ns, cfg, nil) {
			w, asked := waived[v.Check]
			if !asked {
				w = ex.Exempt(v.Check)
				waived[v.Check] = w
			}
			if !w {
				out = append(out, v)
			}
		}
	} else {
		out = podsec.Check(wl, ns, cfg, ex.Exempt)
	}
	out = append(out, admission.ProtectedVolumes(wl, ns, pol, settings, h.Decide.Check)...)
	nps, err := h.Cluster.NetworkPolicies(ns)
	var warnings []string
	if err != nil {
		out = append(out, podsec.Violation{Check: admission.CheckUnavailable, Message: err.Error()})
	} else {
		intact := false
		for _, np := range nps {
			intact = intact || h.isIntact(np, pol, settings.Egress)
		}
		if !intact && !ex.Exempt(admission.CheckNetworkPolicy) {
			out = append(out, podsec.Violation{Check: admission.CheckNetworkPolicy, Field: "metadata.namespace"})
		}
		if more := netpol.AllowsMore(nps); len(more) > 0 {
			warnings = append(warnings, "rampart: NetworkPolicies "+strings.Join(more, ", ")+" allow egress beyond DNS and the egress gateway")
		}
	}
	if len(out) > 0 {
		resp := refuse(what, out)
		resp.Warnings = warnings
		return resp
	}
	if used := ex.Used(); len(used) > 0 {
		warnings = append(warnings, fmt.Sprintf("rampart: %s admitted under %d approved exceptions", what, len(used)))
	}
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

func (h *protoWebhook) isIntact(np *networkingv1.NetworkPolicy, pol *policy.Policy, s policy.NetworkSettings) bool {
	if !h.Cache {
		return netpol.Intact(np, s)
	}
	k := intactKey{np, pol}
	if v, ok := h.intact.Load(k); ok {
		return v.(bool)
	}
	v := netpol.Intact(np, s)
	h.intact.Store(k, v)
	return v
}

// refuse builds a refusal naming each check, as kube/admission's deny does (without the fix
// texts and the ledger entry).
func refuse(what string, vs []podsec.Violation) *admissionv1.AdmissionResponse {
	var b strings.Builder
	fmt.Fprintf(&b, "Rampart refused %s (%d problems):", what, len(vs))
	for _, v := range vs {
		b.WriteString("\n- [" + v.Check + "] " + v.Field + ": " + v.Message + "; fix: " + v.Fix)
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
		Reason: metav1.StatusReasonForbidden, Message: b.String()}}
}

// protoVariants are the prototypes measured: each change alone, then all four.
func protoVariants(env *admissionEnv) []struct {
	name string
	h    *protoWebhook
} {
	mk := func(decode func([]byte) (*admissionv1.AdmissionReview, podsec.Workload, error), lazy, cache, pool bool) *protoWebhook {
		return &protoWebhook{Policy: env.index.Policy, Decide: env.index, Cluster: env.webhook.Cluster, Decode: decode, Lazy: lazy, Cache: cache, Pool: pool}
	}
	return []struct {
		name string
		h    *protoWebhook
	}{
		{"as-is", mk(reviewdecode.Current, false, false, false)},
		{"v2-decode", mk(reviewdecode.V2OnePass, false, false, false)},
		{"lazy-exceptions", mk(reviewdecode.Current, true, false, false)},
		{"intact-cache", mk(reviewdecode.Current, false, true, false)},
		{"body-pool", mk(reviewdecode.Current, false, false, true)},
		{"all", mk(reviewdecode.V2OnePass, true, true, true)},
	}
}

func postTo(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestPrototypeAgrees: every prototype reaches the real webhook's verdict, for the same checks,
// on every review of the agreement corpus.
func TestPrototypeAgrees(t *testing.T) {
	env := admissionEnvFor(t)
	var bodies [][]byte
	for _, c := range admissionCorpus {
		for _, k := range corpusKinds {
			bodies = append(bodies, corpusReview(t, c, k.kind))
		}
	}
	for _, b := range env.bodies {
		bodies = append(bodies, b)
	}
	n := 0
	for i, body := range bodies {
		allowed, want := env.rampartChecks(t, body)
		for _, v := range protoVariants(env) {
			rec := postTo(v.h, body)
			var out admissionv1.AdmissionReview
			if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.Response == nil {
				t.Fatalf("review %d: %s answered %d %s", i, v.name, rec.Code, rec.Body)
			}
			var got []string
			if !out.Response.Allowed {
				got = checkIDs(out.Response.Result.Message)
			}
			if out.Response.Allowed != allowed || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("review %d: %s admitted=%v %v; the webhook admitted=%v %v", i, v.name, out.Response.Allowed, got, allowed, want)
			}
			n++
		}
	}
	t.Logf("%d prototype reviews agree with the webhook", n)
}

// BenchmarkAdmissionPrototype measures the prototype handler, each change alone and all
// together, on the measured reviews, beside the real handler.
func BenchmarkAdmissionPrototype(b *testing.B) {
	env := admissionEnvFor(b)
	mach0, own0 := machineCPU(), ownCPU()
	for _, name := range []string{"pod", "pod-bare"} {
		body := env.bodies[name]
		check := func(b *testing.B, rec *httptest.ResponseRecorder) {
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"allowed":true`)) {
				b.Fatalf("answered %d %s", rec.Code, rec.Body)
			}
		}
		b.Run(name+"/webhook", func(b *testing.B) {
			timeReviews(b, "admission-proto/"+name+"/webhook", true, func() { check(b, env.validate(body)) })
		})
		for _, v := range protoVariants(env) {
			b.Run(name+"/"+v.name, func(b *testing.B) {
				timeReviews(b, "admission-proto/"+name+"/"+v.name, true, func() { check(b, postTo(v.h, body)) })
			})
		}
	}
	res := admissionResultsWith("admission-proto/")
	for _, name := range []string{"pod", "pod-bare"} {
		admissionLine("%s (%d bytes), POST /validate in process:", name, len(env.bodies[name]))
		base := res["admission-proto/"+name+"/webhook"]
		for _, v := range []string{"webhook", "as-is", "v2-decode", "lazy-exceptions", "intact-cache", "body-pool", "all"} {
			r := res["admission-proto/"+name+"/"+v]
			if r.nsPerOp == 0 {
				continue
			}
			admissionLine("  %-16s %s; %.2fx the webhook's time; target p99 < %s: %s", v, r, r.nsPerOp/base.nsPerOp, admissionP99Target, verdict(r.lat.P99 < admissionP99Target))
		}
	}
	printAdmission("Admission: prototype handler (changes proposed to kube/admission and kube/podsec)", mach0, own0, 0)
}
