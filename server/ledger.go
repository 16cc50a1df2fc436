package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/secretfile"
	"rampart.dev/rampart/policy"
)

// AlarmFile is the file in the data directory where a tamper alarm is kept, so that a restart
// does not forget it (the remembered hashes that raised it die with the process).
const AlarmFile = "ledger.alarm"

// savedAlarm is the alarm file's content.
type savedAlarm struct {
	At         time.Time `json:"at"`
	Reason     string    `json:"reason"`
	Size       uint64    `json:"size,omitempty"`
	Expected   []byte    `json:"expected,omitempty"`
	Calculated []byte    `json:"calculated,omitempty"`
}

func (in *Instance) alarmPath() string { return filepath.Join(in.cfg.DataDir, AlarmFile) }

// checkAlarm refuses to start while an alarm raised by an earlier run stands.
func (in *Instance) checkAlarm() error {
	b, err := os.ReadFile(in.alarmPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the ledger alarm file: %w", err)
	}
	var a savedAlarm
	if err := json.Unmarshal(b, &a); err != nil {
		a.Reason = fmt.Sprintf("(the file does not parse: %v)", err)
	}
	return fmt.Errorf("refusing to serve: this server raised a ledger tamper alarm at %s: %s; the database was changed behind its back. Investigate (docs/ledger.md, \"Tamper alarms\"), restore the database from a backup taken before the alarm, then remove %s to start again",
		a.At.Format(time.RFC3339), a.Reason, in.alarmPath())
}

// onAlarm is the ledger's tamper alarm: decisions deny from now on (the grants in the same
// database cannot be trusted either), readiness fails, and the alarm is written to the data
// directory so that a restart refuses too. Changes are already refused by the ledger itself.
func (in *Instance) onAlarm(e *audit.TamperError) {
	reason := fmt.Errorf("ledger raised a tamper alarm at %s: %s", e.At.Format(time.RFC3339), e.Reason)
	if in.Index != nil {
		in.Index.Halt(reason)
	}
	b, _ := json.MarshalIndent(savedAlarm{At: e.At, Reason: e.Reason, Size: e.Size, Expected: e.Expected, Calculated: e.Calculated}, "", "  ")
	if err := os.WriteFile(in.alarmPath(), append(b, '\n'), 0o600); err != nil {
		in.log.Error("cannot write the ledger alarm file; a restart would not know of the alarm", "path", in.alarmPath(), "err", err)
	}
}

// ledgerMetrics registers the ledger's alarm gauge.
func (in *Instance) ledgerMetrics(reg *prometheus.Registry) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rampart_ledger_tamper_alarm", Help: "1 when this replica found the ledger's database tampered with (it then signs nothing, refuses changes and denies every decision).",
	}, func() float64 {
		if in.Ledger.Alarm() != nil {
			return 1
		}
		return 0
	}))
}

// CheckpointEvery bounds the time an entry stays unsigned: while the ledger grows, the
// replica that holds the jobs lease signs a checkpoint at least this often (invariant 5).
const CheckpointEvery = time.Second

// startLedgerJobs starts the ledger's background work: on every replica, reading the store
// every second (which checks the entries this replica appended); on the lease holder, the
// checkpoints.
func (in *Instance) startLedgerJobs(ctx context.Context, pol *policy.Policy, o Options) {
	in.every(ctx, "ledger verify", time.Second, func(ctx context.Context) error {
		if in.Ledger.Alarm() != nil {
			return nil
		}
		return in.Ledger.Sync(ctx)
	})
	interval := o.CheckpointInterval
	if interval == 0 {
		interval = min(pol.Settings().CheckpointInterval.Std(), CheckpointEvery)
		if set := pol.Settings().CheckpointInterval.Std(); set > CheckpointEvery {
			in.log.Warn("checkpoint_interval is above the bound on the unsigned tail; checkpoints are signed every second while the ledger grows", "checkpoint_interval", set)
		}
	}
	in.every(ctx, "checkpoint", interval, in.jobs.guard(func(ctx context.Context) error {
		if in.Ledger.Alarm() != nil {
			return nil
		}
		if _, _, err := in.Ledger.Checkpoint(ctx); err != nil {
			return err
		}
		return in.witness.run(ctx)
	}))
}

// keyPath resolves the signing key file: config, then policy settings, then the default.
func (in *Instance) keyPath(pol *policy.Policy) string {
	p := in.cfg.Ledger.SigningKeyFile
	if p == "" {
		p = pol.Settings().SigningKey
	}
	if p == "" {
		p = "ledger.key"
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(in.cfg.DataDir, p)
	}
	return p
}

func (in *Instance) openLedger(ctx context.Context, pol *policy.Policy) error {
	path := in.keyPath(pol)
	key, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		size, serr := in.Store.LedgerSize(ctx)
		if serr != nil {
			return fmt.Errorf("read ledger size: %w", serr)
		}
		if size > 0 {
			return fmt.Errorf("the ledger signing key %s is missing but the ledger already holds %d entries; restore the key from backup (a new key could not vouch for existing history)", path, size)
		}
		origin := in.cfg.Ledger.Origin
		if origin == "" {
			origin = "rampart"
		}
		skey, _, gerr := audit.GenerateKey(origin)
		if gerr != nil {
			return gerr
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(skey+"\n"), 0o600); err != nil {
			return fmt.Errorf("write new ledger signing key: %w", err)
		}
		key = []byte(skey)
		in.log.Info("created ledger signing key", "path", path, "origin", origin)
	case err != nil:
		return fmt.Errorf("read ledger signing key: %w", err)
	default:
		if err := secretfile.Check(path, "ledger signing key"); err != nil {
			return err
		}
	}
	ck := sha256.Sum256(append([]byte("rampart console csrf key v1\x00"), bytes.TrimSpace(key)...))
	in.consoleKey = ck[:]
	witnesses, err := witnessVerifiers(in.cfg.Ledger)
	if err != nil {
		return err
	}
	pin := audit.FilePin(filepath.Join(in.cfg.DataDir, "ledger.checkpoint"))
	l, err := audit.Open(ctx, audit.Options{Store: in.Store, SigningKey: strings.TrimSpace(string(key)), Pin: pin, Logger: in.log, Now: in.now,
		OnAlarm: in.onAlarm, Witnesses: witnesses})
	if err != nil {
		var te *audit.TamperError
		var se *audit.SequenceError
		if errors.As(err, &te) || errors.As(err, &se) {
			return fmt.Errorf("refusing to serve: %w; the stored history no longer matches what was signed: restore the database from a backup and investigate who changed it", err)
		}
		return fmt.Errorf("refusing to serve: %w", err)
	}
	in.Ledger = l
	// The ledger hears of every entry this process commits, and checks them before it signs.
	in.Store.WatchAppends(l)
	return nil
}

// RefusedStartsFile is the file in the data directory where a start refused over the ledger
// (a standing tamper alarm, history that does not verify) is noted. The ledger cannot take an
// entry then; the next start that can records them all (ledger.start_refused), so the refusal
// is in the record and detection sees it, and removes the file.
const RefusedStartsFile = "ledger.start_refused"

// maxRefusedStarts bounds the file: a server restarted in a loop notes its latest refusals.
const maxRefusedStarts = 100

type refusedStart struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

func (in *Instance) refusedStartsPath() string {
	return filepath.Join(in.cfg.DataDir, RefusedStartsFile)
}

// noteRefusedStart notes a start refused over the ledger; err is returned unchanged.
func (in *Instance) noteRefusedStart(err error) error {
	starts := in.refusedStarts()
	starts = append(starts, refusedStart{At: in.now().UTC(), Reason: err.Error()})
	if len(starts) > maxRefusedStarts {
		starts = starts[len(starts)-maxRefusedStarts:]
	}
	var b bytes.Buffer
	for _, s := range starts {
		line, _ := json.Marshal(s)
		b.Write(append(line, '\n'))
	}
	if werr := os.WriteFile(in.refusedStartsPath(), b.Bytes(), 0o600); werr != nil {
		in.log.Error("cannot note the refused start; the ledger will not record it", "path", in.refusedStartsPath(), "err", werr)
	}
	return err
}

// refusedStarts reads the noted refusals; lines that do not parse are kept as what they say.
func (in *Instance) refusedStarts() []refusedStart {
	b, err := os.ReadFile(in.refusedStartsPath())
	if err != nil {
		return nil
	}
	var out []refusedStart
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var s refusedStart
		if json.Unmarshal([]byte(line), &s) != nil {
			s.Reason = "(unreadable note) " + line
		}
		out = append(out, s)
	}
	return out
}

// recordRefusedStarts appends one ledger.start_refused entry for the starts refused since the
// last one that served, then removes the note. Detection's built-in pack pages on it.
func (in *Instance) recordRefusedStarts(ctx context.Context) error {
	starts := in.refusedStarts()
	if len(starts) == 0 {
		return nil
	}
	reasons := []string{}
	for _, s := range starts {
		if len(reasons) < 10 && !slicesContains(reasons, s.Reason) {
			reasons = append(reasons, s.Reason)
		}
	}
	first, last := starts[0].At, starts[len(starts)-1].At
	err := recorder(in.Store)(ctx, audit.Event{Code: "ledger.start_refused", Class: audit.ClassEntityManagement, Activity: audit.ActivityOther,
		ActivityName: "Other", Severity: audit.SeverityHigh, Actor: audit.SystemActor, Failed: true, Time: in.now(),
		Message: fmt.Sprintf("the server refused to start %d time(s) between %s and %s over the ledger: %s", len(starts),
			first.Format(time.RFC3339), last.Format(time.RFC3339), reasons[len(reasons)-1]),
		Details: map[string]any{"refused_starts": len(starts), "first": first.Format(time.RFC3339Nano), "last": last.Format(time.RFC3339Nano), "reasons": reasons}})
	if err != nil {
		return fmt.Errorf("record the refused starts: %w", err)
	}
	if err := os.Remove(in.refusedStartsPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
