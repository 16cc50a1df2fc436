package admission_test

import (
	"context"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/audit"
)

// An exec allowed into a pod that holds protected data is recorded (kube.exec, with what the
// pod holds and the grant that allowed it): detection watches it. An exec into a pod that holds
// nothing protected writes nothing.
func TestAllowedExecIntoProtectedPodRecorded(t *testing.T) {
	r := newRig(t)
	var recorded []audit.Event
	r.hook.Now = time.Now
	r.hook.Record = func(_ context.Context, e audit.Event) error { recorded = append(recorded, e); return nil }
	r.objs.pods["research/serve"] = withWeights(compliant("serve", "evaluator"))
	r.objs.pods["research/plain"] = compliant("plain", "")
	connect := func(name, who string) *admissionv1.AdmissionResponse {
		return r.review(admissionv1.AdmissionRequest{Operation: admissionv1.Connect, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"},
			SubResource: "exec", Name: name, UserInfo: user(who)}, nil, nil)
	}
	allowed(t, "exec into a plain pod", connect("plain", "oidc:alice"))
	if len(recorded) != 0 {
		t.Fatalf("an exec into a plain pod wrote %+v", recorded)
	}
	grant := r.grant("weights-debugger-frontier-7", "alice", "alice")
	allowed(t, "alice's exec", connect("serve", "oidc:alice"))
	if len(recorded) != 1 {
		t.Fatalf("recorded %+v, want one kube.exec", recorded)
	}
	e := recorded[0]
	if e.Code != "kube.exec" || e.Actor != "oidc:alice" || !slices.Equal(e.Resources, []string{"weights/frontier-7"}) || e.Details["subject"] != "alice" ||
		!slices.Equal(e.Details["grant_ids"].([]string), []string{grant}) || e.Details["name"] != "serve" || e.Details["subresource"] != "exec" {
		t.Fatalf("kube.exec entry: %+v", e)
	}
	if _, err := audit.Encode(1, e); err != nil {
		t.Fatal(err)
	}
}
