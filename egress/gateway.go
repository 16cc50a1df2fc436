// Package egress is Rampart's egress gateway: an HTTP forward proxy (CONNECT tunnels and plain
// http:// requests) that denies every destination unless an EgressPolicy or an active grant
// allows it.
//
// Every destination is normalised before any rule runs (ParseTarget: all IPv4 spellings,
// bracketed and zoned IPv6), host names are resolved once, every address is checked against the
// forbidden ranges (loopback, RFC 1918, link-local and cloud metadata, Azure's platform
// endpoint, CGNAT, site-local, multicast, unspecified, IPv4-mapped, IPv4-translated, NAT64 and
// 6to4 forms, the gateway's own addresses) and the gateway dials the address it checked, so DNS
// rebinding cannot switch it.
//
// Callers identify with a client certificate or a token in Proxy-Authorization (Bearer, or
// Basic with the token as the password, which is what every client sends for a proxy URL with
// credentials). Every open connection — tunnel or forwarded request — is revalidated every
// 100 ms and on every grant change: it is cut, both ways at once, when its grant expires or is
// revoked, when the policy stops allowing it, or when its caller's credential stops verifying
// (revoked, expired, its session ended, its person disabled: invariant 8). Every byte sent out
// (request lines, headers, bodies, CONNECT heads, tunnel bytes) is counted against per-subject
// exfiltration budgets in a sliding window (package egress/budget). Every decision is logged as
// an OCSF Network Activity record; budget exhaustion, every connection's bytes (egress.transfer)
// and refusals (egress.denied, aggregated per caller) are also ledger entries, written off the
// data path, so that detection sees egress in the ledger's one ordered stream. Refusals say why
// and what to do next in the status line, headers and body, since clients hide the body of a
// refused CONNECT.
//
// The files follow the concerns: target.go and addr.go normalise and classify destinations;
// decide.go applies the rules (and defines Grants, all the gateway asks of the decision
// engine); identity.go says who is asking; gateway.go admits a request; connect.go and
// forward.go serve CONNECT and http:// requests; tunnel.go copies a tunnel's bytes;
// conntrack.go keeps the open connections and revalidates them; budget.go counts what leaves;
// refuse.go and decisionlog.go say no to clients and record every decision; ledger.go writes
// the ledger entries.
package egress

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/egress/budget"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// Limits protect the gateway and its upstreams.
type Limits struct {
	// MaxTunnelsPerSubject bounds concurrent tunnels and requests per subject (default 256).
	MaxTunnelsPerSubject int
	// ConnectTimeout bounds DNS resolution plus dialling (default 10s).
	ConnectTimeout time.Duration
	// IdleTimeout closes a tunnel when neither side sent anything for this long (default 5m).
	IdleTimeout time.Duration
	// RevalidateEvery is how often open tunnels are checked against the policy and their grants
	// (default 100ms).
	RevalidateEvery time.Duration
	// TransferEvery is how often an open connection that carried bytes writes an
	// egress.transfer entry (default DefaultTransferEvery, one minute), on the gateway's clock.
	TransferEvery time.Duration
}

func (l *Limits) defaults() {
	if l.MaxTunnelsPerSubject == 0 {
		l.MaxTunnelsPerSubject = 256
	}
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = 10 * time.Second
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = 5 * time.Minute
	}
	if l.RevalidateEvery == 0 {
		l.RevalidateEvery = 100 * time.Millisecond
	}
}

// Config is what a Gateway needs.
type Config struct {
	// Policy returns the policy in force (it may change: reloads apply to new and open
	// connections alike).
	Policy func() *policy.Policy
	// Grants answers just-in-time grants and says who is disabled (an *authz.Index); nil
	// disables grants.
	Grants Grants
	// Tokens verifies Proxy-Authorization bearer tokens (API, session or service-account
	// tokens: an identity.Chain); nil refuses them.
	Tokens identity.Verifier
	// Record appends a ledger entry in its own transaction (budget exhaustion, egress.transfer);
	// the gateway calls it from one writer goroutine, never from a connection's data path. nil
	// records nothing in the ledger (the decision log still has every decision).
	Record func(ctx context.Context, e audit.Event) error
	// RecordAll, if set, appends several entries in one transaction, in order; the gateway
	// uses it instead of Record to write what is queued at once.
	RecordAll func(ctx context.Context, es []audit.Event) error
	// Refused records a refused connection (egress.denied), aggregated per caller
	// (refusals.Recorder.Record); nil records none.
	Refused Refused
	// Revoked reports whether a client certificate is revoked (the CRL); nil means none is.
	Revoked func(cert *x509.Certificate) bool
	// Cluster names the cluster in workload subjects built from SPIFFE IDs without one.
	Cluster string
	Addr    AddrPolicy
	// Resolver resolves destination names (net.DefaultResolver if nil).
	Resolver *net.Resolver
	Now      func() time.Time
	Limits   Limits
	Logger   *slog.Logger
	// DecisionLog receives one OCSF Network Activity JSON line per decision (standard error if
	// nil).
	DecisionLog io.Writer
	Metrics     *Metrics
}

// Gateway is the proxy. It is an http.Handler; serve it with an http.Server whose
// ReadHeaderTimeout cuts off slow clients.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	dlog    io.Writer
	lines   chan []byte
	pending sync.WaitGroup
	meter   budget.Meter
	m       *Metrics

	mu        sync.Mutex
	flows     map[*flow]struct{}
	perSubj   map[string]int
	listeners []netip.AddrPort
	closing   atomic.Bool
	forced    bool // Shutdown's grace period ended: close what registers

	ledger        chan ledgerJob // entries waiting for the ledger (ledger.go)
	ledgerPending pendingCount
	anonMu        sync.Mutex
	anon          anonymousTally
}

// New returns a gateway.
func New(cfg Config) *Gateway {
	cfg.Limits.defaults()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, dlog: cfg.DecisionLog, m: cfg.Metrics,
		flows: map[*flow]struct{}{}, perSubj: map[string]int{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.dlog == nil {
		g.dlog = os.Stderr
	}
	if g.m == nil {
		g.m = NewMetrics(nil)
	}
	g.lines = make(chan []byte, 4096)
	go g.writeLines()
	g.startLedger()
	return g
}

// AddListener records an address the gateway serves on, so that it never dials itself.
func (g *Gateway) AddListener(a netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listeners = append(g.listeners, a)
}

// ServeHTTP handles CONNECT tunnels and absolute-URI http:// requests.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.closing.Load() {
		g.refuse(w, r, http.StatusServiceUnavailable, "the gateway is shutting down; retry")
		return
	}
	subject, cred, perr := g.identify(r)
	if perr != nil {
		g.logDecision(r, Decision{Subject: subject, Rule: RuleRequest, Reason: perr.msg}, nil)
		g.refuseErr(w, r, perr)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		g.connect(w, r, subject, cred)
	case r.URL.IsAbs():
		g.forward(w, r, subject, cred)
	default:
		g.refuse(w, r, http.StatusBadRequest, "this is a forward proxy: send CONNECT host:port, or an absolute http:// URL")
	}
}

// admit decides a destination for a subject and, if allowed, resolves and checks its addresses.
func (g *Gateway) admit(ctx context.Context, r *http.Request, subject string, t Target, head int) (Decision, *proxyError) {
	pol := g.cfg.Policy()
	d := decideRules(pol, g.cfg.Grants, subject, t)
	deny := func(pe *proxyError, rule string) (Decision, *proxyError) {
		d.Allowed, d.Rule, d.Reason = false, rule, pe.msg
		g.logDecision(r, d, nil)
		return d, pe
	}
	if !d.Allowed {
		status := http.StatusForbidden
		if subject == "" && d.Rule != RuleDenyList {
			status = http.StatusProxyAuthRequired // an identity may open it; nothing opens the deny list
		}
		g.logDecision(r, d, nil)
		return d, &proxyError{status: status, msg: fmt.Sprintf("denied %s for %s: %s (rule: %s)", t, who(subject), d.Reason, d.Rule), next: nextStep(pol, subject, t, d.Rule)}
	}
	b := limitFor(pol, subject)
	if over, until := g.exhausted(subject, b); over {
		return deny(budgetSpent(t, subject, b, until), RuleBudget)
	}
	// What the client sent to ask (a CONNECT head) counts before the name is even resolved.
	if head > 0 && !g.spend(ctx, d, b, head) {
		_, until := g.exhausted(subject, b)
		return deny(budgetSpent(t, subject, b, until), RuleBudget)
	}
	addr, err := g.resolve(ctx, t)
	if err != nil {
		var pe *proxyError
		if errors.As(err, &pe) {
			return deny(pe, RuleAddress)
		}
		return deny(&proxyError{status: http.StatusBadGateway, msg: fmt.Sprintf("cannot resolve %s: %v", t.Host, err)}, RuleAddress)
	}
	d.Addr = addr
	return d, nil
}

func budgetSpent(t Target, subject string, b *policy.EgressBudget, until time.Time) *proxyError {
	return &proxyError{status: http.StatusForbidden,
		msg: fmt.Sprintf("denied %s for %s: the exfiltration budget of %s (%d bytes per %s) is spent (rule: budget)",
			t, who(subject), who(subject), b.Bytes, policy.FormatDuration(b.Window.Std())),
		next: fmt.Sprintf("Connections open again at %s; if the work needs more, ask the security team for a larger budget", until.UTC().Format(time.RFC3339))}
}

// resolve returns the one address to dial: the literal, or the first resolved address, after
// checking every resolved address (one forbidden answer refuses the destination, since a mixed
// answer is how rebinding attacks begin).
func (g *Gateway) resolve(ctx context.Context, t Target) (netip.AddrPort, error) {
	var addrs []netip.Addr
	if t.IP.IsValid() {
		addrs = []netip.Addr{t.IP}
	} else {
		rctx, cancel := context.WithTimeout(ctx, g.cfg.Limits.ConnectTimeout)
		defer cancel()
		got, err := g.cfg.Resolver.LookupNetIP(rctx, "ip", t.Host)
		if err != nil {
			return netip.AddrPort{}, err
		}
		addrs = got
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("no addresses")
	}
	for _, a := range addrs {
		if err := g.cfg.Addr.Check(a); err != nil {
			return netip.AddrPort{}, &proxyError{status: http.StatusForbidden, msg: fmt.Sprintf("denied %s: %v (rule: address)", t, err),
				next: "The gateway never connects there; if this destination is meant to be reached, an operator must allow the range (allow_ranges, --allow-range)"}
		}
		ap := netip.AddrPortFrom(a.Unmap(), uint16(t.Port))
		g.mu.Lock()
		for _, l := range g.listeners {
			if ap == l || (l.Addr().IsUnspecified() && ap.Port() == l.Port() && g.cfg.Addr.Own[ap.Addr()]) {
				g.mu.Unlock()
				return netip.AddrPort{}, &proxyError{status: http.StatusForbidden, msg: fmt.Sprintf("denied %s: it is the gateway itself (rule: address)", t)}
			}
		}
		g.mu.Unlock()
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(t.Port)), nil
}

// reserve counts a tunnel against the subject's limit.
func (g *Gateway) reserve(subject string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perSubj[subject] >= g.cfg.Limits.MaxTunnelsPerSubject {
		return false
	}
	g.perSubj[subject]++
	return true
}

func (g *Gateway) release(subject string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perSubj[subject]--; g.perSubj[subject] <= 0 {
		delete(g.perSubj, subject)
	}
}
