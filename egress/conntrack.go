package egress

import (
	"context"
	"fmt"
	"net"
	"time"
)

// open registers a tunnel.
func (g *Gateway) open(d Decision, cred credential, client, upstream net.Conn) *tunnel {
	t := &tunnel{g: g, d: d, cred: cred, client: client, upstream: upstream, budget: limitFor(g.cfg.Policy(), d.Subject), done: make(chan struct{})}
	t.active.Store(time.Now().UnixNano())
	g.mu.Lock()
	g.tunnels[t] = struct{}{}
	g.mu.Unlock()
	return t
}

func (g *Gateway) forget(t *tunnel) {
	g.mu.Lock()
	delete(g.tunnels, t)
	g.mu.Unlock()
}

// Run revalidates open tunnels every Limits.RevalidateEvery until ctx ends: a tunnel whose grant
// expired or was revoked, whose destination the policy no longer allows, or whose caller's
// identity no longer holds (credential revoked or expired, person disabled) is closed.
func (g *Gateway) Run(ctx context.Context) {
	t := time.NewTicker(g.cfg.Limits.RevalidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.Revalidate()
		}
	}
}

// Revalidate checks every open tunnel now. Call it after a grant changes for immediacy.
func (g *Gateway) Revalidate() {
	g.mu.Lock()
	open := make([]*tunnel, 0, len(g.tunnels))
	for t := range g.tunnels {
		open = append(open, t)
	}
	g.mu.Unlock()
	if len(open) == 0 {
		return
	}
	pol := g.cfg.Policy()
	now := g.cfg.Now()
	checked := map[credential]error{}
	for _, t := range open {
		// Invariant 8: the caller must still be who they were, every time, not only at CONNECT.
		err, seen := checked[t.cred]
		if !seen {
			err = g.recheck(context.Background(), t.cred, now)
			checked[t.cred] = err
		}
		if err != nil {
			t.close("closed: " + err.Error())
			continue
		}
		d := decideRules(pol, g.cfg.Grants, t.d.Subject, t.d.Target)
		if !d.Allowed {
			t.close(fmt.Sprintf("closed: %s", d.Reason))
		}
	}
}

// Shutdown stops new connections and waits for open tunnels to finish until ctx ends, then
// closes the rest.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.closing.Store(true)
	defer g.FlushDecisions()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		g.mu.Lock()
		n := len(g.tunnels)
		g.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			g.mu.Lock()
			for t := range g.tunnels {
				go t.close("closed: the gateway is shutting down")
			}
			g.mu.Unlock()
			return
		case <-tick.C:
		}
	}
}
