package podsec

import (
	"errors"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// reviewJSON is an AdmissionReview for creating p, as the apiserver sends it.
func reviewJSON(t testing.TB, obj runtime.Object, kind string) []byte {
	t.Helper()
	gvk := obj.GetObjectKind().GroupVersionKind()
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "705ab4f5-6393-11e8-b7cc-42010a800002",
			Kind:      metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: kind},
			Resource:  metav1.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(kind) + "s"},
			Namespace: "research",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: mustJSON(obj)},
		},
	}
	return mustJSON(r)
}

func TestDecodeAdmissionReviewAcceptsRealReview(t *testing.T) {
	body := reviewJSON(t, compliantPod(), "Pod")
	r, err := DecodeAdmissionReview(body)
	if err != nil {
		t.Fatal(err)
	}
	w, err := WorkloadOf(r.Request.Kind.Kind, r.Request.Object.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if vs := Check(w, r.Request.Namespace, testConfig, nil); len(vs) != 0 {
		t.Fatalf("violations: %v", summary(vs))
	}
	// DELETE carries no object.
	r.Request.Operation = admissionv1.Delete
	r.Request.Object, r.Request.OldObject = runtime.RawExtension{}, r.Request.Object
	if _, err := DecodeAdmissionReview(mustJSON(r)); err != nil {
		t.Fatalf("DELETE review: %v", err)
	}
}

func TestDecodeAdmissionReviewRefusesHostileInput(t *testing.T) {
	good := string(reviewJSON(t, compliantPod(), "Pod"))
	// edit replaces the first occurrence of old in the good review.
	edit := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("review has no %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name, body string
		is         error
		want       string
	}{
		{"empty", ``, ErrMalformed, "empty input"},
		{"whitespace", " \n\t", ErrMalformed, "empty input"},
		{"garbage", "\x89PNG\r\n", ErrMalformed, "want a JSON object"},
		{"null", `null`, ErrMalformed, `starts with "null"`},
		{"array", `[{"apiVersion":"admission.k8s.io/v1"}]`, ErrMalformed, "want a JSON object"},
		{"string", `"AdmissionReview"`, ErrMalformed, "want a JSON object"},
		{"truncated", good[:len(good)-3], ErrMalformed, "invalid JSON"},
		{"two documents", good + good, ErrMalformed, "invalid JSON"},
		{"empty object", `{}`, ErrMalformed, "apiVersion: missing"},
		{"v1beta1", edit(`"admission.k8s.io/v1"`, `"admission.k8s.io/v1beta1"`), ErrMalformed, `admissionReviewVersions: ["v1"]`},
		{"wrong kind", edit(`"kind":"AdmissionReview"`, `"kind":"AdmissionResponse"`), ErrMalformed, `kind: "AdmissionResponse"`},
		{"request null", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`, ErrMalformed, "request: missing"},
		{"request missing", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, ErrMalformed, "request: missing"},
		{"response set", edit(`"request":`, `"response":{"uid":"x","allowed":true},"request":`), ErrMalformed, "must not carry a response"},
		{"uid null", edit(`"uid":"705ab4f5-6393-11e8-b7cc-42010a800002"`, `"uid":null`), ErrMalformed, "request.uid: missing"},
		{"uid duplicated", edit(`"uid":`, `"uid":"other","uid":`), ErrMalformed, "request.uid: duplicate field"},
		{"uid in wrong case", edit(`"uid":`, `"UID":"other","uid":`), ErrMalformed, "request.UID: unknown field"},
		{"unknown field", edit(`"request":{`, `"request":{"dryRunX":true,`), ErrMalformed, "request.dryRunX: unknown field"},
		{"kind null", edit(`"kind":{`, `"kind":null,"x":{`), ErrMalformed, "request.x: unknown field"},
		{"request.kind missing", edit(`"kind":{"group":"","version":"v1","kind":"Pod"}`, `"kind":{"group":"","version":"","kind":""}`), ErrMalformed, "request.kind: missing"},
		{"operation missing", edit(`"operation":"CREATE"`, `"operation":""`), ErrMalformed, "request.operation: missing"},
		{"operation bogus", edit(`"operation":"CREATE"`, `"operation":"PATCH"`), ErrMalformed, `"PATCH" is not one of`},
		{"operation wrong type", edit(`"operation":"CREATE"`, `"operation":{"a":1}`), ErrMalformed, `request.operation: a JSON object cannot be`},
		{"object null on create", edit(`"object":{`, `"object":null,"x":{`), ErrMalformed, "request.x: unknown field"},
		{"object missing on create", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":null}}`, ErrMalformed, "request.object: empty input"},
		{"object is a string", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":"{}"}}`, ErrMalformed, `request.object: input starts with`},
		{"update without oldObject", edit(`"operation":"CREATE"`, `"operation":"UPDATE"`), ErrMalformed, "request.oldObject: empty input"},
		{"deeply nested", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":` + strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000) + `}}`, ErrMalformed, "exceeded max depth"},
		{"huge", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + strings.Repeat("u", MaxReviewBytes) + `"}}`, ErrTooLarge, "more than the 8388608 allowed"},
		{"invalid UTF-8 in a string is kept, not a crash", edit(`"namespace":"research"`, "\"namespace\":\"\xff\"") + "x", ErrMalformed, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeAdmissionReview([]byte(tt.body))
			if err == nil {
				t.Fatalf("accepted: %+v", r)
			}
			var de *DecodeError
			if !errors.Is(err, tt.is) || !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want %v containing %q", err, tt.is, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "AdmissionReview: ") {
				t.Fatalf("error %q does not say what was being decoded", err)
			}
		})
	}
}

func FuzzDecodeAdmissionReview(f *testing.F) {
	good := reviewJSON(f, compliantPod(), "Pod")
	f.Add(good)
	for _, o := range workloadObjects(podTemplate()) {
		f.Add(reviewJSON(f, o.obj, o.kind))
	}
	for _, s := range []string{
		``, `null`, `{}`, `[]`, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"Pod","spec":{"containers":[null]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","uid":"v"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"UPDATE","object":{},"oldObject":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeAdmissionReview(body)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge)) {
				t.Fatalf("error is not a classified *DecodeError: %v", err)
			}
			return
		}
		req := r.Request
		if r.APIVersion != "admission.k8s.io/v1" || r.Kind != "AdmissionReview" || req == nil || req.UID == "" || r.Response != nil {
			t.Fatalf("accepted an invalid review: %+v", r)
		}
		if (req.Operation == admissionv1.Create || req.Operation == admissionv1.Update) && len(req.Object.Raw) == 0 {
			t.Fatal("accepted a CREATE or UPDATE without an object")
		}
		// What the webhook does next must not panic either.
		if w, err := WorkloadOf(req.Kind.Kind, req.Object.Raw); err == nil {
			Check(w, req.Namespace, testConfig, nil)
			Mutate(w, req.Namespace, testConfig)
		}
	})
}

func podTemplate() (tmpl corev1.PodTemplateSpec) {
	p := compliantPod()
	tmpl.Labels = map[string]string{"app": "trainer"}
	tmpl.Spec = p.Spec
	return tmpl
}
