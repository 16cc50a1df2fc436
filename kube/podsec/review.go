package podsec

import (
	"fmt"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
)

const reviewAPIVersion = "admission.k8s.io/v1"

// DecodeAdmissionReview decodes an AdmissionReview request body. Only
// admission.k8s.io/v1 is accepted (configure the webhook with
// admissionReviewVersions: ["v1"]). Decoding is strict, as in WorkloadOf,
// and the review must be a request: request set with a uid, kind and
// operation, response unset, and for CREATE and UPDATE an object that is a
// JSON object (UPDATE also an oldObject). Bodies over MaxReviewBytes are
// refused. Errors are *DecodeError wrapping ErrMalformed or ErrTooLarge.
func DecodeAdmissionReview(body []byte) (*admissionv1.AdmissionReview, error) {
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
	var review admissionv1.AdmissionReview
	if field, reason := strictUnmarshal(body, &review); reason != "" {
		return fail(field, reason)
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
		if err := jsonObject(req.Object.Raw); err != nil {
			return fail("request.object", err.Error())
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
	return &review, nil
}
