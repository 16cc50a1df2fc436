package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/policy"
)

// DetectionConfig configures the detection runner (docs/detection-operations.md).
type DetectionConfig struct {
	// Enabled runs the detection rules of the policy over the ledger on the replica that holds
	// the jobs lease. Default on (in `rampart server` as in `rampart dev`): a policy without
	// rules costs one poll of the ledger's size per interval; write enabled: false to stop it.
	Enabled *bool `yaml:"enabled"`
	// Batch is the most ledger entries evaluated and committed in one transaction. Default 500.
	Batch int `yaml:"batch"`
	// SnapshotEvery: the engine's state is stored after this many entries (default 10000) or
	// SnapshotInterval (default 5m), whichever comes first.
	SnapshotEvery    int             `yaml:"snapshot_every"`
	SnapshotInterval policy.Duration `yaml:"snapshot_interval"`
	// PollInterval is how often the runner looks for new entries when it has caught up.
	// Default 200ms.
	PollInterval policy.Duration `yaml:"poll_interval"`
	// MaxKeys bounds the keys each rule keeps state for (default 100000; the least recently
	// seen is evicted).
	MaxKeys int `yaml:"max_keys"`
}

// DefaultDetectPoll is DetectionConfig.PollInterval when unset.
const DefaultDetectPoll = 200 * time.Millisecond

// on reports whether detection runs: unless the configuration says otherwise, it does.
func (c DetectionConfig) on(bool) bool {
	if c.Enabled == nil {
		return true
	}
	return *c.Enabled
}

func (c DetectionConfig) validate(errorf func(field, format string, args ...any)) {
	if c.Batch < 0 || c.Batch > 100_000 {
		errorf("detection.batch", "must be between 1 and 100000 (it is %d); leave it out for %d", c.Batch, detect.DefaultBatch)
	}
	if c.SnapshotEvery < 0 {
		errorf("detection.snapshot_every", "must not be negative; leave it out for %d", detect.DefaultSnapshotEvery)
	}
	if c.MaxKeys < 0 {
		errorf("detection.max_keys", "must not be negative; leave it out for %d", detect.DefaultMaxKeys)
	}
	if c.SnapshotInterval.Std() < 0 || (c.PollInterval.Std() != 0 && c.PollInterval.Std() < 10*time.Millisecond) {
		errorf("detection", "snapshot_interval must not be negative, and poll_interval must be at least 10ms")
	}
}

// detection runs the runner on the jobs-lease holder.
type detection struct {
	in     *Instance
	runner *detect.Runner
	poll   time.Duration

	rules string // fingerprint of the rules the runner has
	held  bool   // the runner held the state at the last step

	alerts *prometheus.CounterVec
	seen   map[string]uint64
}

// rulesFingerprint says whether two policies' detection rules differ in anything a firing
// carries.
func rulesFingerprint(rs []*policy.DetectionRule) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s|%s|%s|%s|%v|%v|%s|%v\n", r.Name, r.Digest, r.Severity, r.Description, r.Mitre, r.Enabled, r.Response.Mode, r.Response.Actions)
	}
	return b.String()
}

// startDetection starts the runner if the configuration enables it.
func (in *Instance) startDetection(ctx context.Context, cfg Config, o Options, reg prometheus.Registerer) error {
	c := cfg.Detection
	if !c.on(cfg.Dev) {
		return nil
	}
	rules := in.Access.Policy().DetectionRules
	r, err := detect.NewRunner(rules, detect.RunnerOptions{Store: in.Store, Batch: c.Batch, SnapshotEvery: c.SnapshotEvery,
		SnapshotInterval: c.SnapshotInterval.Std(), Engine: detect.Options{MaxKeys: c.MaxKeys}, Sink: in.responseSink(o.DetectSink), Now: o.Now, Logger: in.log})
	if err != nil {
		return fmt.Errorf("detection: %w", err)
	}
	d := &detection{in: in, runner: r, poll: c.PollInterval.Std(), rules: rulesFingerprint(rules), seen: map[string]uint64{}}
	if d.poll == 0 {
		d.poll = DefaultDetectPoll
	}
	in.detect = d
	d.alerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rampart_detect_alerts_total", Help: "Detection firings this replica committed (detect.alert ledger entries), by rule.",
	}, []string{"rule"})
	reg.MustRegister(d.alerts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rampart_detect_lag_entries", Help: "Ledger entries not yet evaluated by detection (the ledger's size minus the detection cursor), as the store says.",
		}, d.lag),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "rampart_detect_evictions_total", Help: "Detection keys evicted because a rule held detection.max_keys keys (their state is forgotten).",
		}, func() float64 { return float64(r.Stats().Evictions) }))
	in.wg.Add(1)
	go func() { defer in.wg.Done(); d.run(ctx) }()
	in.log.Info("detection: evaluating the ledger on the jobs-lease holder", "rules", len(rules))
	return nil
}

// lag is the ledger's size minus the stored cursor.
func (d *detection) lag() float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	size, err := d.in.Store.LedgerSize(ctx)
	if err != nil {
		return 0
	}
	st, err := d.in.Store.DetectState(ctx)
	if err != nil {
		return 0
	}
	return float64(size - st.Cursor)
}

// run steps the runner while this replica holds the jobs lease: at once while entries wait,
// every poll interval once it caught up.
func (d *detection) run(ctx context.Context) {
	t := time.NewTicker(d.poll)
	defer t.Stop()
	for {
		busy := d.step(ctx)
		if busy {
			select {
			case <-ctx.Done():
				return
			default:
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step evaluates one batch; it reports whether more may be waiting.
func (d *detection) step(ctx context.Context) bool {
	if !d.in.jobs.Held() {
		if d.held {
			d.runner.Reset() // another replica may move the cursor from now on
			d.held = false
		}
		return false
	}
	d.held = true
	if fp := d.in.Access.Policy().DetectionRules; rulesFingerprint(fp) != d.rules {
		if err := d.runner.SetRules(fp); err != nil {
			d.in.log.Error("detection: the policy's rules cannot be evaluated; the previous rules stay", "err", err)
		} else {
			d.rules = rulesFingerprint(fp)
			d.in.log.Info("detection: rules reloaded", "rules", len(fp))
		}
	}
	n, err := d.runner.Step(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.in.log.Error("detection: evaluation failed; retrying from the stored cursor", "err", err)
		}
		return false
	}
	for rule, c := range d.runner.Stats().Alerts {
		if c > d.seen[rule] {
			d.alerts.WithLabelValues(rule).Add(float64(c - d.seen[rule]))
			d.seen[rule] = c
		}
	}
	return n > 0
}
