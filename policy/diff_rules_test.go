package policy

import "testing"

// TestDefinitionRulesCoverEveryField: a field added to a policy kind without a rule in
// definitionRules would be reported as WEAKENED whatever it does (fail safe); this test makes
// the author decide instead, and catches rules left for fields that no longer exist.
func TestDefinitionRulesCoverEveryField(t *testing.T) {
	kinds := map[string]any{
		"group": Group{}, "resource": Resource{}, "role": Role{}, "approval_policy": ApprovalPolicy{},
		"standing_binding": StandingBinding{}, "egress_policy": EgressPolicy{}, "workload": Workload{}, "settings": Settings{},
		"repository": Repository{}, "ci_issuer": CIIssuer{}, "pipeline": Pipeline{}, "detection_rule": DetectionRule{},
	}
	for kind, zero := range kinds {
		rules, ok := definitionRules[kind]
		if !ok {
			t.Errorf("definitionRules has no kind %s", kind)
			continue
		}
		fields := flatten(zero)
		for path := range fields {
			if _, ok := rules[path]; !ok {
				t.Errorf("%s field %s has no rule in definitionRules", kind, path)
			}
		}
		for path := range rules {
			if _, ok := fields[path]; !ok {
				t.Errorf("definitionRules has a rule for %s field %s, which does not exist", kind, path)
			}
		}
	}
	if len(kinds) != len(definitionRules) {
		t.Errorf("definitionRules has %d kinds, the test knows %d", len(definitionRules), len(kinds))
	}
}
