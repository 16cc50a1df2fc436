package podsec

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// capturedReviews are AdmissionReviews kube-apiserver v1.37.2 sent Rampart's webhook for a
// compliant pod and Deployment (captured by bench's BenchmarkAdmissionAPIServer with
// RAMPART_BENCH_ADMISSION_CAPTURE=1): 10 KB each, half of it managedFields.
func capturedReviews(tb testing.TB) (pod, deployment []byte) {
	tb.Helper()
	var out [2][]byte
	for i, name := range []string{"review-pod.json", "review-deployment.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out[0], out[1]
}

// compareWithReference decodes body with DecodeReview and with referenceDecode and says how
// they differ. One difference is allowed, on the safe side: DecodeReview refuses bodies that
// are not valid JSON under RFC 7493 anywhere (invalid UTF-8, which the reference replaces with
// U+FFFD; duplicate names inside values it keeps raw and never decodes, such as fieldsV1).
func compareWithReference(body []byte) error {
	ref, refW, refErr := referenceDecode(body)
	r, w, err := DecodeReview(body)
	stricter := !utf8.Valid(body) || !jsontext.Value(body).IsValid()
	switch {
	case err != nil:
		var de *DecodeError
		if !errors.As(err, &de) || de.Reason == "" || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge)) {
			return fmt.Errorf("error is not a classified *DecodeError: %T %v", err, err)
		}
		if r != nil && de.What == "AdmissionReview" {
			return fmt.Errorf("a review came back with an error about the review: %v", err)
		}
	case r == nil || r.Request == nil:
		return errors.New("no error and no review")
	}
	switch {
	case refErr != nil && err == nil:
		return fmt.Errorf("accepts what the reference refuses (%v)", refErr)
	case refErr == nil && err != nil:
		if stricter {
			return nil
		}
		return fmt.Errorf("refuses what the reference accepts: %v", err)
	case err != nil && (ref == nil) != (r == nil) && !stricter:
		return fmt.Errorf("the reference says the %s is malformed (%v), DecodeReview the %s (%v)", part(ref), refErr, part(r), err)
	case err == nil:
		a, b := *ref.Request, *r.Request
		a.Object, b.Object = runtime.RawExtension{}, runtime.RawExtension{}
		if !apiequality.Semantic.DeepEqual(a, b) {
			return fmt.Errorf("decodes another request:\n%+v\n%+v", a, b)
		}
		if (refW.Object == nil) != (w.Object == nil) || (refW.Object != nil && !apiequality.Semantic.DeepEqual(refW.Object, w.Object)) {
			return errors.New("decodes another object")
		}
		if refW.Kind != w.Kind || refW.SpecPath != w.SpecPath || refW.MetaPath != w.MetaPath {
			return fmt.Errorf("another workload: %s %s, want %s %s", w.Kind, w.SpecPath, refW.Kind, refW.SpecPath)
		}
	}
	return nil
}

func part(r *admissionv1.AdmissionReview) string {
	if r == nil {
		return "review"
	}
	return "object"
}

func TestDecodeReviewAcceptsCapturedReviews(t *testing.T) {
	pod, dep := capturedReviews(t)
	for _, body := range [][]byte{pod, dep} {
		r, w, err := DecodeReview(body)
		if err != nil || w.Spec == nil || r.Request.UID == "" {
			t.Fatalf("DecodeReview: %v (workload %+v)", err, w)
		}
		if r.Request.Object.Object == nil {
			t.Error("request.object was not decoded directly")
		}
		if err := compareWithReference(body); err != nil {
			t.Error(err)
		}
	}
}

// kube-apiserver writes request.kind before request.object; a review that does not is decoded
// in two steps, to the same result.
func TestDecodeReviewKindAfterObject(t *testing.T) {
	pod, _ := capturedReviews(t)
	kind := regexp.MustCompile(`"kind":\{"group":"","version":"v1","kind":"Pod"\},`).Find(pod)
	if kind == nil {
		t.Fatal("the captured review has no request.kind")
	}
	body := bytes.Replace(pod, kind, nil, 1)
	body = bytes.Replace(body, []byte(`,"oldObject"`), append(append([]byte(","), bytes.TrimSuffix(kind, []byte(","))...), []byte(`,"oldObject"`)...), 1)
	if bytes.Equal(body, pod) || !bytes.Contains(body, []byte(`"oldObject"`)) {
		t.Fatal("could not move request.kind")
	}
	r, w, err := DecodeReview(body)
	if err != nil || w.Kind != "Pod" {
		t.Fatalf("DecodeReview: %v, %+v", err, w)
	}
	if r.Request.Object.Object != nil || len(r.Request.Object.Raw) == 0 {
		t.Error("expected the two-step decoding")
	}
	if err := compareWithReference(body); err != nil {
		t.Error(err)
	}
}

// hostileReviews are the captured reviews with one change each; want says whether the
// review ("review") or only its object ("object") is malformed.
func hostileReviews(tb testing.TB) map[string]struct {
	body []byte
	want string
} {
	pod, dep := capturedReviews(tb)
	body, deps := string(pod), string(dep)
	edit := func(s, old, new string) []byte {
		tb.Helper()
		if !strings.Contains(s, old) {
			tb.Fatalf("the captured review has no %s", old)
		}
		return []byte(strings.Replace(s, old, new, 1))
	}
	i, j := strings.Index(body, `"object":{`), strings.Index(body, `,"oldObject"`)
	if i < 0 || j < i {
		tb.Fatal("cannot find request.object")
	}
	obj := body[i+len(`"object":`) : j]
	uid := regexp.MustCompile(`"uid":"[^"]*",`).FindString(body)
	type h = struct {
		body []byte
		want string
	}
	return map[string]h{
		"unknown field in the envelope":          {edit(body, `"kind":"AdmissionReview"`, `"kind":"AdmissionReview","extra":1`), "review"},
		"unknown field in the request":           {edit(body, `"operation":"CREATE"`, `"operation":"CREATE","patch":"x"`), "review"},
		"unknown field in the object":            {edit(body, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","hostNetwrok":true`), "object"},
		"unknown field in a security context":    {edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"privilegd":true`), "object"},
		"unknown field in a Deployment template": {edit(deps, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","hostNetwrok":true`), "object"},
		"duplicate field in the request":         {edit(body, `"operation":"CREATE"`, `"operation":"CREATE","operation":"DELETE"`), "review"},
		"duplicate field in the object":          {edit(body, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","runtimeClassName":"runc"`), "object"},
		"duplicate security setting":             {edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"allowPrivilegeEscalation":true`), "object"},
		"duplicate through an escape":            {edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"allowPrivilege\u0045scalation":true`), "object"},
		"duplicate label":                        {edit(body, `"team":"pretraining"`, `"team":"pretraining","team":"other"`), "object"},
		"field in the wrong case":                {edit(body, `"runtimeClassName":"gvisor"`, `"runtimeclassname":"gvisor"`), "object"},
		"container field in the wrong case":      {edit(body, `"securityContext":{"capabilities"`, `"SecurityContext":{"capabilities"`), "object"},
		"envelope field in the wrong case":       {edit(body, `"request":{`, `"Request":{`), "review"},
		"object kind in the wrong case":          {edit(body, `"object":{"kind":"Pod"`, `"object":{"Kind":"Pod"`), "object"},
		"string for a bool":                      {edit(body, `"automountServiceAccountToken":false`, `"automountServiceAccountToken":"false"`), "object"},
		"fraction for an integer":                {edit(body, `"runAsUser":65532`, `"runAsUser":65532.5`), "object"},
		"int32 overflow":                         {edit(body, `"containerPort":8080`, `"containerPort":8589934592`), "object"},
		"trailing data":                          {[]byte(body + `{"apiVersion":"admission.k8s.io/v1"}`), "review"},
		"truncated":                              {[]byte(body[:len(body)-3]), "review"},
		"truncated inside the object":            {[]byte(body[:j-10]), "review"},
		"object is an array":                     {[]byte(body[:i] + `"object":[` + obj + `]` + body[j:]), "review"},
		"object is null":                         {[]byte(body[:i] + `"object":null` + body[j:]), "review"},
		"object is a string":                     {[]byte(body[:i] + `"object":"{}"` + body[j:]), "review"},
		"wrong object kind":                      {edit(body, `"object":{"kind":"Pod","apiVersion":"v1"`, `"object":{"kind":"Deployment","apiVersion":"v1"`), "object"},
		"wrong object apiVersion":                {edit(body, `"object":{"kind":"Pod","apiVersion":"v1"`, `"object":{"kind":"Pod","apiVersion":"v2"`), "object"},
		"v1beta1 review":                         {edit(body, `"apiVersion":"admission.k8s.io/v1"`, `"apiVersion":"admission.k8s.io/v1beta1"`), "review"},
		"review with a response":                 {edit(body, `"kind":"AdmissionReview"`, `"kind":"AdmissionReview","response":{"uid":"x","allowed":true}`), "review"},
		"response after a bad object":            {edit(body, `"dryRun":false`, `"dryRun":false,"response":{"uid":"x","allowed":true}`), "review"},
		"no uid":                                 {edit(body, uid, ``), "review"},
		"unknown operation":                      {edit(body, `"operation":"CREATE"`, `"operation":"PATCH"`), "review"},
		"invalid UTF-8 in the object":            {edit(body, `"team":"pretraining"`, "\"team\":\"pre\xfftraining\""), "review"},
		"too large":                              {append([]byte(body), bytes.Repeat([]byte(" "), MaxReviewBytes)...), "review"},
	}
}

// Every hostile review is refused with a *DecodeError. Where only the object is malformed,
// the review comes back with the error, so the webhook can answer its uid with a refusal that
// names the field inside the object.
func TestDecodeReviewRefusesHostileReviews(t *testing.T) {
	for name, h := range hostileReviews(t) {
		t.Run(name, func(t *testing.T) {
			r, w, err := DecodeReview(h.body)
			var de *DecodeError
			switch {
			case err == nil:
				t.Fatalf("accepted: %+v", w)
			case !errors.As(err, &de) || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLarge)):
				t.Fatalf("%T %v; want a classified *DecodeError", err, err)
			case h.want == "review" && (r != nil || de.What != "AdmissionReview"):
				t.Fatalf("%v (review returned: %v); want an error about the review", err, r != nil)
			case h.want == "object" && (r == nil || r.Request.UID == "" || de.What == "AdmissionReview" || de.Field == ""):
				t.Fatalf("%v (review returned: %v); want the review and an error naming a field of the object", err, r != nil)
			}
			if testing.Verbose() {
				t.Log(err)
			}
		})
	}
}

func TestDecodeErrorsNameTheField(t *testing.T) {
	hostile := hostileReviews(t)
	for name, want := range map[string]string{
		"unknown field in a security context":    `Pod: spec.containers[0].securityContext.privilegd: unknown field`,
		"unknown field in a Deployment template": `Deployment: spec.template.spec.hostNetwrok: unknown field`,
		"duplicate label":                        `Pod: metadata.labels.team: duplicate field`,
		"string for a bool":                      `Pod: spec.automountServiceAccountToken: a JSON string cannot be a bool`,
		"int32 overflow":                         `Pod: spec.containers[0].ports[0].containerPort: a JSON number cannot be a int32`,
		"unknown field in the request":           `AdmissionReview: request.patch: unknown field`,
		"wrong object kind":                      `Pod: apiVersion: object says apiVersion "v1", kind "Deployment"`,
	} {
		_, _, err := DecodeReview(hostile[name].body)
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v; want it to start with %q", name, err, want)
		}
	}
	// Keys that are not plain names are quoted, so they do not read as nested fields.
	_, err := WorkloadOf("Pod", []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app.kubernetes.io/name":"a","app.kubernetes.io/name":"b"}}}`))
	if want := `Pod: metadata.labels["app.kubernetes.io/name"]: duplicate field`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("%v; want %q", err, want)
	}
}

// The one documented difference from the reference: a duplicate name inside a value kept as
// raw JSON (managedFields[].fieldsV1) passes the reference, which never decodes it, and is
// refused by DecodeReview, which validates every value it reads.
func TestDecodeReviewRefusesDuplicatesInsideRawJSON(t *testing.T) {
	pod, _ := capturedReviews(t)
	const at = `"f:metadata":{`
	if !bytes.Contains(pod, []byte(at)) {
		t.Fatalf("the captured review has no %s", at)
	}
	body := bytes.Replace(pod, []byte(at), []byte(at+`"f:x":{},"f:x":{},`), 1)
	if _, _, err := referenceDecode(body); err != nil {
		t.Fatalf("the reference refuses it: %v", err)
	}
	if _, _, err := DecodeReview(body); err == nil {
		t.Error("DecodeReview accepts it")
	}
	if err := compareWithReference(body); err != nil {
		t.Error(err)
	}
}

// FuzzDecodeReview holds DecodeReview to the reference decoder on any body: it accepts
// nothing the reference refuses, decodes what both accept to the same review and workload,
// and blames the same part (review or object) for what both refuse.
func FuzzDecodeReview(f *testing.F) {
	pod, dep := capturedReviews(f)
	f.Add(pod)
	f.Add(dep)
	for name, h := range hostileReviews(f) {
		if name != "too large" {
			f.Add(h.body)
		}
	}
	for _, o := range workloadObjects(podTemplate()) {
		f.Add(reviewJSON(f, o.obj, o.kind))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := compareWithReference(body); err != nil {
			t.Fatal(err)
		}
	})
}
