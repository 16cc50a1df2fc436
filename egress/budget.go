package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/egress/budget"
	"rampart.dev/rampart/policy"
)

// errBudget ends a write that the subject's exfiltration budget does not allow.
var errBudget = errors.New("exfiltration budget exhausted")

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

func limitOf(b *policy.EgressBudget) budget.Limit {
	return budget.Limit{Bytes: int64(b.Bytes), Window: b.Window.Std()}
}

// exhausted reports whether the subject has nothing left to send, and when it will again.
func (g *Gateway) exhausted(subject string, b *policy.EgressBudget) (bool, time.Time) {
	if b == nil {
		return false, time.Time{}
	}
	return g.meter.Exhausted(subject, limitOf(b), g.cfg.Now())
}

// spend counts n bytes a subject sends out; false means they do not fit in its budget and the
// connection must end (they are not sent). The first exhaustion in a window's length is
// written to the ledger.
func (g *Gateway) spend(ctx context.Context, d Decision, b *policy.EgressBudget, n int) bool {
	g.m.bytes.WithLabelValues("out").Add(float64(n))
	if b == nil {
		return true
	}
	ok, report := g.meter.Spend(d.Subject, limitOf(b), int64(n), g.cfg.Now())
	if ok {
		return true
	}
	if report {
		g.m.budget.Inc()
		e := audit.Event{Code: "egress.budget_exhausted", Class: audit.ClassNetworkActivity, Activity: activityRefuse, ActivityName: "Refuse",
			Severity: audit.SeverityHigh, Time: g.cfg.Now(), Actor: actorOf(d.Subject),
			Message: fmt.Sprintf("%s exceeded its egress budget of %d bytes per %s while sending to %s; its connections are cut until enough of the window has passed",
				who(d.Subject), b.Bytes, policy.FormatDuration(b.Window.Std()), d.Target),
			Details: map[string]any{"subject": d.Subject, "destination": d.Target.String(), "budget_bytes": int64(b.Bytes), "window": policy.FormatDuration(b.Window.Std())},
			Extra:   map[string]any{"dst_endpoint": endpoint(d.Target, d.Addr), "disposition": "Blocked", "disposition_id": 2}}
		g.record(e) // queued: the data path does not wait on the ledger
		g.writeDecisionLine(e)
	}
	return false
}

// meteredConn is the upstream connection of a forwarded request: every byte written to it —
// request line, headers, body and its chunked framing — leaves the gateway and is counted
// before it is written. A write that does not fit fails and closes the connection.
type meteredConn struct {
	net.Conn
	spend func(n int) bool
	over  atomic.Bool

	// The start of what the destination answered, kept so that the response's Connection
	// header can be read as sent: Go's Transport drops the whole header when it says "close",
	// and with it the names of the hop-by-hop headers it listed.
	mu   sync.Mutex
	head []byte
}

// maxResponseHead bounds the recorded start of a response (and the response heads the gateway
// accepts).
const maxResponseHead = 64 << 10

func (c *meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if room := maxResponseHead - len(c.head); room > 0 {
			c.head = append(c.head, p[:min(n, room)]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// responseConnection returns the Connection header values of the final (non-1xx) response head
// the destination sent, as sent.
func (c *meteredConn) responseConnection() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	rest := c.head
	for {
		end := bytes.Index(rest, []byte("\r\n\r\n"))
		if end < 0 {
			return nil
		}
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest[:end+4])))
		status, err := tp.ReadLine()
		if err != nil {
			return nil
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			return nil
		}
		if _, code, _ := strings.Cut(status, " "); strings.HasPrefix(code, "1") {
			rest = rest[end+4:]
			continue
		}
		return h.Values("Connection")
	}
}

func (c *meteredConn) Write(p []byte) (int, error) {
	if len(p) > 0 && !c.spend(len(p)) {
		c.over.Store(true)
		c.Conn.Close()
		return 0, errBudget
	}
	return c.Conn.Write(p)
}

// headSize is the size of a request head as the client sent it (near enough: the parsed form
// loses only optional whitespace). A CONNECT head does not reach the destination, but its
// target name is resolved and every part of it is something the client chose to send out, so
// it is counted.
func headSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}
