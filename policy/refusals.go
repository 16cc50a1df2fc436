package policy

import (
	"time"
)

// Refusals bounds what refused and anonymous attempts write (invariant 11): the first refusal
// of each source (a client network for the anonymous, a subject otherwise) in each Window is
// recorded at once, the rest are counted into one summary entry when the window ends; and one
// network may start only SignInStarts sign-ins per Window. Zero fields take the defaults below.
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
	// SignInStarts is how many sign-ins (browser or device) one client network may start per
	// window (default 30): each stores a flow, and anyone may start one. More are refused (429)
	// and recorded as refusals.
	SignInStarts int `yaml:"sign_in_starts"`
}

// Defaults and bounds of Refusals.
const (
	DefaultRefusalWindow      = time.Minute
	DefaultRefusalMaxSources  = 200
	DefaultRefusalRiskHistory = 20
	DefaultSignInStarts       = 30
	MaxSignInStarts           = 100000
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
	switch n := r.SignInStarts; {
	case n == 0:
		r.SignInStarts = DefaultSignInStarts
	case n < 1 || n > MaxSignInStarts:
		s.src.errorf("refusals.sign_in_starts", "refusals.sign_in_starts %d must lie between 1 and %d", n, MaxSignInStarts)
	}
}
