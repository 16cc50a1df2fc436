// Package reviewdecode prototypes faster strict decoders for Rampart's admission webhook
// (issue 4: the in-process review misses p99 < 50 µs, and most of it is JSON decoding). It lives
// in the benchmark module, not in kube/podsec, until one is chosen.
//
// Each decoder keeps the security properties of podsec's: unknown fields refused, duplicate
// names refused, case-sensitive names, the size limit (podsec.MaxReviewBytes), the same checks
// on the envelope (admission.k8s.io/v1, a request with uid, kind and operation, no response, an
// object for CREATE and UPDATE) and on the object (the apiVersion and kind of a supported
// workload). Compare holds each to podsec's result, on the reviews of bench's
// TestAdmissionDecodersAgree, on Hostile's, and under FuzzDecoders. The one difference is on the
// safe side: invalid UTF-8 is refused, where sigs.k8s.io/json replaces it with U+FFFD, and so
// are duplicate names inside values podsec keeps as raw JSON and never decodes
// (managedFields[].fieldsV1, request.options).
//
// Where the time goes today (pprof of bench's BenchmarkAdmission/pod/rampart-http): podsec
// decodes with sigs.k8s.io/json (encoding/json's decoder with strict checks, what the apiserver
// itself decodes JSON with), which scans its whole input once to validate it (checkValid) before
// decoding it. request.object is therefore scanned four times: validated, then skipped and
// copied as part of the envelope (a RawExtension), then validated and decoded by WorkloadOf.
//
// The prototypes use github.com/go-json-experiment/json (the encoding/json/v2 proposal; the
// standard library has it behind GOEXPERIMENT=jsonv2), which validates as it decodes and refuses
// duplicate names and invalid UTF-8 by default; RejectUnknownMembers refuses unknown fields:
//
//   - V2TwoPass: the envelope into admissionv1.AdmissionReview (request.object copied as a
//     RawExtension), then the object into its typed struct: two scans of the object.
//   - V2OnePass: one decoder over the body; when it reaches request.object it already knows
//     request.kind (kube-apiserver writes kind before object), and decodes the object straight
//     into its typed struct from the token stream: one scan, no copy. Were kind to come later,
//     the object would be copied and decoded afterwards.
package reviewdecode

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"

	"rampart.dev/rampart/kube/podsec"
)

// v2Strict are the options every prototype decodes with: unknown members are errors;
// duplicate names, case-insensitive matching and invalid UTF-8 stay off (their defaults).
var v2Strict = jsonv2.JoinOptions(
	jsonv2.RejectUnknownMembers(true),
	jsonv2.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// newWorkloadObject returns an empty object of a supported workload kind and its apiVersion.
func newWorkloadObject(kind string) (kruntime.Object, string) {
	switch kind {
	case "Pod":
		return &corev1.Pod{}, "v1"
	case "Deployment":
		return &appsv1.Deployment{}, "apps/v1"
	case "StatefulSet":
		return &appsv1.StatefulSet{}, "apps/v1"
	case "DaemonSet":
		return &appsv1.DaemonSet{}, "apps/v1"
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}, "apps/v1"
	case "Job":
		return &batchv1.Job{}, "batch/v1"
	case "CronJob":
		return &batchv1.CronJob{}, "batch/v1"
	}
	return nil, ""
}

// v2Error turns a go-json-experiment error into podsec's *DecodeError, naming the field by its
// path ("spec.containers[0].securityContext.privilegd"); trim is a JSON pointer prefix to leave
// out of the path (the object's, when the error is the object's).
func v2Error(what string, trim jsontext.Pointer, err error) error {
	field, reason := "", err.Error()
	var se *jsonv2.SemanticError
	var syn *jsontext.SyntacticError
	switch {
	case errors.As(err, &se):
		field = pointerPath(trimPointer(se.JSONPointer, trim))
		switch {
		case errors.Is(se.Err, jsonv2.ErrUnknownName):
			reason = "unknown field (a field this build of Rampart does not know, or a misspelling: names are case-sensitive)"
		case se.Err != nil:
			reason = se.Err.Error()
		case se.GoType != nil:
			reason = fmt.Sprintf("a JSON %s cannot be a %s", se.JSONKind, se.GoType)
		}
	case errors.As(err, &syn):
		field = pointerPath(trimPointer(syn.JSONPointer, trim))
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) {
			reason = "duplicate field (each field may appear once)"
		} else {
			reason = fmt.Sprintf("invalid JSON at byte %d: %v", syn.ByteOffset, syn.Err)
		}
	}
	return &podsec.DecodeError{What: what, Field: field, Reason: reason, Err: podsec.ErrMalformed}
}

func trimPointer(p, prefix jsontext.Pointer) jsontext.Pointer {
	if prefix != "" && strings.HasPrefix(string(p), string(prefix)+"/") {
		return p[len(prefix):]
	}
	return p
}

// pointerPath renders a JSON pointer as a field path.
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// checkEnvelope applies DecodeAdmissionReview's checks to a decoded review. objectIsJSONObject
// reports whether request.object (and oldObject) were JSON objects.
func checkEnvelope(review *admissionv1.AdmissionReview, objectIsJSONObject func(old bool) bool) error {
	fail := func(field, reason string) error {
		return &podsec.DecodeError{What: "AdmissionReview", Field: field, Reason: reason, Err: podsec.ErrMalformed}
	}
	switch {
	case review.APIVersion != "admission.k8s.io/v1":
		return fail("apiVersion", strconv.Quote(review.APIVersion)+" is not supported; want \"admission.k8s.io/v1\"")
	case review.Kind != "AdmissionReview":
		return fail("kind", strconv.Quote(review.Kind)+"; want \"AdmissionReview\"")
	case review.Response != nil:
		return fail("response", "a review sent to the webhook must not carry a response")
	case review.Request == nil:
		return fail("request", "missing")
	case review.Request.UID == "":
		return fail("request.uid", "missing")
	case review.Request.Kind.Kind == "" || review.Request.Kind.Version == "":
		return fail("request.kind", "missing kind or version")
	}
	switch op := review.Request.Operation; op {
	case admissionv1.Create, admissionv1.Update:
		if !objectIsJSONObject(false) {
			return fail("request.object", "want a JSON object")
		}
		if op == admissionv1.Update && !objectIsJSONObject(true) {
			return fail("request.oldObject", "want a JSON object")
		}
	case admissionv1.Delete, admissionv1.Connect:
	case "":
		return fail("request.operation", "missing")
	default:
		return fail("request.operation", strconv.Quote(string(op))+" is not one of CREATE, UPDATE, DELETE, CONNECT")
	}
	return nil
}

// checkObject applies WorkloadOf's apiVersion and kind check and finds the pod.
func checkObject(kind, apiVersion string, obj kruntime.Object) (podsec.Workload, error) {
	tm := obj.GetObjectKind().GroupVersionKind()
	if got := tm.GroupVersion().String(); got != apiVersion || tm.Kind != kind {
		return podsec.Workload{}, &podsec.DecodeError{What: kind, Field: "apiVersion", Err: podsec.ErrMalformed,
			Reason: fmt.Sprintf("object says apiVersion %q, kind %q; want apiVersion %q, kind %q", got, tm.Kind, apiVersion, kind)}
	}
	return podsec.WorkloadFromObject(obj)
}

func tooLarge(n int) error {
	return &podsec.DecodeError{What: "AdmissionReview", Err: podsec.ErrTooLarge,
		Reason: fmt.Sprintf("body is %d bytes, more than the %d allowed", n, podsec.MaxReviewBytes)}
}

func isJSONObject(raw []byte) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// Current is what the webhook does today: podsec.DecodeAdmissionReview, then
// podsec.WorkloadOf on request.object. A review of a kind that is not a workload returns a zero
// Workload and no error, as the webhook admits it.
func Current(body []byte) (*admissionv1.AdmissionReview, podsec.Workload, error) {
	r, err := podsec.DecodeAdmissionReview(body)
	if err != nil {
		return nil, podsec.Workload{}, err
	}
	if r.Request.Operation != admissionv1.Create && r.Request.Operation != admissionv1.Update {
		return r, podsec.Workload{}, nil
	}
	w, err := podsec.WorkloadOf(r.Request.Kind.Kind, r.Request.Object.Raw)
	if errors.Is(err, podsec.ErrUnsupportedKind) {
		return r, podsec.Workload{}, nil
	}
	return r, w, err
}

// V2TwoPass decodes the envelope with go-json-experiment (the object copied as raw JSON),
// then the object.
func V2TwoPass(body []byte) (*admissionv1.AdmissionReview, podsec.Workload, error) {
	if len(body) > podsec.MaxReviewBytes {
		return nil, podsec.Workload{}, tooLarge(len(body))
	}
	var r admissionv1.AdmissionReview
	if err := jsonv2.Unmarshal(body, &r, v2Strict); err != nil {
		return nil, podsec.Workload{}, v2Error("AdmissionReview", "", err)
	}
	if err := checkEnvelope(&r, func(old bool) bool {
		if old {
			return isJSONObject(r.Request.OldObject.Raw)
		}
		return isJSONObject(r.Request.Object.Raw)
	}); err != nil {
		return nil, podsec.Workload{}, err
	}
	if r.Request.Operation != admissionv1.Create && r.Request.Operation != admissionv1.Update {
		return &r, podsec.Workload{}, nil
	}
	kind := r.Request.Kind.Kind
	obj, apiVersion := newWorkloadObject(kind)
	if obj == nil {
		return &r, podsec.Workload{}, nil
	}
	if err := jsonv2.Unmarshal(r.Request.Object.Raw, obj, v2Strict); err != nil {
		return nil, podsec.Workload{}, v2Error(kind, "", err)
	}
	w, err := checkObject(kind, apiVersion, obj)
	return &r, w, err
}

// v2Review is admissionv1.AdmissionReview for V2OnePass: its request's object and
// oldObject are v2Objects, which shadow the inlined AdmissionRequest's RawExtensions.
type v2Review struct {
	metav1.TypeMeta `json:",inline"`
	Request         *v2Request                     `json:"request,omitempty"`
	Response        *admissionv1.AdmissionResponse `json:"response,omitempty"`
}

type v2Request struct {
	admissionv1.AdmissionRequest `json:",inline"`
	Object                       v2Object `json:"object,omitempty"`
	OldObject                    v2Object `json:"oldObject,omitempty"`
}

// v2Object decodes request.object straight into its typed struct when request.kind has already
// been read, and otherwise keeps a copy of the raw JSON.
type v2Object struct {
	req        *v2Request // the request it belongs to, for its kind; nil: keep the raw JSON
	isObject   bool       // the value was a JSON object
	raw        []byte
	obj        kruntime.Object
	apiVersion string
}

func (o *v2Object) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	o.isObject = dec.PeekKind() == '{'
	if o.req != nil && o.isObject && o.req.Kind.Kind != "" {
		if obj, apiVersion := newWorkloadObject(o.req.Kind.Kind); obj != nil {
			o.obj, o.apiVersion = obj, apiVersion
			return jsonv2.UnmarshalDecode(dec, obj, v2Strict)
		}
	}
	v, err := dec.ReadValue()
	if err != nil || v.Kind() == 'n' {
		return err // null: no object, as RawExtension decodes it
	}
	o.raw = bytes.Clone(v)
	return nil
}

// V2OnePass decodes the body once: request.object goes straight into its typed struct.
func V2OnePass(body []byte) (*admissionv1.AdmissionReview, podsec.Workload, error) {
	if len(body) > podsec.MaxReviewBytes {
		return nil, podsec.Workload{}, tooLarge(len(body))
	}
	req := &v2Request{}
	req.Object.req = req
	in := v2Review{Request: req}
	if err := jsonv2.Unmarshal(body, &in, v2Strict); err != nil {
		what, trim := "AdmissionReview", jsontext.Pointer("")
		var se *jsonv2.SemanticError
		var syn *jsontext.SyntacticError
		if req.Object.obj != nil && ((errors.As(err, &se) && strings.HasPrefix(string(se.JSONPointer), "/request/object/")) ||
			(errors.As(err, &syn) && strings.HasPrefix(string(syn.JSONPointer), "/request/object/"))) {
			what, trim = req.Kind.Kind, "/request/object"
		}
		return nil, podsec.Workload{}, v2Error(what, trim, err)
	}
	r := &admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: in.Response}
	if in.Request != nil {
		r.Request = &in.Request.AdmissionRequest
		r.Request.Object.Raw, r.Request.OldObject.Raw = in.Request.Object.raw, in.Request.OldObject.raw
	}
	if err := checkEnvelope(r, func(old bool) bool {
		if old {
			return in.Request.OldObject.isObject
		}
		return in.Request.Object.isObject
	}); err != nil {
		return nil, podsec.Workload{}, err
	}
	if r.Request.Operation != admissionv1.Create && r.Request.Operation != admissionv1.Update {
		return r, podsec.Workload{}, nil
	}
	kind, o := r.Request.Kind.Kind, &in.Request.Object
	if o.obj == nil {
		// Not a workload, or kind came after object: decode the copy.
		obj, apiVersion := newWorkloadObject(kind)
		if obj == nil {
			return r, podsec.Workload{}, nil
		}
		if err := jsonv2.Unmarshal(o.raw, obj, v2Strict); err != nil {
			return nil, podsec.Workload{}, v2Error(kind, "", err)
		}
		o.obj, o.apiVersion = obj, apiVersion
	}
	w, err := checkObject(kind, o.apiVersion, o.obj)
	return r, w, err
}

// Decoder is the signature of Current, V2TwoPass and V2OnePass: the review, and the workload in
// request.object (zero for a kind that is not a workload, or an operation without an object).
type Decoder func(body []byte) (*admissionv1.AdmissionReview, podsec.Workload, error)

// Decoders are the decoders compared, Current first.
var Decoders = []struct {
	Name   string
	Decode Decoder
}{
	{"sigs-json (current)", Current},
	{"v2-two-pass", V2TwoPass},
	{"v2-one-pass", V2OnePass},
}

// ErrDiffers is wrapped by Compare's errors.
var ErrDiffers = errors.New("the decoders disagree")

// Compare decodes body with Current and with d, and says how they differ: d accepts what
// Current refuses, refuses what it accepts, or decodes another review or object. One difference
// is allowed, on the safe side: the prototypes refuse bodies that are not valid under RFC 7493
// anywhere (invalid UTF-8, which sigs.k8s.io/json replaces with U+FFFD, and duplicate names
// inside values it keeps as raw JSON, such as managedFields' fieldsV1 or request.options, which
// it never decodes). It returns Current's own error (nil when it accepts) when they agree.
func Compare(body []byte, d Decoder) (currentErr, diff error) {
	ref, refW, refErr := Current(body)
	r, w, err := d(body)
	switch {
	case refErr != nil && err == nil:
		return refErr, fmt.Errorf("%w: accepts what the current decoder refuses (%v)", ErrDiffers, refErr)
	case refErr == nil && err != nil:
		if !utf8.Valid(body) || !jsontext.Value(body).IsValid() {
			return nil, nil // stricter, and by design
		}
		return nil, fmt.Errorf("%w: refuses what the current decoder accepts: %v", ErrDiffers, err)
	case refErr == nil:
		a, b := *ref, *r
		a.Request, b.Request = ref.Request.DeepCopy(), r.Request.DeepCopy()
		a.Request.Object, b.Request.Object = kruntime.RawExtension{}, kruntime.RawExtension{}
		if !apiequality.Semantic.DeepEqual(a, b) {
			return nil, fmt.Errorf("%w: decodes another review:\n%+v\n%+v", ErrDiffers, a.Request, b.Request)
		}
		if (refW.Object == nil) != (w.Object == nil) || (refW.Object != nil && !apiequality.Semantic.DeepEqual(refW.Object, w.Object)) {
			return nil, fmt.Errorf("%w: decodes another object", ErrDiffers)
		}
	}
	return refErr, nil
}

// Hostile returns reviews that every decoder must refuse, each podReview (a CREATE review of a
// compliant pod in Rampart's benchmark, as kube-apiserver or bench's reviewOf writes it) or
// deploymentReview with one change. It fails if a review lacks a field a change needs.
func Hostile(podReview, deploymentReview []byte) (map[string][]byte, error) {
	body, dep := string(podReview), string(deploymentReview)
	var missing []string
	edit := func(s, old, new string) []byte {
		if !strings.Contains(s, old) {
			missing = append(missing, old)
		}
		return []byte(strings.Replace(s, old, new, 1))
	}
	// The object, to replace it whole.
	i, j := strings.Index(body, `"object":{`), strings.Index(body, `,"oldObject"`)
	if j < 0 {
		j = strings.Index(body, `,"dryRun"`)
	}
	if i < 0 || j < i {
		return nil, errors.New("hostile reviews: cannot find request.object")
	}
	obj := body[i+len(`"object":`) : j]
	uid := regexp.MustCompile(`"uid":"[^"]*",`).FindString(body)
	out := map[string][]byte{
		"unknown field in the envelope":          edit(body, `"kind":"AdmissionReview"`, `"kind":"AdmissionReview","extra":1`),
		"unknown field in the request":           edit(body, `"operation":"CREATE"`, `"operation":"CREATE","patch":"x"`),
		"unknown field in the object":            edit(body, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","hostNetwrok":true`),
		"unknown field in a security context":    edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"privilegd":true`),
		"unknown field in a Deployment template": edit(dep, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","hostNetwrok":true`),
		"duplicate field in the request":         edit(body, `"operation":"CREATE"`, `"operation":"CREATE","operation":"DELETE"`),
		"duplicate field in the object":          edit(body, `"runtimeClassName":"gvisor"`, `"runtimeClassName":"gvisor","runtimeClassName":"runc"`),
		"duplicate security setting":             edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"allowPrivilegeEscalation":true`),
		"duplicate through an escape":            edit(body, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"allowPrivilege\u0045scalation":true`),
		"duplicate label":                        edit(body, `"team":"pretraining"`, `"team":"pretraining","team":"other"`),
		"field in the wrong case":                edit(body, `"runtimeClassName":"gvisor"`, `"runtimeclassname":"gvisor"`),
		"container field in the wrong case":      edit(body, `"securityContext":{"capabilities"`, `"SecurityContext":{"capabilities"`),
		"envelope field in the wrong case":       edit(body, `"request":{`, `"Request":{`),
		"object kind in the wrong case":          edit(body, `"object":{"kind":"Pod"`, `"object":{"Kind":"Pod"`),
		"string for a bool":                      edit(body, `"automountServiceAccountToken":false`, `"automountServiceAccountToken":"false"`),
		"fraction for an integer":                edit(body, `"runAsUser":65532`, `"runAsUser":65532.5`),
		"int32 overflow":                         edit(body, `"containerPort":8080`, `"containerPort":8589934592`),
		"trailing data":                          []byte(body + `{"apiVersion":"admission.k8s.io/v1"}`),
		"truncated":                              []byte(body[:len(body)-3]),
		"object is an array":                     []byte(body[:i] + `"object":[` + obj + `]` + body[j:]),
		"object is null":                         []byte(body[:i] + `"object":null` + body[j:]),
		"object is a string":                     []byte(body[:i] + `"object":"{}"` + body[j:]),
		"wrong object kind":                      edit(body, `"object":{"kind":"Pod","apiVersion":"v1"`, `"object":{"kind":"Deployment","apiVersion":"v1"`),
		"wrong object apiVersion":                edit(body, `"object":{"kind":"Pod","apiVersion":"v1"`, `"object":{"kind":"Pod","apiVersion":"v2"`),
		"v1beta1 review":                         edit(body, `"apiVersion":"admission.k8s.io/v1"`, `"apiVersion":"admission.k8s.io/v1beta1"`),
		"review with a response":                 edit(body, `"kind":"AdmissionReview"`, `"kind":"AdmissionReview","response":{"uid":"x","allowed":true}`),
		"no uid":                                 edit(body, uid, ``),
		"unknown operation":                      edit(body, `"operation":"CREATE"`, `"operation":"PATCH"`),
		"too large":                              append([]byte(body), bytes.Repeat([]byte(" "), podsec.MaxReviewBytes)...),
	}
	if len(missing) > 0 || uid == "" {
		return nil, fmt.Errorf("hostile reviews: the reviews lack %q (or a uid)", missing)
	}
	return out, nil
}
