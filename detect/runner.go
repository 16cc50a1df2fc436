package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// The runner evaluates the ledger exactly once, on the replica that holds the jobs lease:
//
//   - State is the cursor (the next ledger entry to evaluate) and a snapshot of the engine's
//     state after the entries below SnapshotSeq, both in the store.
//   - Step reads the entries from the cursor on, feeds them to the engine, and commits in ONE
//     transaction the detect.alert entries of the firings, the alert rows and the new cursor
//     (Store.CommitDetections), the cursor compared and set: a commit from a cursor that is no
//     longer the store's (another replica advanced it) is refused and nothing is written.
//   - On start, and whenever the runner is unsure of its state (a failed commit, a lost lease),
//     it restores the snapshot and replays SnapshotSeq..cursor with firings discarded: the engine
//     is deterministic, so it stands where the committed run stood.
//
// So a crash before a commit repeats the batch with the same firings (none was written); a crash
// after it finds the cursor past the batch (none is repeated). See docs/detection-operations.md.

// State is the runner's persisted position.
type State struct {
	// Cursor is the sequence number of the next ledger entry to evaluate.
	Cursor int64
	// Snapshot is the engine's state after the entries below SnapshotSeq (nil: empty state).
	Snapshot    []byte
	SnapshotSeq int64
}

// AlertEntry is one firing to record: its detect.alert ledger entry.
type AlertEntry struct {
	Firing Firing
	Event  audit.Event
}

// Commit is what one Step writes, in one transaction.
type Commit struct {
	// From is the cursor the batch was read from: the store's must still be it. To is the new
	// cursor.
	From, To int64
	Alerts   []AlertEntry
	// Snapshot, if not nil, replaces the stored snapshot, taken at To.
	Snapshot []byte
	At       time.Time
}

// Recorded is a firing as committed: its alert and its detect.alert entry's sequence number.
type Recorded struct {
	Firing Firing
	Alert  Alert
	Seq    int64
}

// ErrCursorMoved is CommitDetections' answer when the store's cursor is not the commit's From:
// another replica evaluated those entries. Nothing was written.
var ErrCursorMoved = errors.New("the detection cursor moved: another replica evaluated these entries")

// RunnerStore is what the runner needs of persistence (store/sqlstore implements it).
type RunnerStore interface {
	// Entries returns up to limit ledger entries with Seq >= from, in order.
	Entries(ctx context.Context, from int64, limit int) ([]audit.Record, error)
	// LedgerSize returns the number of committed entries.
	LedgerSize(ctx context.Context) (int64, error)
	// DetectState returns the runner's state.
	DetectState(ctx context.Context) (State, error)
	// CommitDetections writes c in one transaction: the detect.alert entries, the alerts rows,
	// the cursor (only if it is still c.From: else ErrCursorMoved) and the snapshot.
	CommitDetections(ctx context.Context, c Commit) ([]Recorded, error)
}

// Sink hears of alerts once they are committed (delivery, automatic response). It is called on
// the runner's goroutine: it must not block for long.
type Sink interface {
	Fired(ctx context.Context, alerts []Recorded)
}

// Runner defaults.
const (
	DefaultBatch            = 500
	DefaultSnapshotEvery    = 10_000
	DefaultSnapshotInterval = 5 * time.Minute
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Store RunnerStore
	// Batch is the most entries one Step evaluates and commits (DefaultBatch).
	Batch int
	// SnapshotEvery and SnapshotInterval: the engine's state is stored with a commit once this
	// many entries or this much time passed since the last snapshot (defaults above).
	SnapshotEvery    int
	SnapshotInterval time.Duration
	Engine           Options
	Sink             Sink
	Now              func() time.Time
	Logger           *slog.Logger
}

// Runner evaluates the ledger with the policy's detection rules. Its methods are safe for
// concurrent use; Step calls are serialized.
type Runner struct {
	o RunnerOptions

	mu       sync.Mutex
	rules    []*policy.DetectionRule
	engine   *Engine
	loaded   bool  // engine and cursor agree with the store
	cursor   int64 // next entry to evaluate
	snapSeq  int64
	snapAt   time.Time
	snapNow  bool // store a snapshot with the next commit (rules changed)
	alerts   map[string]uint64
	evicted  uint64 // evictions of engines replaced by SetRules
	replayed uint64
}

// NewRunner returns a runner for rules.
func NewRunner(rules []*policy.DetectionRule, o RunnerOptions) (*Runner, error) {
	if o.Store == nil {
		return nil, errors.New("detect: a runner needs a store")
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := NewEngine(rules, o.Engine); err != nil {
		return nil, err
	}
	return &Runner{o: o, rules: rules, alerts: map[string]uint64{}}, nil
}

// SetRules replaces the rules (a policy reload). The state of rules whose name and shape did
// not change is kept (Snapshot, Restore); changed and new rules start afresh. A snapshot is
// stored with the next commit, so that a restart resumes under the new rules.
func (r *Runner) SetRules(rules []*policy.DetectionRule) error {
	e, err := NewEngine(rules, r.o.Engine)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded {
		snap, err := r.engine.Snapshot()
		if err != nil {
			return err
		}
		if err := e.Restore(snap); err != nil {
			return err
		}
		r.evicted += r.engine.Stats().Evictions
		if d := e.Dropped(); len(d) > 0 {
			r.o.Logger.Info("detection: rules changed; their state starts afresh", "rules", strings.Join(d, ", "))
		}
		r.engine = e
		r.snapNow = true
	}
	r.rules = rules
	return nil
}

// Reset forgets the runner's state; the next Step reloads it from the store. Call it when the
// replica stops holding the jobs lease: another replica may move the cursor meanwhile.
func (r *Runner) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unload()
}

func (r *Runner) unload() {
	if r.engine != nil {
		r.evicted += r.engine.Stats().Evictions
	}
	r.loaded, r.engine = false, nil
}

// load restores the stored snapshot and replays the entries between it and the cursor, with
// their firings discarded.
func (r *Runner) load(ctx context.Context) error {
	st, err := r.o.Store.DetectState(ctx)
	if err != nil {
		return fmt.Errorf("read the detection state: %w", err)
	}
	e, err := NewEngine(r.rules, r.o.Engine)
	if err != nil {
		return err
	}
	if st.Snapshot != nil {
		if err := e.Restore(st.Snapshot); err != nil {
			// A snapshot this version cannot read: the rules start afresh at the snapshot.
			r.o.Logger.Warn("detection: the stored snapshot cannot be restored; rules start afresh from it", "snapshot_seq", st.SnapshotSeq, "err", err)
		}
	}
	for next := st.SnapshotSeq; next < st.Cursor; {
		recs, err := r.o.Store.Entries(ctx, next, min(r.o.Batch, int(st.Cursor-next)))
		if err != nil {
			return fmt.Errorf("replay the ledger from %d: %w", next, err)
		}
		if len(recs) == 0 {
			return fmt.Errorf("replay the ledger: entry %d is missing (the cursor is %d)", next, st.Cursor)
		}
		for _, rec := range recs {
			if rec.Seq >= st.Cursor {
				break
			}
			feed(e, rec) // firings discarded: they were committed before
			r.replayed++
			next = rec.Seq + 1
		}
	}
	r.engine, r.cursor, r.snapSeq, r.snapAt, r.loaded = e, st.Cursor, st.SnapshotSeq, r.o.Now(), true
	return nil
}

// feed evaluates one ledger entry. An entry that does not parse is skipped (it matches no rule):
// one bad entry must not stop detection of everything after it.
func feed(e *Engine, rec audit.Record) []Firing {
	ev, err := ParseEntry(rec.Seq, rec.Data)
	if err != nil || Own(ev.Code) {
		return nil
	}
	return e.Process(ev)
}

// Step evaluates the next batch of entries and commits it. It returns how many entries it
// evaluated (0: none were waiting).
func (r *Runner) Step(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.loaded {
		if err := r.load(ctx); err != nil {
			return 0, err
		}
	}
	recs, err := r.o.Store.Entries(ctx, r.cursor, r.o.Batch)
	if err != nil {
		return 0, fmt.Errorf("read the ledger from %d: %w", r.cursor, err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	c := Commit{From: r.cursor, At: r.o.Now()}
	for i, rec := range recs {
		if rec.Seq != c.From+int64(i) {
			r.unload()
			return 0, fmt.Errorf("read the ledger from %d: entry %d came where %d was expected", c.From, rec.Seq, c.From+int64(i))
		}
		for _, f := range feed(r.engine, rec) {
			c.Alerts = append(c.Alerts, AlertEntry{Firing: f, Event: AlertEvent(f, c.At)})
		}
		c.To = rec.Seq + 1
	}
	if r.snapNow || c.To-r.snapSeq >= int64(r.o.SnapshotEvery) || c.At.Sub(r.snapAt) >= r.o.SnapshotInterval {
		if c.Snapshot, err = r.engine.Snapshot(); err != nil {
			r.unload()
			return 0, err
		}
	}
	recorded, err := r.o.Store.CommitDetections(ctx, c)
	if err != nil {
		// The engine has seen entries that are not committed: start again from the store.
		r.unload()
		if errors.Is(err, ErrCursorMoved) {
			r.o.Logger.Info("detection: another replica evaluated these entries; reloading", "from", c.From)
			return 0, nil
		}
		return 0, fmt.Errorf("commit detections %d..%d: %w", c.From, c.To, err)
	}
	r.cursor = c.To
	if c.Snapshot != nil {
		r.snapSeq, r.snapAt, r.snapNow = c.To, c.At, false
	}
	for _, rc := range recorded {
		r.alerts[rc.Firing.Rule]++
	}
	if r.o.Sink != nil && len(recorded) > 0 {
		r.o.Sink.Fired(ctx, recorded)
	}
	return len(recs), nil
}

// RunnerStats are a runner's counters, for metrics.
type RunnerStats struct {
	// Cursor is the next entry to evaluate (0 before the first Step).
	Cursor int64
	// Loaded is whether the runner holds the state (it is the evaluating replica).
	Loaded bool
	// Alerts counts the firings this runner committed, per rule.
	Alerts map[string]uint64
	// Evictions counts keys evicted because a rule held Options.MaxKeys keys.
	Evictions uint64
	// Replayed counts entries replayed to rebuild state.
	Replayed uint64
}

// Stats returns the runner's counters.
func (r *Runner) Stats() RunnerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := RunnerStats{Cursor: r.cursor, Loaded: r.loaded, Alerts: make(map[string]uint64, len(r.alerts)), Evictions: r.evicted, Replayed: r.replayed}
	for k, v := range r.alerts {
		s.Alerts[k] = v
	}
	if r.engine != nil {
		s.Evictions += r.engine.Stats().Evictions
	}
	return s
}
