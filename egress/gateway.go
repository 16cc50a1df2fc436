// Package egress is Rampart's egress gateway: an HTTP forward proxy (CONNECT tunnels and plain
// http:// requests) that denies every destination unless an EgressPolicy or an active grant
// allows it.
//
// Every destination is normalised before any rule runs (ParseTarget: all IPv4 spellings,
// bracketed and zoned IPv6), host names are resolved once, every address is checked against the
// forbidden ranges (loopback, RFC 1918, link-local and cloud metadata, CGNAT, multicast,
// unspecified, IPv4-mapped, NAT64 and 6to4 forms, the gateway's own addresses) and the gateway
// dials the address it checked, so DNS rebinding cannot switch it. Tunnels opened under a grant
// close when the grant expires or is revoked, and every open tunnel closes when its caller's
// credential stops verifying (revoked, expired, its session ended, its person disabled:
// invariant 8), which is checked again at every revalidation. Bytes sent out are counted against per-subject
// exfiltration budgets. Every decision is logged as an OCSF Network Activity record; budget
// exhaustion is also a ledger entry.
package egress

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
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
	"rampart.dev/rampart/authz"
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
	// Index answers just-in-time grants; nil disables them.
	Index *authz.Index
	// Tokens verifies Proxy-Authorization bearer tokens (API, session or service-account
	// tokens: an identity.Chain); nil refuses them.
	Tokens identity.Verifier
	// Record appends a ledger entry (budget exhaustion); nil logs instead.
	Record func(ctx context.Context, e audit.Event) error
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
	budgets budgets
	m       *Metrics

	mu        sync.Mutex
	tunnels   map[*tunnel]struct{}
	perSubj   map[string]int
	listeners []netip.AddrPort
	closing   atomic.Bool
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
		tunnels: map[*tunnel]struct{}{}, perSubj: map[string]int{}, budgets: budgets{used: map[string]*usage{}}}
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
	return g
}

// AddListener records an address the gateway serves on, so that it never dials itself.
func (g *Gateway) AddListener(a netip.AddrPort) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listeners = append(g.listeners, a)
}

// proxyError is a refusal with its HTTP status.
type proxyError struct {
	status int
	msg    string
}

func (g *Gateway) refuse(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Bearer realm="rampart-egress"`)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Rampart-Egress", "denied")
	w.WriteHeader(status)
	fmt.Fprintf(w, "rampart egress: %s\n", msg)
}

// ServeHTTP handles CONNECT tunnels and absolute-URI http:// requests.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.closing.Load() {
		g.refuse(w, http.StatusServiceUnavailable, "the gateway is shutting down; retry")
		return
	}
	subject, cred, perr := g.identify(r)
	if perr != nil {
		g.logDecision(r, Decision{Subject: subject, Rule: RuleRequest, Reason: perr.msg}, nil)
		g.refuse(w, perr.status, perr.msg)
		return
	}
	switch {
	case r.Method == http.MethodConnect:
		g.connect(w, r, subject, cred)
	case r.URL.IsAbs():
		g.forward(w, r, subject)
	default:
		g.refuse(w, http.StatusBadRequest, "this is a forward proxy: send CONNECT host:port, or an absolute http:// URL")
	}
}

// admit decides a destination for a subject and, if allowed, resolves and checks its addresses.
func (g *Gateway) admit(ctx context.Context, r *http.Request, subject string, t Target) (Decision, *proxyError) {
	pol := g.cfg.Policy()
	d := decideRules(pol, g.cfg.Index, subject, t)
	deny := func(status int, rule, reason string) (Decision, *proxyError) {
		d.Allowed, d.Rule, d.Reason = false, rule, reason
		g.logDecision(r, d, nil)
		return d, &proxyError{status, reason}
	}
	if !d.Allowed {
		status := http.StatusForbidden
		if subject == "" {
			status = http.StatusProxyAuthRequired
		}
		g.logDecision(r, d, nil)
		return d, &proxyError{status, fmt.Sprintf("denied %s for %s: %s (rule: %s). %s", t, who(subject), d.Reason, d.Rule, howToAsk(pol, subject, t))}
	}
	now := g.cfg.Now()
	if over, resets := g.budgets.exhausted(subject, limitFor(pol, subject), now); over {
		return deny(http.StatusForbidden, RuleBudget, fmt.Sprintf("denied %s for %s: the exfiltration budget of %s is spent until %s", t, who(subject), who(subject), resets.UTC().Format(time.RFC3339)))
	}
	addr, err := g.resolve(ctx, t)
	if err != nil {
		var pe *proxyError
		if errors.As(err, &pe) {
			return deny(pe.status, RuleAddress, pe.msg)
		}
		return deny(http.StatusBadGateway, RuleAddress, fmt.Sprintf("cannot resolve %s: %v", t.Host, err))
	}
	d.Addr = addr
	return d, nil
}

func (pe *proxyError) Error() string { return pe.msg }

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
			return netip.AddrPort{}, &proxyError{http.StatusForbidden, fmt.Sprintf("denied %s: %v; the gateway never connects there unless the range is allowed (--allow-range)", t, err)}
		}
		ap := netip.AddrPortFrom(a.Unmap(), uint16(t.Port))
		g.mu.Lock()
		for _, l := range g.listeners {
			if ap == l || (l.Addr().IsUnspecified() && ap.Port() == l.Port() && g.cfg.Addr.Own[ap.Addr()]) {
				g.mu.Unlock()
				return netip.AddrPort{}, &proxyError{http.StatusForbidden, fmt.Sprintf("denied %s: it is the gateway itself", t)}
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

func (g *Gateway) connect(w http.ResponseWriter, r *http.Request, subject string, cred credential) {
	t, err := ParseTarget(r.Host, 0)
	if err != nil {
		g.logDecision(r, Decision{Subject: subject, Rule: RuleRequest, Reason: err.Error()}, nil)
		g.refuse(w, http.StatusBadRequest, fmt.Sprintf("CONNECT %q: %v", r.Host, err))
		return
	}
	if !g.reserve(subject) {
		msg := fmt.Sprintf("denied %s: %s already has %d open connections through the gateway", t, who(subject), g.cfg.Limits.MaxTunnelsPerSubject)
		g.logDecision(r, Decision{Subject: subject, Target: t, Rule: RuleLimit, Reason: msg}, nil)
		g.refuse(w, http.StatusTooManyRequests, msg)
		return
	}
	defer g.release(subject)
	d, perr := g.admit(r.Context(), r, subject, t)
	if perr != nil {
		g.refuse(w, perr.status, perr.msg)
		return
	}
	upstream, err := (&net.Dialer{Timeout: g.cfg.Limits.ConnectTimeout}).DialContext(r.Context(), "tcp", d.Addr.String())
	if err != nil {
		msg := fmt.Sprintf("allowed %s, but connecting to %s failed: %v", t, d.Addr, err)
		g.logDecision(r, d, errors.New(msg))
		g.refuse(w, http.StatusBadGateway, msg)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		g.refuse(w, http.StatusInternalServerError, "connection cannot be taken over for a tunnel")
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	if hc, ok := client.(*headConn); ok {
		hc.stopRecording()
	}
	// The tunnel is registered before the client hears 200, so a shutdown that begins now
	// either sees it (and closes it) or is seen by it (and it is refused).
	tun := g.open(d, cred, client, upstream)
	if tun == nil {
		_, _ = client.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
		client.Close()
		upstream.Close()
		return
	}
	defer g.forget(tun)
	g.logDecision(r, d, nil)
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		client.Close()
		upstream.Close()
		return
	}
	// Bytes the client sent after the CONNECT request are already buffered: send them first.
	var first []byte
	if n := buf.Reader.Buffered(); n > 0 {
		first, _ = buf.Reader.Peek(n)
	}
	tun.run(first)
}

// forward proxies one absolute-URI http:// request.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, subject string) {
	if r.URL.Scheme != "http" {
		g.refuse(w, http.StatusBadRequest, fmt.Sprintf("%s:// requests go through CONNECT; only http:// is forwarded as a request", r.URL.Scheme))
		return
	}
	t, err := ParseTarget(r.URL.Host, 80)
	if err != nil {
		g.refuse(w, http.StatusBadRequest, fmt.Sprintf("request URL host %q: %v", r.URL.Host, err))
		return
	}
	// The Host header must name the URL's host (Go's server drops it for absolute URIs, so read
	// it from the recorded head). Without the head, refuse rather than guess.
	if hc := connOf(r); hc != nil {
		raw, complete := hc.take()
		defer hc.take() // the next request on this connection starts afresh
		hosts, found := rawHosts(raw, r)
		if !complete || !found {
			g.refuse(w, http.StatusBadRequest, "cannot read this request's head (pipelined requests are not accepted); send one request at a time")
			return
		}
		if len(hosts) > 1 {
			g.refuse(w, http.StatusBadRequest, "more than one Host header")
			return
		}
		if len(hosts) == 1 {
			if th, err := ParseTarget(hosts[0], 80); err != nil || th != t {
				g.logDecision(r, Decision{Subject: subject, Target: t, Rule: RuleRequest, Reason: "Host header differs from the request URL"}, nil)
				g.refuse(w, http.StatusBadRequest, fmt.Sprintf("the Host header %q does not name the request URL's host %q", hosts[0], r.URL.Host))
				return
			}
		}
	}
	if !g.reserve(subject) {
		g.refuse(w, http.StatusTooManyRequests, fmt.Sprintf("%s already has %d open connections through the gateway", who(subject), g.cfg.Limits.MaxTunnelsPerSubject))
		return
	}
	defer g.release(subject)
	d, perr := g.admit(r.Context(), r, subject, t)
	if perr != nil {
		g.refuse(w, perr.status, perr.msg)
		return
	}
	g.logDecision(r, d, nil)
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Host = t.String()
	out.Host = t.String()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	pol := g.cfg.Policy()
	budget := limitFor(pol, subject)
	if out.Body != nil {
		out.Body = &countingBody{r: out.Body, onRead: func(n int) bool { return g.spend(r.Context(), d, budget, n) }}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: 60 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: g.cfg.Limits.ConnectTimeout}).DialContext(ctx, "tcp", d.Addr.String())
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		g.refuse(w, http.StatusBadGateway, fmt.Sprintf("allowed %s, but the request failed: %v", t, err))
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	n, _ := io.Copy(w, resp.Body)
	g.m.bytes.WithLabelValues("in").Add(float64(n))
}

var hopHeaders = []string{"Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate", "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

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

// open registers a tunnel, or returns nil when the gateway is shutting down.
func (g *Gateway) open(d Decision, cred credential, client, upstream net.Conn) *tunnel {
	t := &tunnel{g: g, d: d, cred: cred, client: client, upstream: upstream, budget: limitFor(g.cfg.Policy(), d.Subject), done: make(chan struct{})}
	t.active.Store(time.Now().UnixNano())
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing.Load() {
		return nil
	}
	g.tunnels[t] = struct{}{}
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
		d := decideRules(pol, g.cfg.Index, t.d.Subject, t.d.Target)
		if !d.Allowed {
			t.close(fmt.Sprintf("closed: %s", d.Reason))
		}
	}
}

// Shutdown stops new connections and waits for open tunnels to finish until ctx ends, then
// closes the rest.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.mu.Lock() // ordered with open: every tunnel is counted below or refused
	g.closing.Store(true)
	g.mu.Unlock()
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

// OCSF Network Activity activities.
const (
	activityOpen   = 1
	activityClose  = 2
	activityRefuse = 5
)

func actorOf(subject string) string {
	if subject == "" {
		return "anonymous"
	}
	return subject
}

func endpoint(t Target, a netip.AddrPort) map[string]any {
	e := map[string]any{"port": t.Port}
	if t.IP.IsValid() {
		e["ip"] = t.IP.String()
	} else {
		e["hostname"] = t.Host
	}
	if a.IsValid() {
		e["ip"] = a.Addr().String()
	}
	return e
}

// logDecision writes the OCSF line for a decision and counts it.
func (g *Gateway) logDecision(r *http.Request, d Decision, failure error) {
	result := "denied"
	line := netActivity{ActivityID: activityRefuse, ActivityName: "Refuse", Disposition: "Blocked", DispositionID: 2, SeverityID: audit.SeverityLow, Severity: "Low"}
	switch {
	case d.Reported:
		result, line.ActivityID, line.ActivityName, line.Disposition, line.DispositionID = "reported", activityOpen, "Open", "Allowed", 1
	case d.Allowed && failure == nil:
		result, line.ActivityID, line.ActivityName, line.Disposition, line.DispositionID = "allowed", activityOpen, "Open", "Allowed", 1
		line.SeverityID, line.Severity = audit.SeverityInformational, "Informational"
	case d.Allowed:
		result, line.ActivityID, line.ActivityName = "failed", 4, "Fail"
	}
	g.m.decisions.WithLabelValues(result, d.Rule).Inc()
	line.Message = d.Reason
	if failure != nil {
		line.Message = failure.Error()
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		line.Src = &lineEndpoint{IP: ap.Addr().String(), Port: int(ap.Port())}
	}
	line.Dst = dstEndpoint(d.Target, d.Addr)
	line.Unmapped = lineDetails{Rule: d.Rule, RuleName: d.Name, Result: result, Method: r.Method, GrantID: d.GrantID}
	if d.GrantID != "" {
		line.Unmapped.GrantExpiresAt = d.GrantExpires.UTC().Format(time.RFC3339)
	}
	g.emit("egress."+result, d.Subject, line)
}

// netActivity is an OCSF Network Activity (class 4001) record, encoded from a struct so that a
// decision costs a few microseconds, not a map walk.
type netActivity struct {
	ActivityID    int           `json:"activity_id"`
	ActivityName  string        `json:"activity_name"`
	Actor         lineActor     `json:"actor"`
	CategoryName  string        `json:"category_name"`
	CategoryUID   int           `json:"category_uid"`
	ClassName     string        `json:"class_name"`
	ClassUID      int           `json:"class_uid"`
	Disposition   string        `json:"disposition,omitempty"`
	DispositionID int           `json:"disposition_id,omitempty"`
	Dst           *lineEndpoint `json:"dst_endpoint,omitempty"`
	Message       string        `json:"message"`
	Metadata      lineMetadata  `json:"metadata"`
	Severity      string        `json:"severity"`
	SeverityID    int           `json:"severity_id"`
	Src           *lineEndpoint `json:"src_endpoint,omitempty"`
	Time          int64         `json:"time"`
	TimeDT        string        `json:"time_dt"`
	TypeUID       int           `json:"type_uid"`
	Unmapped      lineDetails   `json:"unmapped"`
}

type lineActor struct {
	User struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"user"`
}

type lineEndpoint struct {
	Hostname string `json:"hostname,omitempty"`
	IP       string `json:"ip,omitempty"`
	Port     int    `json:"port,omitempty"`
}

type lineMetadata struct {
	EventCode string `json:"event_code"`
	LogName   string `json:"log_name"`
	Product   struct {
		Name       string `json:"name"`
		VendorName string `json:"vendor_name"`
	} `json:"product"`
	Version string `json:"version"`
}

type lineDetails struct {
	GrantExpiresAt string `json:"grant_expires_at,omitempty"`
	GrantID        string `json:"grant_id,omitempty"`
	Method         string `json:"method,omitempty"`
	Result         string `json:"result,omitempty"`
	Rule           string `json:"rule,omitempty"`
	RuleName       string `json:"rule_name,omitempty"`
}

func dstEndpoint(t Target, a netip.AddrPort) *lineEndpoint {
	e := &lineEndpoint{Port: t.Port}
	if t.IP.IsValid() {
		e.IP = t.IP.String()
	} else {
		e.Hostname = t.Host
	}
	if a.IsValid() {
		e.IP = a.Addr().String()
	}
	return e
}

// emit fills the common fields and queues the line for the decision log.
func (g *Gateway) emit(code, subject string, line netActivity) {
	now := g.cfg.Now()
	line.Actor.User.Name, line.Actor.User.Type = actorOf(subject), "User"
	line.CategoryName, line.CategoryUID = "Network Activity", 4
	line.ClassName, line.ClassUID = "Network Activity", audit.ClassNetworkActivity
	line.Metadata.EventCode, line.Metadata.LogName, line.Metadata.Version = code, "rampart-egress", audit.OCSFVersion
	line.Metadata.Product.Name, line.Metadata.Product.VendorName = "Rampart", "Rampart"
	line.Time, line.TimeDT = now.UnixMilli(), now.UTC().Format(time.RFC3339Nano)
	line.TypeUID = audit.ClassNetworkActivity*100 + line.ActivityID
	if line.Severity == "" {
		line.SeverityID, line.Severity = audit.SeverityInformational, "Informational"
	}
	b, err := json.Marshal(line)
	if err != nil {
		g.log.Error("encode decision", "err", err)
		return
	}
	g.queueLine(append(b, '\n'))
}

// queueLine hands a line to the writer goroutine; when the queue is full the caller waits, so
// no decision is ever dropped.
func (g *Gateway) queueLine(b []byte) {
	g.pending.Add(1)
	g.lines <- b
}

// writeLines writes queued lines, flushing whenever the queue is empty.
func (g *Gateway) writeLines() {
	w := bufio.NewWriterSize(g.dlog, 64<<10)
	for b := range g.lines {
		_, _ = w.Write(b)
		if len(g.lines) == 0 {
			_ = w.Flush()
		}
		g.pending.Done()
	}
}

// FlushDecisions waits until every queued decision line is written.
func (g *Gateway) FlushDecisions() { g.pending.Wait() }

// writeDecisionLine queues a full audit event (budget exhaustion, tunnel closed) as a line.
func (g *Gateway) writeDecisionLine(e audit.Event) {
	b, err := audit.EncodeLog(e)
	if err != nil {
		g.log.Error("encode decision", "err", err)
		return
	}
	g.queueLine(append(b, '\n'))
}

// tunnel is one open CONNECT tunnel.
type tunnel struct {
	g                *Gateway
	d                Decision
	cred             credential // how the caller proved who they are, checked again at every revalidation
	client, upstream net.Conn
	budget           *policy.EgressBudget
	once             sync.Once
	done             chan struct{}
	why              atomic.Value // string
	active           atomic.Int64 // unix nanos of the last byte in either direction
}

// close ends the tunnel at once, saying why in the log.
func (t *tunnel) close(why string) {
	t.once.Do(func() {
		t.why.Store(why)
		t.client.Close()
		t.upstream.Close()
		close(t.done)
		t.g.log.Info("egress tunnel closed", "subject", t.d.Subject, "destination", t.d.Target.String(), "why", why)
		t.g.writeDecisionLine(audit.Event{Code: "egress.closed", Class: audit.ClassNetworkActivity, Activity: activityClose, ActivityName: "Close",
			Time: t.g.cfg.Now(), Actor: actorOf(t.d.Subject), Message: why, Details: map[string]any{"rule": t.d.Rule, "rule_name": t.d.Name},
			Extra: map[string]any{"dst_endpoint": endpoint(t.d.Target, t.d.Addr)}})
	})
}

const copyBuffer = 32 << 10

// run copies both ways until both directions end, handling half-close: when one side finishes
// sending, the other side's write half is closed and the other direction goes on.
func (t *tunnel) run(first []byte) {
	t.g.m.tunnels.Inc()
	defer t.g.m.tunnels.Dec()
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // client → upstream: counted against the budget
		defer wg.Done()
		if len(first) > 0 {
			if !t.g.spend(ctx, t.d, t.budget, len(first)) {
				t.close("closed: exfiltration budget exhausted")
				return
			}
			if _, err := t.upstream.Write(first); err != nil {
				t.close("closed: " + err.Error())
				return
			}
		}
		t.pipe(t.upstream, t.client, func(n int) bool { return t.g.spend(ctx, t.d, t.budget, n) })
	}()
	go func() { // upstream → client
		defer wg.Done()
		t.pipe(t.client, t.upstream, func(n int) bool { t.g.m.bytes.WithLabelValues("in").Add(float64(n)); return true })
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
