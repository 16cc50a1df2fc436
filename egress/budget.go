package egress

import (
	"sync"
	"time"

	"rampart.dev/rampart/policy"
)

// budgets counts the bytes each subject sends out, per fixed window.
type budgets struct {
	mu   sync.Mutex
	used map[string]*usage
}

type usage struct {
	windowStart time.Time
	bytes       int64
	// reported is set once the exhaustion of this window was recorded.
	reported bool
}

// limitFor returns the tightest budget among the subject's egress policies, if any.
func limitFor(pol *policy.Policy, subject string) *policy.EgressBudget {
	var best *policy.EgressBudget
	for _, p := range pol.EgressPoliciesFor(subject) {
		b := p.Budget
		if b == nil {
			continue
		}
		// Tightest: the fewest bytes per second of window.
		if best == nil || float64(b.Bytes)/b.Window.Std().Seconds() < float64(best.Bytes)/best.Window.Std().Seconds() {
			best = b
		}
	}
	return best
}

// current returns the subject's usage in the window containing now.
func (bs *budgets) current(subject string, b *policy.EgressBudget, now time.Time) *usage {
	u := bs.used[subject]
	start := now.Truncate(b.Window.Std())
	if u == nil || !u.windowStart.Equal(start) {
		u = &usage{windowStart: start}
		bs.used[subject] = u
	}
	return u
}

// exhausted reports whether the subject has no budget left, and when it resets.
func (bs *budgets) exhausted(subject string, b *policy.EgressBudget, now time.Time) (bool, time.Time) {
	if b == nil {
		return false, time.Time{}
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	u := bs.current(subject, b, now)
	return u.bytes >= int64(b.Bytes), u.windowStart.Add(b.Window.Std())
}

// consume records n bytes sent. It returns false if they do not fit in the budget (they are
// counted anyway: they were read from the client), and firstTime is true the first time this
// window went over, so the exhaustion is recorded once.
func (bs *budgets) consume(subject string, b *policy.EgressBudget, n int, now time.Time) (ok, firstTime bool) {
	if b == nil {
		return true, false
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	u := bs.current(subject, b, now)
	u.bytes += int64(n)
	if u.bytes <= int64(b.Bytes) {
		return true, false
	}
	first := !u.reported
	u.reported = true
	return false, first
}
