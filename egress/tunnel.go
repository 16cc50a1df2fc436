package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/policy"
)

// tunnel is one open CONNECT tunnel.
type tunnel struct {
	*flow
	client, upstream net.Conn
	budget           *policy.EgressBudget
	active           atomic.Int64 // unix nanos of the last byte in either direction
}

// openTunnel registers a tunnel between client and upstream.
func (g *Gateway) openTunnel(d Decision, cred credential, b *policy.EgressBudget, client, upstream net.Conn) *tunnel {
	t := &tunnel{client: client, upstream: upstream, budget: b}
	t.flow = g.track(d, cred, "tunnel", client.RemoteAddr().String(), func() { client.Close(); upstream.Close() })
	t.active.Store(time.Now().UnixNano())
	return t
}

const copyBuffer = 32 << 10

// run copies both ways until both directions end, handling half-close: when one side finishes
// sending, the other side's write half is closed and the other direction goes on.
func (t *tunnel) run(first []byte) {
	g := t.g
	g.m.tunnels.Inc()
	defer g.m.tunnels.Dec()
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client → upstream: counted against the budget
		defer wg.Done()
		if len(first) > 0 {
			t.meter.out.Add(int64(len(first)))
			if !g.spend(ctx, t.d, t.budget, len(first)) {
				t.close("closed: exfiltration budget exhausted")
				return
			}
			if _, err := t.upstream.Write(first); err != nil {
				t.close("closed: " + err.Error())
				return
			}
		}
		t.pipe(t.upstream, t.client, func(n int) bool { t.meter.out.Add(int64(n)); return g.spend(ctx, t.d, t.budget, n) })
	}()
	go func() { // upstream → client
		defer wg.Done()
		t.pipe(t.client, t.upstream, func(n int) bool {
			t.meter.in.Add(int64(n))
			g.m.bytes.WithLabelValues("in").Add(float64(n))
			return true
		})
	}()
	wg.Wait()
	t.close("closed: both sides finished")
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// pipe copies src to dst; account decides whether n more bytes may pass. The tunnel is idle only
// when neither direction has carried anything for the idle timeout: a long one-way transfer
// (a model download) is not cut because the other side is silent.
func (t *tunnel) pipe(dst, src net.Conn, account func(n int) bool) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	idle := t.g.cfg.Limits.IdleTimeout
	for {
		_ = src.SetReadDeadline(time.Now().Add(idle))
		n, err := src.Read(buf)
		if n > 0 {
			t.active.Store(time.Now().UnixNano())
			if !account(n) {
				t.close("closed: exfiltration budget exhausted")
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				t.close("closed: " + werr.Error())
				return
			}
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF):
				closeWrite(dst) // half-close: the other direction may still be sending
			case errors.As(err, &ne) && ne.Timeout():
				if since := time.Since(time.Unix(0, t.active.Load())); since < idle {
					continue // the other direction was busy: not idle
				}
				t.close(fmt.Sprintf("closed: idle for %s", idle))
			default:
				t.close("closed")
			}
			return
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
