package policy_test

import (
	"slices"
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
)

func detectionDoc(name, spec string) string {
	return "---\napiVersion: rampart.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: " + name + "}\nspec:\n" + spec
}

func parseDetection(docs ...string) (*policy.Policy, error) {
	src := settingsDoc + groupDoc("a", "x") + strings.Join(docs, "")
	return policy.Parse([]policy.File{{Name: "d.yaml", Data: []byte(src)}})
}

func TestDetectionRuleParsed(t *testing.T) {
	p, err := parseDetection(
		detectionDoc("z-bulk", `  description: bulk reads
  severity: high
  mitre: [T1530, T1078.004]
  condition: 'event.code == "weights.read" && !event.failed'
  group_by: [actor]
  threshold: {count: 20, window: 10m}
`),
		detectionDoc("a-seq", `  severity: medium
  sequence: {within: 1h, steps: ['event.code == "egress.denied"', 'event.code in ["request.create", "request.approve"]']}
  group_by: [actor]
  response: {mode: dry-run, actions: [revoke_sessions]}
`),
		detectionDoc("m-any", `  severity: low
  condition: 'event.failed || event.code == "x"'
  enabled: false
  dedup: 0s
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.DetectionRules {
		names = append(names, r.Name)
	}
	if !slices.Equal(names, []string{"a-seq", "m-any", "z-bulk"}) {
		t.Fatalf("rules %v, want sorted by name", names)
	}
	seq, anyr, bulk := p.DetectionRules[0], p.DetectionRules[1], p.DetectionRules[2]
	if !slices.Equal(bulk.Codes(), []string{"weights.read"}) || !bulk.Enabled || bulk.Dedup.Std().Minutes() != 10 {
		t.Errorf("bulk: codes %v enabled %v dedup %v", bulk.Codes(), bulk.Enabled, bulk.Dedup)
	}
	if !slices.Equal(seq.Codes(), []string{"egress.denied", "request.approve", "request.create"}) || seq.Response.Mode != policy.ResponseDryRun {
		t.Errorf("seq: codes %v mode %q", seq.Codes(), seq.Response.Mode)
	}
	if anyr.Codes() != nil || anyr.Enabled || anyr.Dedup != 0 || anyr.Response.Mode != policy.ResponseOff {
		t.Errorf("any: codes %v enabled %v dedup %v mode %q", anyr.Codes(), anyr.Enabled, anyr.Dedup, anyr.Response.Mode)
	}
	if bulk.Digest == "" || bulk.Digest == seq.Digest {
		t.Errorf("digests %q %q", bulk.Digest, seq.Digest)
	}
	if d := p.Detection(); d.MaxActionsPerHour != policy.DefaultMaxActionsPerHour {
		t.Errorf("max actions %d", d.MaxActionsPerHour)
	}
}

// A rule that cannot work is refused at load, at file:line:col, like every policy error.
func TestDetectionRuleRefused(t *testing.T) {
	for _, tc := range []struct{ name, spec, want string }{
		{"CEL error", "  severity: high\n  condition: 'event.code == '\n", "d.yaml:16:3: spec.condition: CEL: ERROR"},
		{"misspelled field", "  severity: high\n  condition: 'event.cod == \"x\"'\n", "spec.condition: CEL: ERROR: <input>:1:6: undefined field 'cod'"},
		{"not bool", "  severity: high\n  condition: 'event.code'\n", "must be true or false, but it gives string"},
		{"no condition", "  severity: high\n", "spec.condition: condition is required"},
		{"unknown field", "  severity: high\n  condition: 'true'\n  thresold: {count: 1}\n", `field "thresold"`},
		{"two kinds", "  severity: high\n  condition: 'true'\n  threshold: {count: 2, window: 1m}\n  baseline: {bucket: 1h, factor: 3}\n", "at most one of threshold, sequence, baseline"},
		{"bad duration", "  severity: high\n  condition: 'true'\n  threshold: {count: 2, window: 10 minutes}\n", "is not a duration"},
		{"no window", "  severity: high\n  condition: 'true'\n  threshold: {count: 2}\n", "spec.threshold.window: window is required"},
		{"unknown action", "  severity: high\n  condition: 'true'\n  response: {mode: on, actions: [nuke]}\n", `action "nuke" is not one of`},
		{"mode without action", "  severity: high\n  condition: 'true'\n  response: {mode: on}\n", "needs at least one action"},
		{"bad severity", "  severity: dire\n  condition: 'true'\n", `severity "dire" is not one of`},
		{"bad mitre", "  severity: high\n  mitre: [T15]\n  condition: 'true'\n", `"T15" is not an ATT&CK technique id`},
		{"bad group_by", "  severity: high\n  condition: 'true'\n  group_by: [actr]\n", `"actr" is not an event field`},
		{"sum of a string", "  severity: high\n  condition: 'true'\n  threshold: {sum: actor, over: 5, window: 1m}\n", `"actor" is not a number`},
		{"one step", "  severity: high\n  sequence: {within: 1m, steps: ['true']}\n", "a sequence has 2 to 10 steps"},
		{"bad step", "  severity: high\n  sequence: {within: 1m, steps: ['true', 'event.nope']}\n", "spec.sequence.steps[1]: CEL: ERROR"},
		{"baseline factor", "  severity: high\n  condition: 'true'\n  baseline: {bucket: 1h, factor: 0.5}\n", "factor is required and must be at least 1"},
	} {
		_, err := parseDetection(detectionDoc("r", tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got\n%v\nwant it to contain %q", tc.name, err, tc.want)
		}
	}
}

// The code prefilter is exactly what the condition pins: a rule is skipped for a code only
// when it could not match an event of that code.
func TestDetectionPinnedCodes(t *testing.T) {
	for _, tc := range []struct {
		cond string
		want []string
	}{
		{`event.code == "a"`, []string{"a"}},
		{`"a" == event.code && event.actor == "x"`, []string{"a"}},
		{`event.code in ["b", "a", "b"]`, []string{"a", "b"}},
		{`event.code == "a" || event.code == "b"`, []string{"a", "b"}},
		{`event.code == "a" || event.failed`, nil},
		{`!(event.code == "a")`, nil},
		{`event.code != "a"`, nil},
		{`event.code.startsWith("a")`, nil},
		{`event.actor == "a"`, nil},
		{`(event.code == "a" || event.code == "b") && event.code == "a"`, []string{"a"}},
	} {
		p, err := parseDetection(detectionDoc("r", "  severity: low\n  condition: '"+tc.cond+"'\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.cond, err)
		}
		if got := p.DetectionRules[0].Codes(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: codes %v, want %v", tc.cond, got, tc.want)
		}
	}
}

// FuzzDetectionRule: whatever a rule document holds, Parse returns a policy or an error and
// never panics; an accepted rule's condition evaluates without panicking.
func FuzzDetectionRule(f *testing.F) {
	f.Add("  severity: high\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  threshold: {count: 3, window: 1m}\n")
	f.Add("  severity: low\n  sequence: {within: 1h, steps: ['event.failed', 'event.code == \"x\"']}\n")
	f.Add("  severity: low\n  condition: 'event.details.x == 1'\n  baseline: {bucket: 1h, factor: 2, min: 1}\n")
	f.Add("  severity: low\n  condition: 'size(event.resources) > 2'\n  threshold: {distinct: resources, count: 2, window: 1m}\n")
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := parseDetection(detectionDoc("r", spec))
		if err != nil {
			return
		}
		act := &policy.EventActivation{Event: &policy.DetectionEvent{Code: "x", Details: map[string]any{"x": 1.0}}}
		for _, r := range p.DetectionRules {
			if r.Sequence != nil {
				for i := range r.Sequence.Steps {
					_, _ = r.MatchStep(i, act)
				}
				continue
			}
			_, _ = r.Match(act)
		}
	})
}

// A policy change that makes detection watch less is reported as weakening: a rule disabled,
// its threshold raised, a rule removed. (Policy changes need approval whatever they do; the
// diff tells the approvers what they approve.)
func TestDetectionRuleChangesJudged(t *testing.T) {
	rule := func(spec string) string { return detectionDoc("bulk", spec) }
	base := "  severity: high\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  threshold: {count: 20, window: 10m}\n"
	old, err := parseDetection(rule(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, doc, field string }{
		{"disabled", rule(base + "  enabled: false\n"), "enabled"},
		{"threshold raised", rule(strings.Replace(base, "count: 20", "count: 200", 1)), "threshold.count"},
		{"window shortened", rule(strings.Replace(base, "window: 10m", "window: 1m", 1)), "threshold.window"},
		{"removed", "", ""},
	} {
		n, err := parseDetection(tc.doc)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, c := range policy.Compare(old, n).Changes {
			if c.Kind == "detection_rule" && c.Name == "bulk" && c.Field == tc.field && c.Verdict == policy.Weakened {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: not reported as weakening: %+v", tc.name, policy.Compare(old, n).Changes)
		}
	}
}
