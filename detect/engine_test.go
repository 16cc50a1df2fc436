package detect_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/policy"
)

const settings = "apiVersion: rampart.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {admin_group: admins}\n---\napiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: admins}\nspec: {members: [root]}\n"

// rules parses detection rule documents (name → spec lines) into rules.
func rules(t testing.TB, specs ...string) []*policy.DetectionRule {
	t.Helper()
	var b strings.Builder
	b.WriteString(settings)
	for i, s := range specs {
		fmt.Fprintf(&b, "---\napiVersion: rampart.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: r%d}\nspec:\n%s", i, s)
	}
	p, err := policy.Parse([]policy.File{{Name: "rules.yaml", Data: []byte(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	return p.DetectionRules
}

func engine(t testing.TB, specs ...string) *detect.Engine {
	t.Helper()
	e, err := detect.NewEngine(rules(t, specs...), detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func TestStatelessMatch(t *testing.T) {
	e := engine(t, "  severity: high\n  condition: 'event.code == \"weights.read\" && !event.failed'\n  group_by: [actor]\n  dedup: 0s\n")
	var got []int64
	for i, ev := range []detect.Event{
		{Code: "weights.read", Actor: "alice"},
		{Code: "weights.read", Actor: "alice", Failed: true},
		{Code: "request.create", Actor: "alice"},
		{Code: "detect.alert", Actor: "alice"},
		{Code: "weights.read", Actor: "bob"},
	} {
		ev.Seq, ev.Time = int64(i+1), t0.Add(time.Duration(i)*time.Second)
		for _, f := range e.Process(ev) {
			got = append(got, f.Evidence...)
			if f.Subject != ev.Actor || f.Key != ev.Actor || f.Severity != "high" {
				t.Errorf("firing %+v", f)
			}
		}
	}
	if fmt.Sprint(got) != "[1 5]" {
		t.Errorf("fired on %v, want [1 5]", got)
	}
}
