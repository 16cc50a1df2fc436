package sigma

import (
	"fmt"

	"rampart.dev/rampart/policy"
)

// checkDocs are the smallest policy the loader accepts around detection rules.
const checkDocs = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec: {admin_group: sigma-check}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: sigma-check}
spec: {members: [sigma-check]}
---
`

// Load loads converted rules through the policy loader, as the server would load them once
// committed: the rules, compiled, or the loader's error. Convert calls it on everything it
// returns, so a converted rule that does not load is an error here rather than at the server.
func Load(rules []Rule) ([]*policy.DetectionRule, error) {
	y, err := Marshal(rules)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse([]policy.File{{Name: "converted.yaml", Data: append([]byte(checkDocs), y...)}})
	if err != nil {
		return nil, err
	}
	if len(p.DetectionRules) != len(rules) {
		return nil, fmt.Errorf("%d rules loaded of %d", len(p.DetectionRules), len(rules))
	}
	return p.DetectionRules, nil
}
