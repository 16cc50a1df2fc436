package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
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

type countingBody struct {
	r      io.ReadCloser
	onRead func(n int) bool
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.onRead(n) {
		return 0, errors.New("exfiltration budget exhausted")
	}
	return n, err
}

func (c *countingBody) Close() error { return c.r.Close() }

// spend counts n bytes sent out by a subject; false means the budget is exhausted and the
// connection must end. The first exhaustion in a window is written to the ledger.
func (g *Gateway) spend(ctx context.Context, d Decision, b *policy.EgressBudget, n int) bool {
	g.m.bytes.WithLabelValues("out").Add(float64(n))
	ok, first := g.budgets.consume(d.Subject, b, n, g.cfg.Now())
	if ok {
		return true
	}
	if first {
		g.m.budget.Inc()
		e := audit.Event{Code: "egress.budget_exhausted", Class: audit.ClassNetworkActivity, Activity: activityRefuse, ActivityName: "Refuse",
			Severity: audit.SeverityHigh, Time: g.cfg.Now(), Actor: actorOf(d.Subject),
			Message: fmt.Sprintf("%s exceeded its egress budget of %d bytes per %s while sending to %s; its connections are cut until the window ends",
				who(d.Subject), b.Bytes, policy.FormatDuration(b.Window.Std()), d.Target),
			Details: map[string]any{"subject": d.Subject, "destination": d.Target.String(), "budget_bytes": int64(b.Bytes), "window": policy.FormatDuration(b.Window.Std())},
			Extra:   map[string]any{"dst_endpoint": endpoint(d.Target, d.Addr), "disposition": "Blocked", "disposition_id": 2}}
		if g.cfg.Record != nil {
			if err := g.cfg.Record(context.WithoutCancel(ctx), e); err != nil {
				g.log.Error("could not record budget exhaustion in the ledger", "subject", d.Subject, "err", err)
			}
		}
		g.writeDecisionLine(e)
	}
	return false
}
