package sigma

import (
	"testing"

	"rampart.dev/rampart/policy"
)

// testEvent is the subset of the detection event the tests set.
type testEvent struct {
	Code, Actor, User, Message, SrcIP, DstHost string
	DstPort                                    int
	BytesOut                                   int64
	Failed                                     bool
	Resources                                  []string
	Details                                    map[string]any
}

func load(cond string) (*policy.DetectionRule, error) {
	rs, err := Load([]Rule{{APIVersion: "rampart.dev/v1alpha1", Kind: "DetectionRule", Metadata: Metadata{Name: "t"},
		Spec: Spec{Severity: "low", Condition: cond}}})
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// compile loads cond and returns a matcher over test events.
func compile(t testing.TB, cond string) func(testEvent) bool {
	t.Helper()
	r, err := load(cond)
	if err != nil {
		t.Fatalf("condition does not load: %v\n%s", err, cond)
	}
	return func(e testEvent) bool {
		ev := &policy.DetectionEvent{Code: e.Code, Actor: e.Actor, User: e.User, Message: e.Message, SrcIP: e.SrcIP,
			DstHost: e.DstHost, DstPort: e.DstPort, BytesOut: e.BytesOut, Failed: e.Failed, Resources: e.Resources, Details: e.Details}
		var a policy.EventActivation
		a.Reset(ev)
		ok, err := r.Match(&a)
		if err != nil {
			t.Fatalf("evaluation failed: %v\n%s", err, cond)
		}
		return ok
	}
}
