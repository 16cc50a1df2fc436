package admission_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// Anyone who may create pods, and any controller retrying a refused one, can have the webhook
// refuse at will (invariant 11): with the server's aggregation the same refusal (user,
// namespace, failed checks) is recorded once per window and counted after; another namespace
// is another source.
func TestRefusalsAggregated(t *testing.T) {
	pol := demoPolicy(t)
	var mu sync.Mutex
	var recorded []audit.Event
	rec := refusals.New(refusals.Options{Limits: func() refusals.Limits { return refusals.Limits{Window: time.Hour} },
		Record: func(_ context.Context, e audit.Event) error {
			mu.Lock()
			defer mu.Unlock()
			recorded = append(recorded, e)
			return nil
		}})
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: authz.New(nil, pol, authz.Options{}),
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}}, Refused: rec.Record}
	for range 100 {
		if _, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(podReview)); resp == nil || resp.Allowed {
			t.Fatalf("answer: %+v", resp)
		}
	}
	other := strings.ReplaceAll(podReview, `"research"`, `"sandbox"`)
	if _, resp := post(t, hook.Handler(), "/validate", "application/json", []byte(other)); resp == nil || resp.Allowed {
		t.Fatalf("answer: %+v", resp)
	}
	if len(recorded) != 2 || recorded[0].Code != "kube.admission.denied" || recorded[1].Details["namespace"] != "sandbox" {
		t.Fatalf("%d entries for 101 refusals in two namespaces, want 2: %+v", len(recorded), recorded)
	}
	if err := rec.FlushAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(recorded) != 3 || recorded[2].Extra["count"] != 99 {
		t.Fatalf("after the flush: %d entries, last %+v", len(recorded), recorded[len(recorded)-1])
	}
}
