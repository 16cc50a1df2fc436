package egress

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
)

// flow is one open connection through the gateway — a CONNECT tunnel or a forwarded http://
// request — kept from the moment it is allowed until it ends, so that revalidation can end it:
// its grant expired or was revoked, the policy no longer allows it, its caller's credential no
// longer holds. Ending a flow closes both of its sides at once, so neither direction carries
// another byte.
type flow struct {
	g    *Gateway
	d    Decision
	cred credential // how the caller proved who they are, checked again at every revalidation
	kind string     // "tunnel" or "request"
	// cut closes both sides; it runs once, on the first close.
	cut  func()
	once sync.Once
	done chan struct{}
	why  atomic.Value // string
	// meter counts the bytes each way for egress.transfer.
	meter *transferMeter
}

// track registers a flow from the client at clientAddr; cut must close both of its sides. Call
// g.untrack when it ends.
func (g *Gateway) track(d Decision, cred credential, kind, clientAddr string, cut func()) *flow {
	f := &flow{g: g, d: d, cred: cred, kind: kind, cut: cut, done: make(chan struct{}), meter: newTransferMeter(clientAddr, g.cfg.Now())}
	g.mu.Lock()
	g.flows[f] = struct{}{}
	late := g.forced
	g.mu.Unlock()
	if late {
		f.close("closed: the gateway is shutting down")
	}
	return f
}

// untrack forgets a flow that ended and writes its last egress.transfer entry.
func (g *Gateway) untrack(f *flow) {
	g.mu.Lock()
	delete(g.flows, f)
	g.mu.Unlock()
	why := "finished"
	if w, ok := f.why.Load().(string); ok {
		why = w
	}
	g.reportTransfer(f, true, why)
}

// OpenFlows returns the number of open tunnels and forwarded requests.
func (g *Gateway) OpenFlows() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.flows)
}

// closed reports whether the flow was ended.
func (f *flow) closed() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// close ends the flow at once, both sides, and records why (an egress.closed decision line).
func (f *flow) close(why string) {
	f.once.Do(func() {
		f.why.Store(why)
		close(f.done)
		f.cut()
		f.g.writeDecisionLine(audit.Event{Code: "egress.closed", Class: audit.ClassNetworkActivity, Activity: activityClose, ActivityName: "Close",
			Time: f.g.cfg.Now(), Actor: actorOf(f.d.Subject), Message: why,
			Details: map[string]any{"rule": f.d.Rule, "rule_name": f.d.Name, "connection": f.kind},
			Extra:   map[string]any{"dst_endpoint": endpoint(f.d.Target, f.d.Addr)}})
	})
}

// finish marks a forwarded request that ended by itself: nothing is closed (the client's
// connection may carry its next request) and nothing is logged; a revalidation racing with it
// finds it done.
func (f *flow) finish() {
	f.once.Do(func() { close(f.done) })
}

// Run revalidates open connections every Limits.RevalidateEvery until ctx ends: a tunnel or
// forwarded request whose grant expired or was revoked, whose destination the policy no longer
// allows, or whose caller's identity no longer holds (credential revoked or expired, person
// disabled) is closed. It also forgets budgets with nothing left in their window.
func (g *Gateway) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Limits.RevalidateEvery)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Revalidate()
			g.reportOpen()
			if time.Since(lastPrune) > time.Minute {
				g.meter.Prune(g.cfg.Now())
				lastPrune = time.Now()
			}
		}
	}
}

// Revalidate checks every open tunnel and forwarded request now. Call it after a grant changes
// for immediacy.
func (g *Gateway) Revalidate() {
	g.mu.Lock()
	open := make([]*flow, 0, len(g.flows))
	for f := range g.flows {
		open = append(open, f)
	}
	g.mu.Unlock()
	if len(open) == 0 {
		return
	}
	pol := g.cfg.Policy()
	now := g.cfg.Now()
	checked := map[credential]error{}
	for _, f := range open {
		// Invariant 8: the caller must still be who they were, every time, not only when the
		// connection was allowed.
		err, seen := checked[f.cred]
		if !seen {
			err = g.recheck(context.Background(), f.cred, now)
			checked[f.cred] = err
		}
		if err != nil {
			f.close("closed: " + err.Error())
			continue
		}
		d := decideRules(pol, g.cfg.Grants, f.d.Subject, f.d.Target)
		if !d.Allowed {
			f.close(fmt.Sprintf("closed: %s", d.Reason))
		}
	}
}

// Shutdown stops new connections and waits for open tunnels and requests to finish until ctx
// ends, then closes the rest. Their last egress.transfer entries, and every other entry queued
// for the ledger, are written before it returns.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.closing.Store(true)
	defer g.FlushDecisions()
	defer func() { g.flushAnonymous(true); g.FlushLedger() }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Connections still being admitted count too (perSubj): they register their flow after.
		g.mu.Lock()
		busy := len(g.flows) > 0 || len(g.perSubj) > 0
		g.mu.Unlock()
		if !busy {
			return
		}
		select {
		case <-ctx.Done():
			g.mu.Lock()
			g.forced = true // a connection that registers from now on is closed at once
			for f := range g.flows {
				go f.close("closed: the gateway is shutting down")
			}
			g.mu.Unlock()
			g.awaitUntracked(5 * time.Second)
			return
		case <-tick.C:
		}
	}
}

// awaitUntracked waits, at most limit, for the flows closed at shutdown to end (and so to write
// their last egress.transfer entries).
func (g *Gateway) awaitUntracked(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		g.mu.Lock()
		n := len(g.flows)
		g.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
