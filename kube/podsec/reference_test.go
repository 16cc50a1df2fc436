package podsec

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	sigsjson "sigs.k8s.io/json"
)

// referenceDecode is the decoding the webhook did before DecodeReview, kept as the reference
// the differential tests hold DecodeReview to: sigs.k8s.io/json (what kube-apiserver decodes
// JSON with: encoding/json with case-sensitive names and strict-mode reports of unknown and
// duplicate fields), first the review with request.object as raw JSON, then the object. Its
// result is DecodeReview's contract: a nil review for a malformed review, a review and an error
// for a malformed object.
func referenceDecode(body []byte) (*admissionv1.AdmissionReview, Workload, error) {
	r, err := referenceEnvelope(body)
	if err != nil {
		return nil, Workload{}, err
	}
	if !hasObject(r.Request) {
		return r, Workload{}, nil
	}
	kind, raw := r.Request.Kind.Kind, r.Request.Object.Raw
	obj, _ := newWorkloadObject(kind)
	if obj == nil {
		return r, Workload{}, nil
	}
	if field, reason := referenceUnmarshal(raw, obj); reason != "" {
		return r, Workload{}, &DecodeError{What: kind, Field: field, Reason: reason, Err: ErrMalformed}
	}
	w, err := checkedWorkload(kind, obj)
	return r, w, err
}

// referenceEnvelope is decodeReview with the reference decoder; the checks after decoding are
// the production ones, applied to the same structure.
func referenceEnvelope(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(body) > MaxReviewBytes {
		return nil, &DecodeError{What: "AdmissionReview", Err: ErrTooLarge, Reason: "too large"}
	}
	if err := jsonObject(body); err != nil {
		return nil, &DecodeError{What: "AdmissionReview", Reason: err.Error(), Err: ErrMalformed}
	}
	var review admissionv1.AdmissionReview
	if field, reason := referenceUnmarshal(body, &review); reason != "" {
		return nil, &DecodeError{What: "AdmissionReview", Field: field, Reason: reason, Err: ErrMalformed}
	}
	if err := checkReview(&review); err != nil {
		return nil, err
	}
	return &review, nil
}

func referenceUnmarshal(raw []byte, v any) (field, reason string) {
	strictErrs, err := sigsjson.UnmarshalStrict(raw, v)
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return te.Field, fmt.Sprintf("a JSON %s cannot be a %s", te.Value, te.Type)
		}
		return "", strings.TrimPrefix(err.Error(), "json: ")
	}
	if len(strictErrs) == 0 {
		return "", ""
	}
	var fe sigsjson.FieldError
	if errors.As(strictErrs[0], &fe) {
		field = fe.FieldPath()
	}
	return field, strictErrs[0].Error()
}
