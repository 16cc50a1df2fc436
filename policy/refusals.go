package policy

import (
	"time"
)

// Refusals bounds what refused attempts write to the ledger (invariant 11): the first refusal
// of each source (a client network for the anonymous, a subject otherwise) in each Window is
// recorded at once, the rest are counted into one summary entry when the window ends. Zero
// fields take the defaults below.
type Refusals struct {
	// Window is how long one source's refusals are counted into one summary (default 1m).
	Window Duration `yaml:"window"`
	// MaxSources is how many sources each replica tracks at once (default 200); refusals from
	// more share one summary per kind. It bounds the entries per window: two per source.
	MaxSources int `yaml:"max_sources"`
	// RiskHistory is how many sign-in refusals of one source per window are also kept one by
	// one in the sign-in history the risk engine counts (default 20; keep it above the risk
	// engine's thresholds, 5 failures for a username by default).
	RiskHistory int `yaml:"risk_history"`
}

// Defaults and bounds of Refusals.
const (
	DefaultRefusalWindow      = time.Minute
	DefaultRefusalMaxSources  = 200
	DefaultRefusalRiskHistory = 20
	MinRefusalWindow          = time.Second
	MaxRefusalWindow          = 24 * time.Hour
	MaxRefusalSources         = 100000
	MaxRefusalRiskHistory     = 10000
)

// validateRefusals checks the limits and fills in the defaults.
func validateRefusals(s *Settings) {
	r := &s.Refusals
	switch w := r.Window.Std(); {
	case w == 0:
		r.Window = Duration(DefaultRefusalWindow)
	case w < MinRefusalWindow || w > MaxRefusalWindow:
		s.src.errorf("refusals.window", "refusals.window %s must lie between %s and %s", FormatDuration(w), FormatDuration(MinRefusalWindow), FormatDuration(MaxRefusalWindow))
	}
	switch n := r.MaxSources; {
	case n == 0:
		r.MaxSources = DefaultRefusalMaxSources
	case n < 1 || n > MaxRefusalSources:
		s.src.errorf("refusals.max_sources", "refusals.max_sources %d must lie between 1 and %d", n, MaxRefusalSources)
	}
	switch n := r.RiskHistory; {
	case n == 0:
		r.RiskHistory = DefaultRefusalRiskHistory
	case n < 1 || n > MaxRefusalRiskHistory:
		s.src.errorf("refusals.risk_history", "refusals.risk_history %d must lie between 1 and %d", n, MaxRefusalRiskHistory)
	}
}
