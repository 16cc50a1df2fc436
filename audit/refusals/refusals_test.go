package refusals_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/internal/clocktest"
)

var epoch = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// ledger collects what a Recorder writes, encoding each entry as the real ledger would.
type ledger struct {
	t       *testing.T
	mu      sync.Mutex
	entries []audit.Event
	fail    bool
}

func (l *ledger) record(_ context.Context, e audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return errors.New("ledger unavailable")
	}
	if _, err := audit.Encode(int64(len(l.entries)), e); err != nil {
		l.t.Fatalf("an entry the ledger cannot encode: %v", err)
	}
	l.entries = append(l.entries, e)
	return nil
}

func (l *ledger) summaries() []audit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Event
	for _, e := range l.entries {
		if _, ok := e.Extra["count"]; ok {
			out = append(out, e)
		}
	}
	return out
}

func denied(who, res string) audit.Event {
	return audit.Event{Code: "weights.denied", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: audit.SeverityMedium, Time: epoch, Actor: who, Resources: []string{res}, Failed: true,
		Message: who + " may not read " + res}
}

func newRecorder(t *testing.T, lim refusals.Limits) (*refusals.Recorder, *ledger, *clocktest.Clock) {
	l := &ledger{t: t}
	clock := clocktest.New(epoch)
	return refusals.New(refusals.Options{Record: l.record, Now: clock.Now, Limits: func() refusals.Limits { return lim }}), l, clock
}

// 10,000 refusals of one source in one window: one entry at once, one summary with the count,
// written by the flush once the window has ended although no refusal came after.
func TestManyRefusalsOneSummary(t *testing.T) {
	ctx := context.Background()
	r, l, clock := newRecorder(t, refusals.Limits{Window: time.Minute})
	for i := range 10000 {
		out, err := r.Record(ctx, "user mallory", denied("mallory", fmt.Sprintf("weights/guess-%d", i%20)))
		if err != nil || out.N != i+1 || out.Recorded != (i == 0) || out.Detailed != (i < refusals.DefaultRiskHistory) {
			t.Fatalf("refusal %d: %+v %v", i, out, err)
		}
		clock.Advance(time.Millisecond)
	}
	if len(l.entries) != 1 || l.entries[0].Message != "mallory may not read weights/guess-0" {
		t.Fatalf("during the window: %d entries", len(l.entries))
	}
	if err := r.Flush(ctx); err != nil || len(l.entries) != 1 {
		t.Fatalf("a flush inside the window wrote %d entries (%v)", len(l.entries), err)
	}
	clock.Advance(time.Minute)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s := l.summaries()
	if len(l.entries) != 2 || len(s) != 1 {
		t.Fatalf("after the window: %d entries, %d summaries", len(l.entries), len(s))
	}
	sum := s[0]
	agg := sum.Details["aggregated"].(map[string]any)
	if sum.Extra["count"] != 9999 || agg["count"] != 9999 || sum.Actor != "mallory" || !sum.Failed || sum.Code != "weights.denied" ||
		len(sum.Resources) != 16 || agg["resources_not_sampled"].(int) == 0 || sum.Extra["start_time"].(int64) != epoch.Add(time.Millisecond).UnixMilli() {
		t.Fatalf("summary: %+v", sum)
	}
	// The next refusal opens a new window and is recorded at once again.
	if out, _ := r.Record(ctx, "user mallory", denied("mallory", "weights/x")); !out.Recorded {
		t.Fatalf("first refusal of the next window: %+v", out)
	}
	if r.Stats().Suppressed != 9999 {
		t.Fatalf("stats: %+v", r.Stats())
	}
}

// FlushAll (clean shutdown) writes the summaries of windows still open; a summary the ledger
// refuses is kept and written at the next flush, merged with what came after.
func TestFlushAllAndLedgerFailure(t *testing.T) {
	ctx := context.Background()
	r, l, clock := newRecorder(t, refusals.Limits{Window: time.Hour})
	for range 5 {
		_, _ = r.Record(ctx, "address 203.0.113.9/32", denied("anonymous", "weights/a"))
	}
	l.fail = true
	if err := r.FlushAll(ctx); err == nil {
		t.Fatal("a failed summary was not reported")
	}
	l.fail = false
	clock.Advance(time.Second)
	for range 3 {
		_, _ = r.Record(ctx, "address 203.0.113.9/32", denied("anonymous", "weights/b"))
	}
	if err := r.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	s := l.summaries()
	if len(s) != 1 || s[0].Extra["count"] != 7 || len(s[0].Resources) != 2 {
		t.Fatalf("summaries: %+v (entries %d)", s, len(l.entries))
	}
	if r.Stats().Sources != 0 {
		t.Fatalf("windows left open after FlushAll: %+v", r.Stats())
	}
}

// Beyond MaxSources, refusals of new sources share one summary per code: the number of entries
// per window stays bounded however many sources there are.
func TestMaxSources(t *testing.T) {
	ctx := context.Background()
	r, l, clock := newRecorder(t, refusals.Limits{Window: time.Minute, MaxSources: 10})
	for i := range 1000 {
		_, _ = r.Record(ctx, fmt.Sprintf("address 198.51.100.%d/32", i%250), denied("anonymous", "weights/a"))
	}
	clock.Advance(time.Minute)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// 10 sources and the overflow: each a first entry and a summary.
	if len(l.entries) != 22 {
		t.Fatalf("%d entries for 1000 refusals from 250 sources", len(l.entries))
	}
	total := 0
	for _, e := range l.entries {
		if c, ok := e.Extra["count"].(int); ok {
			total += c
		} else {
			total++
		}
	}
	if total != 1000 {
		t.Fatalf("the entries account for %d refusals, not 1000", total)
	}
}

// TestAgainstReference runs random refusals, clock moves, flushes and limit changes through a
// Recorder and through a brute-force reference written from the package's description, and
// compares every outcome and every entry written; it also checks that the entries account for
// every refusal and that no source writes more than two entries per window.
func TestAgainstReference(t *testing.T) {
	for seed := range uint64(300) {
		compareWithReference(t, seed)
		if t.Failed() {
			return
		}
	}
}

// refWindow is the reference's open window of one code and source.
type refWindow struct {
	code, source string
	start        time.Time
	repeats      int
}

func compareWithReference(t *testing.T, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 42))
	lim := refusals.Limits{Window: time.Duration(1+rng.IntN(5)) * time.Second, MaxSources: 1 + rng.IntN(4), RiskHistory: 1 + rng.IntN(3)}
	var limMu sync.Mutex
	l := &ledger{t: t}
	clock := clocktest.New(epoch)
	r := refusals.New(refusals.Options{Record: l.record, Now: clock.Now, Limits: func() refusals.Limits { limMu.Lock(); defer limMu.Unlock(); return lim }})

	var open []*refWindow // in opening order
	var want []string     // entries the reference expects, in order
	refused := 0
	find := func(code, source string) *refWindow {
		for _, w := range open {
			if w.code == code && w.source == source {
				return w
			}
		}
		return nil
	}
	flush := func(all bool) {
		var keep, closed []*refWindow
		for _, w := range open {
			if all || !clock.Now().Before(w.start.Add(lim.Window)) {
				closed = append(closed, w)
			} else {
				keep = append(keep, w)
			}
		}
		slices.SortStableFunc(closed, func(a, b *refWindow) int {
			if c := a.start.Compare(b.start); c != 0 {
				return c
			}
			if a.code != b.code {
				return strings.Compare(a.code, b.code)
			}
			return strings.Compare(a.source, b.source)
		})
		for _, w := range closed {
			if w.repeats > 0 {
				want = append(want, fmt.Sprintf("summary %s %s %d", w.code, w.source, w.repeats))
			}
		}
		open = keep
	}
	codes := []string{"weights.denied", "signin.refused"}
	for step := range 200 {
		switch op := rng.IntN(10); {
		case op < 6:
			code, source := codes[rng.IntN(2)], fmt.Sprintf("s%d", rng.IntN(6))
			refused++
			w := find(code, source)
			if w == nil {
				n := 0
				for _, x := range open {
					if x.source != refusals.Overflow {
						n++
					}
				}
				if n >= lim.MaxSources {
					source = refusals.Overflow
					w = find(code, source)
				}
			}
			var wantOut refusals.Outcome
			if w == nil {
				open = append(open, &refWindow{code: code, source: source, start: clock.Now()})
				want = append(want, "first "+code+" "+source)
				wantOut = refusals.Outcome{Recorded: true, N: 1, Detailed: true}
			} else {
				w.repeats++
				wantOut = refusals.Outcome{N: w.repeats + 1, Detailed: w.repeats+1 <= lim.RiskHistory}
			}
			e := denied("u", "weights/x")
			e.Code = code
			e.Message = source // marks the first entries
			got, err := r.Record(ctx, source, e)
			if err != nil || got != wantOut {
				t.Fatalf("seed %d step %d: Record = %+v %v, the reference %+v", seed, step, got, err, wantOut)
			}
		case op < 8:
			clock.Advance(time.Duration(rng.IntN(3000)) * time.Millisecond)
		case op == 8:
			flush(false)
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		default:
			limMu.Lock()
			lim.MaxSources = 1 + rng.IntN(4)
			limMu.Unlock()
		}
	}
	flush(true)
	if err := r.FlushAll(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	accounted := 0
	for _, e := range l.entries {
		if c, ok := e.Extra["count"].(int); ok {
			got = append(got, fmt.Sprintf("summary %s %s %d", e.Code, e.Details["aggregated"].(map[string]any)["source"], c))
			accounted += c
		} else {
			got = append(got, "first "+e.Code+" "+e.Message)
			accounted++
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seed %d: the Recorder wrote\n%v\nthe reference\n%v", seed, got, want)
	}
	if accounted != refused {
		t.Fatalf("seed %d: the entries account for %d of %d refusals", seed, accounted, refused)
	}
}
