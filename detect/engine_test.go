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

func TestBaseline(t *testing.T) {
	e := engine(t, "  severity: medium\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  baseline: {bucket: 1h, factor: 3, min: 5, learning: 48h}\n")
	seq := int64(0)
	read := func(at time.Time, n int) []detect.Firing {
		var out []detect.Firing
		for i := 0; i < n; i++ {
			seq++
			out = append(out, e.Process(detect.Event{Seq: seq, Time: at.Add(time.Duration(i) * time.Second), Code: "weights.read", Actor: "alice"})...)
		}
		return out
	}
	// Day one: 6 reads in the first hour is above min, but there is nothing to compare with
	// while the rule learns: it is learnt.
	if f := read(t0, 6); len(f) != 0 {
		t.Fatalf("first hour: %+v", f)
	}
	// Three days of 2 reads an hour: usual, never fires. 20 in hour 10, during learning: a
	// firing marked learning.
	for h := 1; h < 72; h++ {
		n := 2
		if h == 10 {
			n = 20
		}
		f := read(t0.Add(time.Duration(h)*time.Hour), n)
		if h == 10 {
			if len(f) != 1 || !f[0].Learning || f[0].Count != 8 { // 8 > 3 × (6+2×9)/10
				t.Fatalf("hour 10: %+v", f)
			}
			continue
		}
		if len(f) != 0 {
			t.Fatalf("hour %d: %+v", h, f)
		}
	}
	// Then 7 reads in an hour: above 3 × ~2 and min 5, after learning: acted on.
	f := read(t0.Add(72*time.Hour), 7)
	if len(f) != 1 || f[0].Learning || f[0].Count != 7 || f[0].Subject != "alice" || len(f[0].Evidence) != 7 {
		t.Fatalf("spike: %+v", f)
	}
	// 6 is not above 3 × the mean (the mean includes the spike) — nothing.
	if f := read(t0.Add(73*time.Hour), 6); len(f) != 0 {
		t.Fatalf("after: %+v", f)
	}
}

func TestMaxKeysEvictsOldest(t *testing.T) {
	rs := rules(t, "  severity: low\n  condition: 'event.code == \"a\"'\n  group_by: [actor]\n  threshold: {count: 2, window: 1h}\n")
	e, err := detect.NewEngine(rs, detect.Options{MaxKeys: 2})
	if err != nil {
		t.Fatal(err)
	}
	ev := func(seq int64, actor string) []detect.Firing {
		return e.Process(detect.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Code: "a", Actor: actor})
	}
	ev(1, "x")
	ev(2, "y")
	ev(3, "x") // x fires (2 in window) and becomes the newest
	ev(4, "z") // evicts y, the oldest
	if f := ev(5, "y"); len(f) != 0 {
		t.Fatalf("y kept its state after eviction: %+v", f)
	}
	if s := e.Stats(); s.Evictions != 2 || s.Events != 5 {
		t.Errorf("stats %+v, want 2 evictions (y, then z or x)", s)
	}
}

// Hostile values cannot break evaluation: a condition that would work through huge lists stops
// at the cost limit (no match, counted), and the next event is evaluated as usual.
func TestHostileEventBounded(t *testing.T) {
	e := engine(t, "  severity: low\n  condition: 'event.resources.all(a, event.resources.all(b, a.size() + b.size() >= 0)) && event.code == \"x\"'\n  dedup: 0s\n")
	huge := make([]string, detect.MaxListItems)
	for i := range huge {
		huge[i] = strings.Repeat("\x1b", 100)
	}
	if f := e.Process(detect.Event{Seq: 1, Time: t0, Code: "x", Resources: huge}); len(f) != 0 {
		t.Errorf("fired on an evaluation over the cost limit: %+v", f)
	}
	if e.Stats().EvalErrors != 1 {
		t.Errorf("stats %+v", e.Stats())
	}
	if f := e.Process(detect.Event{Seq: 2, Time: t0, Code: "x", Resources: []string{"a"}}); len(f) != 1 {
		t.Errorf("no firing after a hostile event: %+v", f)
	}
}

// Keys are unambiguous: values holding the separator cannot collide with two other values.
func TestKeyEscapes(t *testing.T) {
	a := detect.Key([]string{"actor", "user"}, &detect.Event{Actor: "a|b", User: "c"})
	b := detect.Key([]string{"actor", "user"}, &detect.Event{Actor: "a", User: "b|c"})
	if a == b || a != `a\|b|c` {
		t.Errorf("keys %q and %q", a, b)
	}
	if k := detect.Key([]string{"details.n", "resources"}, &detect.Event{Details: map[string]any{"n": 2.0}, Resources: []string{"x", "y"}}); k != "2|x,y" {
		t.Errorf("key %q", k)
	}
}
