package server

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/iac"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

// IACDriftConfig makes the server compare a checkout of the infrastructure repository with
// the cluster of kubernetes: (rampart iac drift, docs/iac.md) on an interval.
type IACDriftConfig struct {
	// Path is the repository checkout (or a directory in it) that iac drift renders.
	Path string `yaml:"path"`
	// Interval is how often it runs. Default 10m; at least 1s.
	Interval policy.Duration `yaml:"interval"`
	// Namespace is the namespace of declared namespaced objects that name none. Default
	// "default".
	Namespace string `yaml:"namespace"`
}

// DefaultIACDriftInterval is how often the server runs iac drift when iac_drift.interval is
// not set.
const DefaultIACDriftInterval = 10 * time.Minute

// maxDriftObjectsRecorded bounds the object names one iac.drift entry carries; the counts are
// always complete.
const maxDriftObjectsRecorded = 200

func (c *Config) validateIACDrift(doc *strictyaml.Document) {
	d := c.IACDrift
	if d == nil {
		return
	}
	if d.Path == "" {
		doc.Errorf("iac_drift.path", "path is required: the checkout of the infrastructure repository to compare with the cluster")
	} else if fi, err := os.Stat(d.Path); err != nil {
		doc.Errorf("iac_drift.path", "%v; give the directory of a checkout of the infrastructure repository", err)
	} else if !fi.IsDir() {
		doc.Errorf("iac_drift.path", "%s is not a directory; give the directory iac drift renders", d.Path)
	}
	if d.Interval < 0 || (d.Interval != 0 && d.Interval.Std() < time.Second) {
		doc.Errorf("iac_drift.interval", "must be at least 1s (it is %s); leave it out for 10m", d.Interval.Std())
	}
	if c.Kubernetes.Kubeconfig == "" && !c.Kubernetes.InCluster {
		doc.Errorf("iac_drift", "drift is measured against the cluster of kubernetes:; set kubernetes.kubeconfig or kubernetes.in_cluster")
	}
}

// driftWatch runs iac drift for the server (on the jobs-lease holder) and records in the
// ledger only when the set of drifted objects changes (invariant 11: a drift that persists is
// one entry, not one per interval). It remembers the last set it recorded in memory: a
// restart, or the lease moving to another replica, records the drift found then once more.
type driftWatch struct {
	cfg    IACDriftConfig
	rest   *rest.Config
	record func(context.Context, audit.Event) error
	now    func() time.Time
	in     *Instance

	runMu    sync.Mutex // one run at a time (the job and CheckIACDrift)
	mu       sync.Mutex
	recorded []string  // the drifted objects of the last entry ("state Kind ns/name"), sorted; none at start
	next     time.Time // when the next scheduled run is due (instance clock); zero: at once

	objects *prometheus.GaugeVec
	errors  prometheus.Counter
}

func newDriftWatch(in *Instance, cfg IACDriftConfig, rc *rest.Config, reg *prometheus.Registry) *driftWatch {
	w := &driftWatch{cfg: cfg, rest: rc, record: recorder(in.Store), now: in.now, in: in,
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rampart_iac_drift_objects", Help: "Objects where the cluster differs from the infrastructure repository (iac_drift.path) at the last run, by kind of drift: missing, changed, extra, invalid.",
		}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rampart_iac_drift_errors_total", Help: "Runs of iac drift that failed: the repository did not render or the cluster could not be read (logged; the gauge keeps the last result).",
		}),
	}
	for _, k := range []string{iac.DriftMissing, iac.DriftChanged, iac.DriftExtra, iac.DriftInvalid} {
		w.objects.WithLabelValues(k).Set(0)
	}
	if reg != nil {
		reg.MustRegister(w.objects, w.errors)
	}
	return w
}

// run renders the repository, compares it with the cluster, sets the gauge, and records
// iac.drift (or iac.drift_cleared) when the drifted set differs from the last one recorded.
// A failure is counted and returned (the job runner logs it) and changes nothing else.
func (w *driftWatch) run(ctx context.Context) error {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	objs, err := iac.Render(w.cfg.Path)
	if err != nil {
		return w.failed("the repository does not render", err)
	}
	found, err := iac.Drift(ctx, w.rest, objs, iac.DriftOptions{DefaultNamespace: w.cfg.Namespace})
	if err != nil {
		return w.failed("the cluster cannot be compared", err)
	}
	counts := map[string]int{iac.DriftMissing: 0, iac.DriftChanged: 0, iac.DriftExtra: 0, iac.DriftInvalid: 0}
	set := make([]string, 0, len(found))
	high := false
	for _, f := range found {
		counts[f.State]++
		set = append(set, f.State+" "+f.Object())
		high = high || sensitiveKind(f.Kind)
	}
	slices.Sort(set)
	set = slices.Compact(set)
	for k, n := range counts {
		w.objects.WithLabelValues(k).Set(float64(n))
	}
	w.mu.Lock()
	same := slices.Equal(set, w.recorded)
	w.mu.Unlock()
	if same {
		return nil
	}
	var e audit.Event
	if len(set) == 0 {
		e = audit.Event{Code: "iac.drift_cleared", Class: audit.ClassEntityManagement, Activity: audit.ActivityOther, ActivityName: "Other",
			Severity: audit.SeverityInformational, Actor: audit.SystemActor, Time: w.now(),
			Message: fmt.Sprintf("the cluster matches the infrastructure repository %s again", w.cfg.Path),
			Details: map[string]any{"path": w.cfg.Path, "declared": len(objs)}}
	} else {
		sev := audit.SeverityMedium
		if high {
			sev = audit.SeverityHigh
		}
		listed := set
		if len(listed) > maxDriftObjectsRecorded {
			listed = listed[:maxDriftObjectsRecorded]
		}
		parts := []string{}
		for _, k := range []string{iac.DriftMissing, iac.DriftChanged, iac.DriftExtra, iac.DriftInvalid} {
			if counts[k] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
			}
		}
		e = audit.Event{Code: "iac.drift", Class: audit.ClassEntityManagement, Activity: audit.ActivityOther, ActivityName: "Other",
			Severity: sev, Actor: audit.SystemActor, Time: w.now(),
			Message: fmt.Sprintf("the cluster differs from the infrastructure repository %s: %s (rampart iac drift %s shows each difference)", w.cfg.Path, strings.Join(parts, ", "), w.cfg.Path),
			Details: map[string]any{"path": w.cfg.Path, "declared": len(objs), "missing": counts[iac.DriftMissing], "changed": counts[iac.DriftChanged],
				"extra": counts[iac.DriftExtra], "invalid": counts[iac.DriftInvalid], "objects": listed, "objects_left_out": len(set) - len(listed)}}
	}
	if err := w.record(ctx, e); err != nil {
		// Not remembered: the next run tries again.
		return w.failed("cannot record drift in the ledger", err)
	}
	w.mu.Lock()
	w.recorded = set
	w.mu.Unlock()
	w.in.log.Warn("infrastructure drift", "code", e.Code, "path", w.cfg.Path, "objects", len(set))
	return nil
}

// failed counts a failed run and returns what to log (the job runner logs it); the next run
// tries again.
func (w *driftWatch) failed(what string, err error) error {
	w.errors.Inc()
	return fmt.Errorf("iac drift of %s: %s (the next run tries again): %w", w.cfg.Path, what, err)
}

// sensitiveKind reports whether drift of kind weakens access control or isolation (RBAC,
// NetworkPolicy, Secret, ServiceAccount): such drift is High, other drift Medium.
func sensitiveKind(kind string) bool {
	switch kind {
	case "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "Secret", "ServiceAccount":
		return true
	}
	return false
}

// CheckIACDrift runs iac drift once now, as the iac_drift job does every interval on the
// jobs-lease holder; it does nothing when iac_drift is not configured.
func (in *Instance) CheckIACDrift(ctx context.Context) error {
	if in.drift == nil {
		return nil
	}
	return in.drift.run(ctx)
}

// startIACDrift runs iac drift every iac_drift.interval on the replica that holds the jobs
// lease.
func (in *Instance) startIACDrift(ctx context.Context, reg *prometheus.Registry) error {
	c := in.cfg.IACDrift
	if c == nil {
		return nil
	}
	_, rc, err := in.cfg.Kubernetes.KubeClient()
	if err != nil {
		return err
	}
	if rc == nil {
		return fmt.Errorf("iac_drift: set kubernetes.kubeconfig or kubernetes.in_cluster: drift is measured against that cluster")
	}
	interval := c.Interval.Std()
	if interval == 0 {
		interval = DefaultIACDriftInterval
	}
	in.drift = newDriftWatch(in, *c, rc, reg)
	// The schedule is on the instance's clock (tests move it): a check every second at most
	// finds whether a run is due. A run is bounded so that a cluster that stops answering
	// fails it rather than stalling the job.
	in.every(ctx, "iac drift", min(interval, time.Second), in.jobs.guard(func(ctx context.Context) error {
		if !in.drift.due(interval) {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, max(interval, time.Minute))
		defer cancel()
		return in.drift.run(rctx)
	}))
	return nil
}

// due reports whether a scheduled run is due on the instance's clock, and if so schedules the
// next one interval later. The first run is due at once.
func (w *driftWatch) due(interval time.Duration) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.next.IsZero() && now.Before(w.next) {
		return false
	}
	w.next = now.Add(interval)
	return true
}
