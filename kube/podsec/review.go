package podsec

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

const reviewAPIVersion = "admission.k8s.io/v1"

// DecodeReview decodes an AdmissionReview request body and, for a CREATE or UPDATE of a
// workload kind, the workload in request.object. It is what the webhook calls: one pass over
// the body, with request.object decoded straight into its typed object (kube-apiserver writes
// request.kind before request.object; were it to come later, the object would be kept and
// decoded afterwards).
//
// The review is checked as DecodeAdmissionReview checks it, and the object as WorkloadOf
// checks it. The results:
//   - nil review and an error: the review itself is malformed (or too large); there is nothing
//     to answer to.
//   - a review and an error: the review is sound but request.object is not (the error is a
//     *DecodeError whose What is the object's kind, its Field a path inside the object); the
//     review's uid can be answered with a refusal.
//   - a review and no error: the workload, or a zero Workload (Spec nil) for an operation
//     without an object to judge or a kind that is not a workload.
//
// The returned review's request.object holds the decoded object in Object rather than its
// JSON in Raw when it was decoded directly.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, Workload, error) {
	r, err := decodeReview(body, true)
	if err != nil {
		// Something is malformed. Decode again keeping request.object as raw JSON, to tell a
		// malformed review from a malformed object and say where, as the two-step decoding
		// (DecodeAdmissionReview, then WorkloadOf) does.
		r, err2 := decodeReview(body, false)
		if err2 != nil {
			return nil, Workload{}, err2
		}
		w, err2 := rawWorkload(r.Request)
		if err2 == nil && w.Spec != nil {
			// The one-pass decoding failed where the two-step one did not. Fail closed.
			var de *DecodeError
			if !errors.As(err, &de) {
				de = &DecodeError{What: r.Request.Kind.Kind, Reason: err.Error(), Err: ErrMalformed}
			}
			return r, Workload{}, de
		}
		return r, Workload{}, err2
	}
	if obj := r.Request.Object.Object; obj != nil && hasObject(r.Request) {
		w, err := checkedWorkload(r.Request.Kind.Kind, obj)
		return r, w, err
	}
	// Not a workload, no object to judge, or kind came after object: the kept JSON, if any.
	w, err := rawWorkload(r.Request)
	return r, w, err
}

// rawWorkload decodes the workload in a request whose object was kept as raw JSON: zero for an
// operation without an object to judge or a kind that is not a workload.
func rawWorkload(req *admissionv1.AdmissionRequest) (Workload, error) {
	if !hasObject(req) {
		return Workload{}, nil
	}
	w, err := WorkloadOf(req.Kind.Kind, req.Object.Raw)
	if errors.Is(err, ErrUnsupportedKind) {
		return Workload{}, nil
	}
	return w, err
}

// DecodeAdmissionReview decodes an AdmissionReview request body, keeping request.object and
// request.oldObject as raw JSON. Only admission.k8s.io/v1 is accepted (configure the webhook
// with admissionReviewVersions: ["v1"]). Decoding is strict, as in WorkloadOf, and the review
// must be a request: request set with a uid, kind and operation, response unset, and for
// CREATE and UPDATE an object that is a JSON object (UPDATE also an oldObject). Bodies over
// MaxReviewBytes are refused. Errors are *DecodeError wrapping ErrMalformed or ErrTooLarge.
// DecodeReview does this and WorkloadOf in one pass.
func DecodeAdmissionReview(body []byte) (*admissionv1.AdmissionReview, error) {
	return decodeReview(body, false)
}

func hasObject(req *admissionv1.AdmissionRequest) bool {
	return req.Operation == admissionv1.Create || req.Operation == admissionv1.Update
}

// wireReview is an AdmissionReview as it is read: its request's object and oldObject are
// wireObjects, which shadow the inlined AdmissionRequest's RawExtensions.
type wireReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         requestSlot                    `json:"request"`
	Response        *admissionv1.AdmissionResponse `json:"response,omitempty"`
}

// requestSlot reads request into a wireRequest made beforehand (so that its object knows
// whether to decode directly), and remembers whether there was one: absent and null are no
// request.
type requestSlot struct {
	req     *wireRequest
	present bool
}

func (s *requestSlot) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		s.present = false
		return err
	}
	s.present = true
	return jsonv2.UnmarshalDecode(dec, s.req, strict)
}

type wireRequest struct {
	admissionv1.AdmissionRequest `json:",inline"`
	Object                       wireObject `json:"object,omitempty"`
	OldObject                    wireObject `json:"oldObject,omitempty"`
}

// wireObject reads request.object. With direct set and request.kind a workload kind already
// read, a JSON object is decoded straight into its typed object; anything else is kept as raw
// JSON (null as no JSON at all, as RawExtension reads it).
type wireObject struct {
	direct *wireRequest
	raw    []byte
	obj    runtime.Object
}

func (o *wireObject) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if o.direct != nil && dec.PeekKind() == '{' {
		if obj, _ := newWorkloadObject(o.direct.Kind.Kind); obj != nil {
			o.obj = obj
			return jsonv2.UnmarshalDecode(dec, obj, strict)
		}
	}
	// Duplicate names inside the object are left for WorkloadOf to find and report as the
	// object's (the review around it is sound, and its uid can be answered with a refusal).
	var v jsontext.Value
	if err := jsonv2.UnmarshalDecode(dec, &v, jsontext.AllowDuplicateNames(true)); err != nil || v.Kind() == 'n' {
		return err
	}
	o.raw = bytes.Clone(v)
	return nil
}

func decodeReview(body []byte, direct bool) (*admissionv1.AdmissionReview, error) {
	fail := func(field, reason string) (*admissionv1.AdmissionReview, error) {
		return nil, &DecodeError{What: "AdmissionReview", Field: field, Reason: reason, Err: ErrMalformed}
	}
	if len(body) > MaxReviewBytes {
		return nil, &DecodeError{What: "AdmissionReview", Err: ErrTooLarge,
			Reason: fmt.Sprintf("body is %d bytes, more than the %d allowed", len(body), MaxReviewBytes)}
	}
	if err := jsonObject(body); err != nil {
		return fail("", err.Error())
	}
	wreq := &wireRequest{}
	if direct {
		wreq.Object.direct = wreq
	}
	in := wireReview{Request: requestSlot{req: wreq}}
	if err := decodeStrict("AdmissionReview", body, &in); err != nil {
		return nil, err
	}
	review := &admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: in.Response}
	if in.Request.present {
		review.Request = &wreq.AdmissionRequest
		review.Request.Object = runtime.RawExtension{Raw: wreq.Object.raw, Object: wreq.Object.obj}
		review.Request.OldObject = runtime.RawExtension{Raw: wreq.OldObject.raw}
	}
	if err := checkReview(review); err != nil {
		return nil, err
	}
	return review, nil
}

// checkReview checks that a decoded review is a request this webhook can answer.
func checkReview(review *admissionv1.AdmissionReview) error {
	fail := func(field, reason string) error {
		return &DecodeError{What: "AdmissionReview", Field: field, Reason: reason, Err: ErrMalformed}
	}
	switch {
	case review.APIVersion == "":
		return fail("apiVersion", "missing; want "+strconv.Quote(reviewAPIVersion))
	case review.APIVersion != reviewAPIVersion:
		return fail("apiVersion", strconv.Quote(review.APIVersion)+" is not supported; want "+
			strconv.Quote(reviewAPIVersion)+" (set admissionReviewVersions: [\"v1\"] in the webhook configuration)")
	case review.Kind != "AdmissionReview":
		return fail("kind", strconv.Quote(review.Kind)+"; want \"AdmissionReview\"")
	case review.Response != nil:
		return fail("response", "a review sent to the webhook must not carry a response")
	case review.Request == nil:
		return fail("request", "missing")
	}
	req := review.Request
	switch {
	case req.UID == "":
		return fail("request.uid", "missing")
	case req.Kind.Kind == "" || req.Kind.Version == "":
		return fail("request.kind", "missing kind or version")
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
		if req.Object.Object == nil {
			if err := jsonObject(req.Object.Raw); err != nil {
				return fail("request.object", err.Error())
			}
		}
		if req.Operation == admissionv1.Update {
			if err := jsonObject(req.OldObject.Raw); err != nil {
				return fail("request.oldObject", err.Error())
			}
		}
	case admissionv1.Delete, admissionv1.Connect:
	case "":
		return fail("request.operation", "missing")
	default:
		return fail("request.operation", strconv.Quote(string(req.Operation))+" is not one of CREATE, UPDATE, DELETE, CONNECT")
	}
	return nil
}
