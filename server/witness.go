package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/witness"
)

// DefaultWitnessTimeout bounds each request to a witness.
const DefaultWitnessTimeout = 5 * time.Second

// DefaultWitnessRefresh is how often an unchanged newest checkpoint is sent again.
const DefaultWitnessRefresh = time.Minute

// witnessing sends the ledger's newest checkpoint to every configured witness and stores the
// cosignatures it gets back (invariant 5). It runs on the replica that holds the jobs lease,
// after each checkpoint, and once more at shutdown. A witness that proves the database lost
// or rewrote history it had seen raises the ledger's tamper alarm; a witness that is down or
// misconfigured is logged and counted, and the ledger goes on (its checkpoints then lack that
// cosignature, which `rampart audit verify --witness` reports).
type witnessing struct {
	in        *Instance
	clients   []*witness.Client
	verifiers []note.Verifier
	refresh   time.Duration
	greeted   []bool // sent at least once since this process started

	results *prometheus.CounterVec
	size    *prometheus.GaugeVec
}

func newWitnessing(in *Instance, cfg LedgerConfig, verifiers []note.Verifier, reg *prometheus.Registry) *witnessing {
	timeout := cfg.WitnessTimeout.Std()
	if timeout == 0 {
		timeout = DefaultWitnessTimeout
	}
	w := &witnessing{in: in, verifiers: verifiers, refresh: cfg.WitnessRefresh.Std(), greeted: make([]bool, len(verifiers)),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rampart_witness_requests_total", Help: "Checkpoints sent to each witness, by result: cosigned, unreachable, refused, ahead (it cosigned a newer one), rollback and inconsistent (both raise the tamper alarm).",
		}, []string{"witness", "result"}),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rampart_witness_cosigned_size", Help: "Size of the newest checkpoint each witness cosigned, as this replica last heard.",
		}, []string{"witness"}),
	}
	if w.refresh == 0 {
		w.refresh = DefaultWitnessRefresh
	}
	hc := &http.Client{Timeout: timeout}
	for i, c := range cfg.Witnesses {
		w.clients = append(w.clients, &witness.Client{URL: c.URL, Verifier: verifiers[i], HTTP: hc})
	}
	if reg != nil {
		reg.MustRegister(w.results, w.size)
	}
	return w
}

// witnessVerifiers parses the configured witness keys (validated with the configuration).
func witnessVerifiers(cfg LedgerConfig) ([]note.Verifier, error) {
	var out []note.Verifier
	for i, c := range cfg.Witnesses {
		v, err := audit.NewWitnessVerifier(c.Key)
		if err != nil {
			return nil, fmt.Errorf("ledger.witnesses[%d].key: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// run sends the newest stored checkpoint to each witness that has not cosigned it, whose
// cosignature is older than the refresh interval, or that has not heard from this process yet.
func (w *witnessing) run(ctx context.Context) error {
	l := w.in.Ledger
	if len(w.clients) == 0 || l.Alarm() != nil {
		return nil
	}
	signed, cp, err := l.Latest(ctx)
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return nil
	}
	if err != nil {
		return err
	}
	cos, err := l.Cosignatures(signed)
	if err != nil {
		return err
	}
	var errs []error
	for i, c := range w.clients {
		name := w.verifiers[i].Name()
		// Cosignatures carry the witness's wall-clock time, not the instance's clock.
		if w.greeted[i] && !cos[i].Time.IsZero() && time.Since(cos[i].Time) < w.refresh {
			continue
		}
		size := cp.Size
		lines, err := c.AddCheckpoint(ctx, signed, size, func(ctx context.Context, old uint64) ([][]byte, error) {
			return l.ConsistencyProof(ctx, old, size)
		})
		if err != nil {
			if alarm := w.evidence(ctx, err); alarm != nil {
				l.RaiseAlarm(alarm)
				return alarm
			}
			w.results.WithLabelValues(name, resultOf(err)).Inc()
			errs = append(errs, err)
			continue
		}
		w.greeted[i] = true
		merged, err := audit.AddCosignatures(signed, lines, l.Verifier(), w.verifiers[i])
		if err == nil {
			err = l.StoreCosigned(ctx, merged)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("witness %s: %w", name, err))
			continue
		}
		signed = merged
		w.results.WithLabelValues(name, "cosigned").Inc()
		w.size.WithLabelValues(name).Set(float64(size))
	}
	return errors.Join(errs...)
}

// evidence turns a witness's refusal into a tamper alarm when it proves the database lost or
// rewrote history the witness had seen: a witness ahead of every entry the database holds, or
// a consistency proof from the witness's checkpoint that fails.
func (w *witnessing) evidence(ctx context.Context, err error) *audit.TamperError {
	var ahead *witness.AheadError
	var inconsistent *witness.InconsistentError
	switch {
	case errors.As(err, &ahead):
		if serr := w.in.Ledger.Sync(ctx); serr != nil {
			return nil
		}
		if held := w.in.Ledger.Size(); ahead.Size > held {
			w.results.WithLabelValues(ahead.Witness, "rollback").Inc()
			return &audit.TamperError{Reason: fmt.Sprintf("witness %s has cosigned a checkpoint of this ledger of size %d, but the database holds only %d entries: it was rolled back or truncated after the witness saw it", ahead.Witness, ahead.Size, held)}
		}
		w.results.WithLabelValues(ahead.Witness, "ahead").Inc()
		w.in.log.Warn("a witness has cosigned a newer checkpoint than the newest stored one; the next checkpoint catches up", "witness", ahead.Witness, "witness_size", ahead.Size)
	case errors.As(err, &inconsistent):
		w.results.WithLabelValues(inconsistent.Witness, "inconsistent").Inc()
		return &audit.TamperError{Reason: fmt.Sprintf("witness %s refuses the checkpoint of size %d: it is not consistent with the checkpoint of size %d the witness cosigned before, so the entries up to %d are no longer what was signed then (the database was rolled back and rewritten)", inconsistent.Witness, inconsistent.Size, inconsistent.Old, inconsistent.Old)}
	}
	return nil
}

func resultOf(err error) string {
	var se *witness.StatusError
	if errors.As(err, &se) {
		return "refused"
	}
	return "unreachable"
}
