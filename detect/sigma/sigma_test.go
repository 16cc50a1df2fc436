package sigma

import (
	"strings"
	"testing"
)

func convertOne(t *testing.T, src string) Rule {
	t.Helper()
	rules, err := Convert([]File{{Name: "rule.yml", Data: []byte(src)}}, DefaultMapping())
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	if len(rules) != 1 {
		t.Fatalf("got %d rules, want 1", len(rules))
	}
	return rules[0]
}

func TestConvert(t *testing.T) {
	for _, tc := range []struct {
		name, src, cond string
		match, miss     []testEvent
	}{{
		name: "map, list of values, modifiers",
		src: `
title: Bulk weight reads
logsource: {product: rampart}
detection:
  sel:
    EventCode: weights.read
    User|startswith: [svc-, ci-]
  condition: sel
`,
		cond:  `(event.code == "weights.read" && (event.actor.startsWith("svc-") || event.actor.startsWith("ci-")))`,
		match: []testEvent{{Code: "weights.read", Actor: "svc-train"}, {Code: "weights.read", Actor: "ci-1"}},
		miss:  []testEvent{{Code: "weights.read", Actor: "alice"}, {Code: "weights.put", Actor: "svc-x"}},
	}, {
		name: "case-insensitive by default, code lowered, cased kept",
		src: `
title: t
detection:
  sel:
    EventCode: Weights.READ
    User: Alice
    Message|cased|contains: Frontier
  condition: sel
`,
		cond:  `(event.code == "weights.read" && event.actor == "alice" && event.message.contains("Frontier"))`,
		match: []testEvent{{Code: "weights.read", Actor: "alice", Message: "the Frontier model"}},
		miss:  []testEvent{{Code: "weights.read", Actor: "alice", Message: "the frontier model"}, {Code: "weights.read", Actor: "bob", Message: "the Frontier model"}},
	}, {
		name: "wildcards, list of maps, not, 1 of, all of",
		src: `
title: t
detection:
  sel_a:
    - EventCode: grant.break_glass
    - EventCode: weights.read
      Resource: 'frontier/*/ckpt-?'
  sel_b:
    dst_host|endswith: .example
  filter:
    User: [alice, bob]
  condition: 1 of sel_* and not filter
`,
		match: []testEvent{{Code: "grant.break_glass", Actor: "carol"}, {Code: "weights.read", Resources: []string{"x", "frontier/m7/ckpt-3"}, Actor: "carol"}, {Code: "x", DstHost: "a.example"}},
		miss:  []testEvent{{Code: "grant.break_glass", Actor: "alice"}, {Code: "weights.read", Resources: []string{"frontier/m7/ckpt-33"}}},
	}, {
		name: "all modifier, keywords, ints, bools, exists",
		src: `
title: t
detection:
  sel:
    Message|contains|all: [weights, night]
    dst_port: [443, 8443]
    failed: false
    details.grant_id|exists: true
  kw:
    - exfil
  condition: sel or kw
`,
		match: []testEvent{{Message: "Weights read at NIGHT", DstPort: 8443, Details: map[string]any{"grant_id": "g"}}, {Message: "big EXFIL here"}},
		miss:  []testEvent{{Message: "weights read", DstPort: 443, Details: map[string]any{"grant_id": "g"}}, {Message: "weights night", DstPort: 443}, {Message: "weights night", DstPort: 443, Failed: true, Details: map[string]any{"grant_id": "g"}}},
	}, {
		name: "details typed, numbers, re, cidr",
		src: `
title: t
detection:
  sel:
    unmapped.tier: critical
    unmapped.size|gte: 1000
    SourceIp|cidr: 10.16.0.0/12
    dst_host|re|i: '^[a-z]+\.EVIL$'
  condition: all of them
`,
		match: []testEvent{{SrcIP: "10.31.2.3", DstHost: "x.evil", Details: map[string]any{"tier": "Critical", "size": 1000.0}}},
		miss: []testEvent{
			{SrcIP: "10.32.2.3", DstHost: "x.evil", Details: map[string]any{"tier": "critical", "size": 1000.0}},
			{SrcIP: "10.16.0.1", DstHost: "x.evil", Details: map[string]any{"tier": 7.0, "size": 1000.0}},
			{SrcIP: "10.16.0.1", DstHost: "x.evil", Details: map[string]any{"tier": "critical", "size": "2000"}},
			{SrcIP: "10.16.0.1", DstHost: "x.evil", Details: map[string]any{"size": 5000.0}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := convertOne(t, tc.src)
			if tc.cond != "" && r.Spec.Condition != tc.cond {
				t.Errorf("condition\n got %s\nwant %s", r.Spec.Condition, tc.cond)
			}
			m := compile(t, r.Spec.Condition)
			for i, e := range tc.match {
				if !m(e) {
					t.Errorf("event %d %+v does not match %s", i, e, r.Spec.Condition)
				}
			}
			for i, e := range tc.miss {
				if m(e) {
					t.Errorf("event %d %+v matches %s", i, e, r.Spec.Condition)
				}
			}
		})
	}
}

func TestConvertThreshold(t *testing.T) {
	r := convertOne(t, `
title: Many checkpoint reads
id: 0f4e8d0e-1111-4222-8333-944455556666
level: high
tags: [attack.exfiltration, attack.t1530, attack.T1078.004]
logsource: {product: rampart, service: weights}
detection:
  sel:
    EventCode: weights.read
  timeframe: 10m
  condition: sel | count(Resource) by User > 3
`)
	if r.Metadata.Name != "many-checkpoint-reads" || r.Spec.Severity != "high" {
		t.Errorf("name/severity %q %q", r.Metadata.Name, r.Spec.Severity)
	}
	if strings.Join(r.Spec.Mitre, ",") != "T1530,T1078.004" {
		t.Errorf("mitre %v", r.Spec.Mitre)
	}
	th := r.Spec.Threshold
	if th == nil || th.Count != 4 || th.Distinct != "resources" || th.Window != "10m" || strings.Join(r.Spec.GroupBy, ",") != "actor" {
		t.Errorf("threshold %+v group_by %v", th, r.Spec.GroupBy)
	}
	if r.Spec.Condition != `event.code.startsWith("weights.") && event.code == "weights.read"` {
		t.Errorf("condition %s", r.Spec.Condition)
	}

	r = convertOne(t, `
title: egress volume
detection:
  sel: {EventCode: egress.transfer}
  timeframe: 1d
  condition: sel | sum(bytes_out) by User >= 1000
`)
	if th := r.Spec.Threshold; th == nil || th.Sum != "bytes_out" || th.Over != 999 || th.Window != "24h" {
		t.Errorf("sum threshold %+v", th)
	}
	r = convertOne(t, `
title: many denials
detection:
  sel: {EventCode: egress.denied}
  timeframe: 90s
  condition: sel | count() >= 20
`)
	if th := r.Spec.Threshold; th == nil || th.Count != 20 || th.Window != "90s" || r.Spec.GroupBy != nil {
		t.Errorf("count threshold %+v", th)
	}
	out, err := Marshal([]Rule{r})
	if err != nil {
		t.Fatal(err)
	}
	want := `# Converted from Sigma rule.yml by rampart detect sigma; convert again rather than editing.
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata:
    name: many-denials
spec:
    description: many denials
    severity: medium
    condition: event.code == "egress.denied"
    threshold:
        count: 20
        window: 90s
`
	if string(out) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", out, want)
	}
}

// TestUnsupportedRefused: every construct outside the supported subset is an error naming the
// file, the line and column, and what to do; nothing is dropped.
func TestUnsupportedRefused(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"title: t\ndetection:\n  sel:\n    User|base64: x\n  condition: sel\n", `rule.yml:4:5: modifier "base64" is not supported`},
		{"title: t\ndetection:\n  sel:\n    Image: x\n  condition: sel\n", `rule.yml:4:5: Sigma field "Image" has no mapping`},
		{"title: t\nlogsource: {product: windows}\ndetection:\n  sel: {User: x}\n  condition: sel\n", `rule.yml:2:22: logsource product "windows" is not one Rampart has`},
		{"title: t\nlogsource: {service: sysmon}\ndetection:\n  sel: {User: x}\n  condition: sel\n", `logsource service "sysmon" is not mapped`},
		{"title: t\ndetection:\n  sel: {User: x}\n  condition: sel | near other\n", `rule.yml:4:14: condition "sel | near other" does not parse`},
		{"title: t\ndetection:\n  sel: {User: x}\n  condition: sel | count() > 3\n", `needs a timeframe`},
		{"title: t\ndetection:\n  sel: {User: x}\n  timeframe: 5m\n  condition: sel\n", `timeframe without an aggregation`},
		{"title: t\ndetection:\n  sel: {User: x}\n  timeframe: 5m\n  condition: sel | count() < 3\n", `not on its absence`},
		{"title: t\ndetection:\n  sel: {User: x}\n  timeframe: 5m\n  condition: sel | max(bytes_out) > 3\n", `aggregation sigma.Max is not supported`},
		{"title: t\ndetection:\n  sel: {User: x}\n  timeframe: 1M\n  condition: sel | count() > 3\n", `the unit is s, m, h or d`},
		{"title: t\ndetection:\n  sel: {User: x}\n  condition: sel and other\n", `"other" is not a search of this rule`},
		{"title: t\ndetection:\n  sel: {User: x}\n  condition: 1 of foo*\n", `no search matches "foo*"`},
		{"title: t\ndetection:\n  sel: {dst_port|contains: 4}\n  condition: sel\n", `this field holds a number; |contains applies to text`},
		{"title: t\ndetection:\n  sel: {dst_port: abc}\n  condition: sel\n", `"abc" is not one`},
		{"title: t\ndetection:\n  sel: {User|re: '(?=x)'}\n  condition: sel\n", `does not compile in RE2`},
		{"title: t\ndetection:\n  sel: {src_ip|cidr: 'fe80::/10'}\n  condition: sel\n", `only IPv4 prefixes`},
		{"title: t\ndetection:\n  sel: {User: {a: b}}\n  condition: sel\n", `a value is a scalar or a list of scalars, not a map`},
		{"title: t\ndetection:\n  sel: {User: []}\n  condition: sel\n", `the list of values is empty`},
		{"title: t\naction: global\ndetection:\n  sel: {User: x}\n  condition: sel\n", `multi-part`},
		{"title: t\ndetection:\n  sel: &a {User: x}\n  other: *a\n  condition: sel\n", `anchors and aliases`},
		{"detection:\n  sel: {User: x}\n  condition: sel\n", `title is required`},
		{"title: t\ndetection:\n  sel: {User: x}\n", `detection has no condition`},
		{"title: t\nlevel: urgent\ndetection:\n  sel: {User: x}\n  condition: sel\n", `level "urgent" is not one of`},
		{"title: t\ndetection:\n  sel: {User|contains|startswith: x}\n  condition: sel\n", `do not go together`},
		{"title: t\ndetection:\n  sel: {failed: maybe}\n  condition: sel\n", `takes true or false`},
	} {
		_, err := Convert([]File{{Name: "rule.yml", Data: []byte(tc.src)}}, DefaultMapping())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant an error containing %q", tc.src, err, tc.want)
		}
	}
}

func TestDuplicateNamesRefused(t *testing.T) {
	src := []byte("title: Same\ndetection:\n  sel: {User: x}\n  condition: sel\n")
	_, err := Convert([]File{{Name: "a.yml", Data: src}, {Name: "b.yml", Data: src}}, DefaultMapping())
	if err == nil || !strings.Contains(err.Error(), `b.yml: rule "same" has the same name as the rule from a.yml`) {
		t.Fatalf("got %v", err)
	}
}

func TestMapping(t *testing.T) {
	m, err := ParseMapping("map.yml", []byte("fields:\n  Image: details.image\n  Who: user\nservices:\n  vaultd: weights.\n"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Convert([]File{{Name: "r.yml", Data: []byte("title: t\nlogsource: {service: vaultd}\ndetection:\n  sel: {Image|endswith: .exe, Who: bob, User: carol}\n  condition: sel\n")}}, m)
	if err != nil {
		t.Fatal(err)
	}
	match := compile(t, r[0].Spec.Condition)
	if !match(testEvent{Code: "weights.read", User: "bob", Actor: "carol", Details: map[string]any{"image": "x.EXE"}}) {
		t.Errorf("no match: %s", r[0].Spec.Condition)
	}
	if _, err := ParseMapping("map.yml", []byte("fields:\n  Image: imagez\n")); err == nil || !strings.Contains(err.Error(), `map.yml:2:10: fields.Image: "imagez" is not an event field`) {
		t.Errorf("bad target: %v", err)
	}
	if _, err := ParseMapping("map.yml", []byte("field:\n  Image: user\n")); err == nil || !strings.Contains(err.Error(), "map.yml:1:1") {
		t.Errorf("unknown key: %v", err)
	}
	m, err = ParseMapping("map.yml", []byte("replace: true\nfields: {Who: user}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Convert([]File{{Name: "r.yml", Data: []byte("title: t\ndetection:\n  sel: {User: carol}\n  condition: sel\n")}}, m); err == nil {
		t.Errorf("replace: true kept the default mapping of User")
	}
}

// FuzzParseMapping: any mapping file is a mapping whose targets are event fields or details
// keys, or an error; never a panic.
func FuzzParseMapping(f *testing.F) {
	f.Add([]byte("fields:\n  Image: details.image\n  Who: user\nservices:\n  vaultd: weights.\n"))
	f.Add([]byte("replace: true\nkeywords: message\nproducts: [x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMapping("m.yml", data)
		if err != nil {
			return
		}
		for k, v := range m.Fields {
			if _, _, ok := m.target(k); !ok {
				t.Fatalf("field %q maps to %q, which is not a target", k, v)
			}
		}
	})
}
