package detect_test

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"testing"
	"time"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/policy"
)

// reference is a brute-force evaluator of threshold and sequence rules: it keeps every matching
// event and recomputes each window and each chain from scratch. The engine's incremental state
// (sliding windows, running sums, distinct counts, latest-start partial chains) must agree with
// it on every event.
type reference struct {
	r        *policy.DetectionRule
	now      time.Time
	hist     map[string][]refItem
	lastFire map[string]time.Time
}

type refItem struct {
	t       time.Time
	seq     int64
	bytes   int64
	vals    []string
	matched []bool // sequence: the steps the event matched
}

type refFiring struct {
	Key         string
	Evidence    []int64
	Count       int
	First, Last time.Time
}

func newReference(r *policy.DetectionRule) *reference {
	return &reference{r: r, hist: map[string][]refItem{}, lastFire: map[string]time.Time{}}
}

func (ref *reference) process(ev detect.Event) *refFiring {
	r := ref.r
	act := &policy.EventActivation{Event: &ev}
	if r.Condition != "" {
		if ok, _ := r.Match(act); !ok {
			return nil
		}
	}
	var matched []bool
	if r.Sequence != nil {
		any := false
		for i := range r.Sequence.Steps {
			ok, _ := r.MatchStep(i, act)
			matched = append(matched, ok)
			any = any || ok
		}
		if !any {
			return nil
		}
	}
	if ev.Time.After(ref.now) {
		ref.now = ev.Time
	}
	t := ref.now
	key := detect.Key(r.GroupBy, &ev)
	ref.hist[key] = append(ref.hist[key], refItem{t: t, seq: ev.Seq, bytes: ev.BytesOut, vals: ev.Resources, matched: matched})
	h := ref.hist[key]
	var f *refFiring
	switch {
	case r.Threshold != nil:
		th := r.Threshold
		var win []refItem
		for _, it := range h {
			if it.t.After(t.Add(-th.Window.Std())) {
				win = append(win, it)
			}
		}
		var sum int64
		distinct := map[string]bool{}
		for _, it := range win {
			sum += it.bytes
			for _, v := range it.vals {
				distinct[v] = true
			}
		}
		hit := len(win) >= th.Count
		if th.Sum != "" {
			hit = sum > th.Over
		} else if th.Distinct != "" {
			hit = len(distinct) >= th.Count
		}
		if hit {
			f = &refFiring{Key: key, Count: len(win), First: win[0].t, Last: t}
			for _, it := range win[max(0, len(win)-detect.MaxEvidence):] {
				f.Evidence = append(f.Evidence, it.seq)
			}
		}
	case r.Sequence != nil:
		n := len(r.Sequence.Steps)
		if !matched[n-1] {
			break
		}
		// best[i][j]: the latest start of a chain of steps 0..j ending at history item i.
		last := len(h) - 1
		best := make([][]*time.Time, len(h))
		for i := range h {
			best[i] = make([]*time.Time, n)
			for j := 0; j < n; j++ {
				if !h[i].matched[j] || (j == n-1 && i != last) {
					continue
				}
				if j == 0 {
					ti := h[i].t
					best[i][0] = &ti
					continue
				}
				for k := 0; k < i; k++ {
					if s := best[k][j-1]; s != nil && (best[i][j] == nil || s.After(*best[i][j])) {
						best[i][j] = s
					}
				}
			}
		}
		if s := best[last][n-1]; s != nil && t.Sub(*s) <= r.Sequence.Within.Std() {
			f = &refFiring{Key: key, Count: n, First: *s, Last: t, Evidence: []int64{ev.Seq}}
		}
	}
	if f == nil {
		return nil
	}
	if lf, ok := ref.lastFire[key]; ok && t.Before(lf.Add(r.Dedup.Std())) {
		return nil
	}
	ref.lastFire[key] = t
	return f
}

// TestEngineAgreesWithReference runs random event streams through random threshold and
// sequence rules, in the engine and in the brute-force reference, and compares every firing.
func TestEngineAgreesWithReference(t *testing.T) {
	specs := []string{
		"  severity: low\n  condition: 'event.code == \"a\"'\n  group_by: [actor]\n  threshold: {count: %[1]d, window: %[2]ds}\n  dedup: %[3]ds\n",
		"  severity: low\n  condition: 'event.code in [\"a\", \"b\"]'\n  group_by: [actor]\n  threshold: {sum: bytes_out, over: %[4]d, window: %[2]ds}\n  dedup: %[3]ds\n",
		"  severity: low\n  condition: 'event.code == \"b\"'\n  group_by: [user]\n  threshold: {distinct: resources, count: %[1]d, window: %[2]ds}\n  dedup: %[3]ds\n",
		"  severity: low\n  condition: 'true'\n  threshold: {count: %[1]d, window: %[2]ds}\n  dedup: %[3]ds\n",
		"  severity: low\n  group_by: [actor]\n  sequence: {within: %[2]ds, steps: ['event.code == \"a\"', 'event.code == \"b\"']}\n  dedup: %[3]ds\n",
		"  severity: low\n  group_by: [actor]\n  sequence: {within: %[2]ds, steps: ['event.code == \"a\"', 'event.code != \"c\"', 'event.code == \"c\"']}\n  dedup: %[3]ds\n",
		"  severity: low\n  condition: 'event.user != \"u0\"'\n  group_by: [actor, user]\n  sequence: {within: %[2]ds, steps: ['event.failed', 'event.code == \"a\"', 'event.code == \"a\"']}\n  dedup: %[3]ds\n",
	}
	rng := rand.New(rand.NewSource(17))
	firings := 0
	for round := 0; round < 400; round++ {
		count, window, dedup, over := 1+rng.Intn(4), 1+rng.Intn(20), rng.Intn(3)*rng.Intn(15), 1+rng.Intn(3000)
		spec := fmt.Sprintf(specs[round%len(specs)], count, window, dedup, over)
		rs := rules(t, spec)
		e, err := detect.NewEngine(rs, detect.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ref := newReference(rs[0])
		now := t0
		for i := 0; i < 80; i++ {
			now = now.Add(time.Duration(rng.Intn(4000)-500) * time.Millisecond) // sometimes backwards
			ev := detect.Event{Seq: int64(i + 1), Time: now, Code: string(rune('a' + rng.Intn(3))),
				Actor: fmt.Sprint("x", rng.Intn(3)), User: fmt.Sprint("u", rng.Intn(2)), Failed: rng.Intn(3) == 0,
				BytesOut: int64(rng.Intn(1000)), Resources: []string{fmt.Sprint("m", rng.Intn(5))}}
			want := ref.process(ev)
			got := e.Process(ev)
			if (want == nil) != (len(got) == 0) || len(got) > 1 {
				t.Fatalf("round %d (%s) event %d %+v: engine %+v, reference %+v", round, spec, i, ev, got, want)
			}
			if want == nil {
				continue
			}
			firings++
			g := got[0]
			gotF := refFiring{Key: g.Key, Evidence: g.Evidence, Count: g.Count, First: g.First, Last: g.Last}
			if rs[0].Sequence != nil {
				gotF.Evidence = g.Evidence[len(g.Evidence)-1:]
			}
			if !reflect.DeepEqual(gotF, *want) {
				t.Fatalf("round %d (%s) event %d: engine %+v, reference %+v", round, spec, i, gotF, *want)
			}
		}
	}
	if firings < 1000 {
		t.Errorf("only %d firings compared; the generator is too tame to test anything", firings)
	}
}

// Snapshot and Restore carry all state: an engine restored from a snapshot taken mid-stream
// fires exactly as the engine that ran through, and snapshots of the same history are equal.
func TestSnapshotRestoreMidStream(t *testing.T) {
	specs := []string{
		"  severity: low\n  condition: 'event.code == \"a\"'\n  group_by: [actor]\n  threshold: {count: 3, window: 20s}\n",
		"  severity: low\n  condition: 'event.code == \"b\"'\n  group_by: [actor]\n  threshold: {distinct: resources, count: 2, window: 30s}\n",
		"  severity: low\n  group_by: [actor]\n  sequence: {within: 30s, steps: ['event.code == \"a\"', 'event.code == \"b\"', 'event.code == \"c\"']}\n",
		"  severity: low\n  condition: 'true'\n  group_by: [actor]\n  baseline: {bucket: 10s, factor: 2, min: 2, learning: 60s}\n",
		"  severity: low\n  condition: 'event.code == \"c\"'\n  group_by: [actor]\n  dedup: 15s\n",
	}
	rng := rand.New(rand.NewSource(3))
	var evs []detect.Event
	now := t0
	for i := 0; i < 2000; i++ {
		now = now.Add(time.Duration(rng.Intn(3000)) * time.Millisecond)
		evs = append(evs, detect.Event{Seq: int64(i + 1), Time: now, Code: string(rune('a' + rng.Intn(3))),
			Actor: fmt.Sprint("x", rng.Intn(4)), Resources: []string{fmt.Sprint("m", rng.Intn(5))}})
	}
	through := engine(t, specs...)
	var want []detect.Firing
	for _, ev := range evs {
		want = append(want, through.Process(ev)...)
	}
	for _, cut := range []int{0, 1, 777, 1999} {
		a := engine(t, specs...)
		var got []detect.Firing
		for _, ev := range evs[:cut] {
			got = append(got, a.Process(ev)...)
		}
		snap, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		b := engine(t, specs...)
		if err := b.Restore(snap); err != nil {
			t.Fatal(err)
		}
		again, _ := b.Snapshot()
		if string(again) != string(snap) {
			t.Fatalf("cut %d: the restored engine's snapshot differs", cut)
		}
		for _, ev := range evs[cut:] {
			got = append(got, b.Process(ev)...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("cut %d: %d firings after restore, %d straight through", cut, len(got), len(want))
		}
	}
	if len(want) < 50 {
		t.Fatalf("only %d firings", len(want))
	}
	// A changed rule's state is not restored into it.
	snap, _ := through.Snapshot()
	changed := engine(t, append(slices.Clone(specs[:4]), "  severity: low\n  condition: 'event.code == \"b\"'\n  group_by: [actor]\n  dedup: 15s\n")...)
	if err := changed.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if d := changed.Dropped(); !slices.Equal(d, []string{"r4"}) {
		t.Errorf("dropped %v, want [r4]", d)
	}
	if err := changed.Restore([]byte(`{"version": 9}`)); err == nil {
		t.Error("a snapshot of another version was restored")
	}
}
