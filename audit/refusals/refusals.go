// Package refusals bounds what refused attempts write to the ledger (invariant 11: no unbounded
// writes by the unauthenticated or the unprivileged).
//
// Some refusals can be provoked at will: anyone can send a browser to /callback with a forged
// state (signin.refused), any user can ask for weights they have no grant for (weights.denied),
// anyone who may create pods can have the admission webhook refuse them (kube.admission.denied).
// Recorded one by one, they would let a caller grow the ledger without bound and drown the
// record. A Recorder records the first refusal of each code and source (a client network for
// the anonymous, a subject otherwise) in each window at once, in full, and only counts the
// rest; when the window ends, one summary entry says how many more there were, between when and
// when, with samples of the resources and messages (OCSF count, start_time and end_time). So
// each source adds at most two entries per window, and at most MaxSources sources are tracked
// at once: refusals from more share one summary per code. A replica's summaries are written by
// Flush (its background job, every second, even when no more attempts arrive) and by FlushAll
// at clean shutdown.
//
// The limits come from the policy's Settings (refusals: window, max_sources, risk_history) and
// apply from the next refusal after a reload. A summary the ledger cannot take stays counted
// and is written at the next flush.
package refusals

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
)

// Limits bound the ledger entries refusals produce.
type Limits struct {
	// Window is how long the refusals of one source are counted into one summary.
	Window time.Duration
	// MaxSources is how many sources are tracked at once; refusals from more are counted into
	// one summary per code.
	MaxSources int
	// RiskHistory is how many refusals of one source in one window are Detailed: kept one by
	// one in records of their own by the caller (the sign-in history the risk engine counts).
	RiskHistory int
}

// Defaults of Limits, used for every zero field.
const (
	DefaultWindow      = time.Minute
	DefaultMaxSources  = 200
	DefaultRiskHistory = 20
)

func (l Limits) withDefaults() Limits {
	if l.Window <= 0 {
		l.Window = DefaultWindow
	}
	if l.MaxSources <= 0 {
		l.MaxSources = DefaultMaxSources
	}
	if l.RiskHistory <= 0 {
		l.RiskHistory = DefaultRiskHistory
	}
	return l
}

// Overflow is the source of the summaries of refusals from sources beyond MaxSources.
const Overflow = "other sources (more than max_sources at once)"

// Outcome says what became of one refusal.
type Outcome struct {
	// Recorded is set when the refusal was written to the ledger in its own entry (the first of
	// its code and source in the window); otherwise it was counted into the window's summary.
	Recorded bool
	// N is the refusal's number in its window, 1 for the first.
	N int
	// Detailed is set for the first Limits.RiskHistory refusals of the window.
	Detailed bool
}

// Recorder records refusals, aggregated. It is safe for concurrent use.
type Recorder struct {
	record func(ctx context.Context, e audit.Event) error
	now    func() time.Time
	limits func() Limits
	log    *slog.Logger

	mu         sync.Mutex
	tallies    map[key]*tally
	suppressed uint64
}

type key struct{ code, source string }

// tally is one code and source's window.
type tally struct {
	first       audit.Event // recorded at once
	source      string
	start       time.Time // of the window: the first refusal
	repeats     int       // refusals after the first
	from, until time.Time // of the repeats
	resources   map[string]int
	moreRes     int // repeats about resources beyond the samples kept
	messages    []string
}

// Bounds on the samples a summary carries.
const (
	maxResources  = 16
	maxMessages   = 3
	maxMessageLen = 300
)

// Options configure a Recorder.
type Options struct {
	// Record appends one entry to the ledger.
	Record func(ctx context.Context, e audit.Event) error
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Limits returns the limits in force (defaults for zero fields; nil: all defaults).
	Limits func() Limits
	Logger *slog.Logger
}

// New returns a Recorder.
func New(o Options) *Recorder {
	r := &Recorder{record: o.Record, now: o.Now, limits: o.Limits, log: o.Logger, tallies: map[key]*tally{}}
	if r.now == nil {
		r.now = time.Now
	}
	if r.limits == nil {
		r.limits = func() Limits { return Limits{} }
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Record records refusal e of source: in the ledger at once if it is the first of its code and
// source in the window, else counted into the window's summary. The error is the ledger's, for
// a refusal recorded at once; the refusal itself stands either way.
func (r *Recorder) Record(ctx context.Context, source string, e audit.Event) (Outcome, error) {
	now := r.now()
	lim := r.limits().withDefaults()
	r.mu.Lock()
	k := key{e.Code, source}
	t := r.tallies[k]
	if t == nil && r.sources() >= lim.MaxSources {
		k = key{e.Code, Overflow}
		t = r.tallies[k]
	}
	if t == nil {
		r.tallies[k] = &tally{first: e, source: k.source, start: now}
		r.mu.Unlock()
		return Outcome{Recorded: true, N: 1, Detailed: true}, r.record(ctx, e)
	}
	t.count(e, now)
	r.suppressed++
	n := t.repeats + 1
	r.mu.Unlock()
	return Outcome{N: n, Detailed: n <= lim.RiskHistory}, nil
}

// sources counts the tracked sources, the overflow summaries aside.
func (r *Recorder) sources() int {
	n := 0
	for k := range r.tallies {
		if k.source != Overflow {
			n++
		}
	}
	return n
}

func (t *tally) count(e audit.Event, now time.Time) {
	if t.repeats == 0 {
		t.from = now
	}
	t.repeats++
	t.until = now
	for _, res := range e.Resources {
		if _, ok := t.resources[res]; ok || len(t.resources) < maxResources {
			if t.resources == nil {
				t.resources = map[string]int{}
			}
			t.resources[res]++
		} else {
			t.moreRes++
		}
	}
	if len(t.messages) < maxMessages && e.Message != t.first.Message && !slices.Contains(t.messages, e.Message) {
		m := e.Message
		if len(m) > maxMessageLen {
			m = strings.ToValidUTF8(m[:maxMessageLen], "") + "…"
		}
		t.messages = append(t.messages, m)
	}
}

// Flush writes the summary of every window that has ended and forgets it. It returns the first
// error of the ledger; what could not be written is kept for the next Flush.
func (r *Recorder) Flush(ctx context.Context) error { return r.flush(ctx, false) }

// FlushAll writes the summaries of every window, ended or not (at clean shutdown).
func (r *Recorder) FlushAll(ctx context.Context) error { return r.flush(ctx, true) }

func (r *Recorder) flush(ctx context.Context, all bool) error {
	now := r.now()
	lim := r.limits().withDefaults()
	r.mu.Lock()
	var due []key
	for k, t := range r.tallies {
		if all || !now.Before(t.start.Add(lim.Window)) {
			due = append(due, k)
		}
	}
	closed := make([]*tally, 0, len(due))
	for _, k := range due {
		closed = append(closed, r.tallies[k])
		delete(r.tallies, k)
	}
	r.mu.Unlock()
	sort.Slice(closed, func(i, j int) bool {
		a, b := closed[i], closed[j]
		if !a.start.Equal(b.start) {
			return a.start.Before(b.start)
		}
		if a.first.Code != b.first.Code {
			return a.first.Code < b.first.Code
		}
		return a.source < b.source
	})
	var first error
	for _, t := range closed {
		if t.repeats == 0 {
			continue
		}
		if err := r.record(ctx, t.summary(lim.Window)); err != nil {
			r.log.Error("cannot write a summary of refusals to the ledger; it is kept for the next try", "code", t.first.Code, "source", t.source, "count", t.repeats, "err", err)
			r.keep(t)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// keep puts back a summary that could not be written, merging it into a window of the same
// code and source opened meanwhile.
func (r *Recorder) keep(t *tally) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := key{t.first.Code, t.source}
	cur := r.tallies[k]
	if cur == nil {
		r.tallies[k] = t
		return
	}
	if cur.repeats == 0 || t.from.Before(cur.from) {
		cur.from = t.from
	}
	if t.until.After(cur.until) {
		cur.until = t.until
	}
	cur.repeats += t.repeats
	for res, n := range t.resources {
		if _, ok := cur.resources[res]; ok || len(cur.resources) < maxResources {
			if cur.resources == nil {
				cur.resources = map[string]int{}
			}
			cur.resources[res] += n
		} else {
			cur.moreRes += n
		}
	}
	cur.moreRes += t.moreRes
}

// summary is the ledger entry of a closed window.
func (t *tally) summary(window time.Duration) audit.Event {
	f := t.first
	e := audit.Event{Code: f.Code, Class: f.Class, Activity: f.Activity, ActivityName: f.ActivityName, Severity: f.Severity,
		Time: t.until, Actor: f.Actor, User: f.User, Privileges: f.Privileges, Failed: true}
	if t.source == Overflow {
		e.Actor, e.User = audit.SystemActor, ""
	}
	res := make([]string, 0, len(t.resources))
	counts := map[string]any{}
	for r, n := range t.resources {
		res = append(res, r)
		counts[r] = n
	}
	sort.Strings(res)
	e.Resources = res
	e.Message = fmt.Sprintf("%d more %s refusals from %s between %s and %s (aggregated: the first of this window, at %s, was recorded on its own)",
		t.repeats, f.Code, t.source, t.from.UTC().Format(time.RFC3339), t.until.UTC().Format(time.RFC3339), t.start.UTC().Format(time.RFC3339))
	agg := map[string]any{"source": t.source, "count": t.repeats, "window": window.String(),
		"first_recorded_at": t.start.UTC().Format(time.RFC3339Nano), "from": t.from.UTC().Format(time.RFC3339Nano), "until": t.until.UTC().Format(time.RFC3339Nano)}
	if len(counts) > 0 {
		agg["resources"] = counts
	}
	if t.moreRes > 0 {
		agg["resources_not_sampled"] = t.moreRes
	}
	if len(t.messages) > 0 {
		agg["other_messages"] = t.messages
	}
	e.Details = map[string]any{"aggregated": agg}
	e.Extra = map[string]any{}
	for k, v := range f.Extra {
		e.Extra[k] = v
	}
	// OCSF: count events of one logical group between start_time and end_time.
	e.Extra["count"], e.Extra["start_time"], e.Extra["end_time"] = t.repeats, t.from.UnixMilli(), t.until.UnixMilli()
	return e
}

// Stats describe a Recorder for metrics.
type Stats struct {
	// Sources is the number of windows open (overflow summaries included).
	Sources int
	// Suppressed counts the refusals counted into summaries instead of written one by one.
	Suppressed uint64
}

// Stats returns the Recorder's counts.
func (r *Recorder) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Sources: len(r.tallies), Suppressed: r.suppressed}
}
