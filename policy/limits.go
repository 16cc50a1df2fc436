package policy

import (
	"time"
)

// Bounds on what one person can make Rampart write (invariant 11): pending requests, and
// break-glass after a rejected review. Both are Settings with defaults; neither can be turned
// off, only set within these bounds.
const (
	DefaultMaxPendingRequests = 20
	MaxMaxPendingRequests     = 1000
	DefaultBreakGlassCooldown = 24 * time.Hour
	MinBreakGlassCooldown     = time.Minute
	MaxBreakGlassCooldown     = 30 * 24 * time.Hour
)

func validateLimits(s *Settings) {
	switch n := s.MaxPendingRequests; {
	case n == 0 && !s.src.has("max_pending_requests"):
		s.MaxPendingRequests = DefaultMaxPendingRequests
	case n < 1 || n > MaxMaxPendingRequests:
		s.src.errorf("max_pending_requests", "max_pending_requests must be between 1 and %d (it is %d): how many pending requests one person may have filed at a time; leave it out for %d",
			MaxMaxPendingRequests, n, DefaultMaxPendingRequests)
	}
	switch d := s.BreakGlassCooldown.Std(); {
	case d == 0 && !s.src.has("break_glass_cooldown"):
		s.BreakGlassCooldown = Duration(DefaultBreakGlassCooldown)
	case d < MinBreakGlassCooldown || d > MaxBreakGlassCooldown:
		s.src.errorf("break_glass_cooldown", "break_glass_cooldown must be between %s and %s (it is %s): how long someone whose break-glass was rejected in review must wait to take it again; leave it out for %s",
			FormatDuration(MinBreakGlassCooldown), FormatDuration(MaxBreakGlassCooldown), FormatDuration(d), FormatDuration(DefaultBreakGlassCooldown))
	}
}
