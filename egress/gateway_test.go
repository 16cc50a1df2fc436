package egress_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// syncBuffer is a goroutine-safe buffer for the decision log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echoServer is a TCP origin that echoes what it receives; it counts connections.
type echoServer struct {
	ln    net.Listener
	conns atomic.Int64
}

func newEcho(t *testing.T) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.conns.Add(1)
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return e
}

func (e *echoServer) port() int { return e.ln.Addr().(*net.TCPAddr).Port }

// rig is a gateway over a real SQLite store, workflow and decision index, with a policy written
// for the test's ports.
type rig struct {
	t      *testing.T
	ctx    context.Context
	store  *sqlstore.DB
	clock  *clocktest.Clock
	pol    atomic.Pointer[policy.Policy]
	svc    *access.Service
	ix     *authz.Index
	tokens *identity.Tokens
	gw     *egress.Gateway
	addr   string
	dlog   *syncBuffer
}

const basePolicy = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec:
  admin_group: admins
  egress_deny: [%s]
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: researchers}
spec: {members: [alice, carol]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: security}
spec: {members: [dave]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [erin]}
`

func parsePolicy(t *testing.T, deny string, docs ...string) *policy.Policy {
	t.Helper()
	src := fmt.Sprintf(basePolicy, deny) + strings.Join(docs, "")
	p, err := policy.Parse([]policy.File{{Name: "test.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatalf("policy:\n%v\n%s", err, src)
	}
	return p
}

func egressPolicy(name, subjects, mode string, hosts []string, port int, budget string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "---\napiVersion: rampart.dev/v1alpha1\nkind: EgressPolicy\nmetadata: {name: %s}\nspec:\n  subjects: [%s]\n  mode: %s\n  allow:\n", name, subjects, mode)
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - {host: %q, ports: [%d]}\n", h, port)
	}
	if budget != "" {
		fmt.Fprintf(&b, "  budget: {bytes: %s, window: 1h}\n", budget)
	}
	return b.String()
}

// jitDocs declares egress/127.0.0.1:<port> as a resource that security approves.
func jitDocs(port int) string {
	return fmt.Sprintf(`---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: "egress/127.0.0.1:%[1]d"}
spec: {kind: egress, sensitivity: sensitive, owners: [security]}
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: egress-local}
spec:
  rules: [{actions: [connect], resources: ["egress/127.0.0.1:%[1]d"]}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: egress}
spec:
  match: {resources: ["egress/**"]}
  steps: [{from: [security], count: 1}]
  max_duration: 8h
`, port)
}

type rigOptions struct {
	allow    []string
	resolver *net.Resolver
	limits   egress.Limits
	tls      *tls.Config
	revoked  func(*x509.Certificate) bool
	logger   *slog.Logger
}

func newRig(t *testing.T, pol *policy.Policy, o rigOptions) *rig {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, ctx: context.Background(), store: st, clock: clocktest.New(time.Now()), dlog: &syncBuffer{}}
	r.pol.Store(pol)
	r.svc = access.New(st, pol, access.Options{Now: r.clock.Now})
	r.ix = authz.New(st, pol, authz.Options{Now: r.clock.Now, MaxStaleness: time.Hour})
	if err := r.ix.Load(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.svc.OnGrantChange(r.ix.Apply)
	r.tokens = &identity.Tokens{Store: st, Now: r.clock.Now}
	var ranges []netip.Prefix
	for _, a := range o.allow {
		ranges = append(ranges, netip.MustParsePrefix(a))
	}
	r.gw = egress.New(egress.Config{
		Policy: r.pol.Load, Grants: r.ix, Tokens: r.tokens, Revoked: o.revoked, Cluster: "prod",
		Record: func(ctx context.Context, e audit.Event) error {
			return st.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, e); return err })
		},
		Addr: egress.AddrPolicy{Allow: ranges}, Resolver: o.resolver, Now: r.clock.Now, Limits: o.limits, DecisionLog: r.dlog, Logger: o.logger,
	})
	r.svc.OnGrantChange(func([]access.Grant) { r.gw.Revalidate() })
	ln, err := r.gw.Listen(r.ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.tls != nil {
		ln = tls.NewListener(ln, o.tls)
	}
	srv := r.gw.HTTPServer(nil)
	srv.ReadHeaderTimeout = 500 * time.Millisecond
	go func() { _ = r.gw.Serve(srv, ln) }()
	ctx, cancel := context.WithCancel(r.ctx)
	go r.gw.Run(ctx)
	t.Cleanup(func() { cancel(); srv.Close() })
	r.addr = ln.Addr().String()
	return r
}

func (r *rig) token(user string) string {
	r.t.Helper()
	secret, _, err := r.tokens.Issue(r.ctx, user, identity.KindUser, "test", user, 24*time.Hour)
	if err != nil {
		r.t.Fatal(err)
	}
	return secret
}

// connect sends CONNECT through the gateway and returns the status, the body of a refusal, and
// the tunnel when it was established.
func (r *rig) connect(target, token string) (int, string, net.Conn) {
	r.t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	return connectOn(r.t, c, target, token)
}

func connectOn(t *testing.T, c net.Conn, target, token string) (int, string, net.Conn) {
	t.Helper()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if token != "" {
		req += "Proxy-Authorization: Bearer " + token + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return 0, err.Error(), nil
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		return resp.StatusCode, string(body), nil
	}
	return 200, "", &bufferedConn{Conn: c, r: br}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q, %v", msg, buf, err)
	}
}

// waitClosed waits for the peer to close the tunnel.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the tunnel was not closed")
			}
			return
		}
	}
}

func TestDefaultDenyAndPolicyAllow(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())

	status, _, c := r.connect(target, r.token("alice"))
	if status != 200 {
		t.Fatalf("alice: %d", status)
	}
	roundTrip(t, c, "hello through the gateway")
	c.Close()

	// bob has no policy: 403, saying which rule and how to ask.
	status, body, _ := r.connect(target, r.token("bob"))
	if status != 403 || !strings.Contains(body, "rule: default-deny") || !strings.Contains(body, "EgressPolicy") {
		t.Fatalf("bob: %d %q", status, body)
	}
	// No identity: 407 and the same explanation.
	status, body, _ = r.connect(target, "")
	if status != 407 || !strings.Contains(body, "unidentified") {
		t.Fatalf("anonymous: %d %q", status, body)
	}
	// A bad token is refused, never downgraded to the default rule.
	status, body, _ = r.connect(target, "rpt_forged")
	if status != 407 || !strings.Contains(body, "unknown token") {
		t.Fatalf("forged token: %d %q", status, body)
	}
	// Ports not listed are refused; the default for CONNECT rules is 443 only.
	status, _, _ = r.connect("127.0.0.1:"+strconv.Itoa(echo.port()+1), r.token("alice"))
	if status != 403 {
		t.Fatalf("unlisted port: %d", status)
	}
	// Every decision is an OCSF Network Activity line.
	r.gw.FlushDecisions()
	lines := strings.Split(strings.TrimSpace(r.dlog.String()), "\n")
	if len(lines) < 5 {
		t.Fatalf("%d decision lines", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["class_uid"].(float64) != 4001 {
			t.Fatalf("decision line %q: %v", l, err)
		}
	}
	if !strings.Contains(r.dlog.String(), `"event_code":"egress.allowed"`) || !strings.Contains(r.dlog.String(), `"disposition":"Blocked"`) {
		t.Fatalf("decision log lacks allow and block lines:\n%s", r.dlog.String())
	}
}

// Every spelling of a loopback address is recognised as loopback before any rule runs.
func TestIPSpellings(t *testing.T) {
	echo := newEcho(t)
	p := echo.port()
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1", "::1", "169.254.169.254"}, p, ""))
	closed := newRig(t, pol, rigOptions{})
	tok := closed.token("alice")
	spellings := []string{"127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:7f00:1]"}
	for _, s := range spellings {
		status, body, _ := closed.connect(s+":"+strconv.Itoa(p), tok)
		if status != 403 || !strings.Contains(body, "loopback") && !strings.Contains(body, "IPv4-mapped") && !strings.Contains(body, "::/96") {
			t.Errorf("%s: %d %q", s, status, body)
		}
	}
	for _, s := range []string{"169.254.169.254", "0xa9fea9fe", "0251.0376.0251.0376", "[fd00:ec2::254]", "10.0.0.1", "[64:ff9b::7f00:1]"} {
		status, body, _ := closed.connect(s+":"+strconv.Itoa(p), tok)
		if status != 403 {
			t.Errorf("%s: %d %q", s, status, body)
		}
	}
	if echo.conns.Load() != 0 {
		t.Fatalf("the gateway dialled a forbidden address %d times", echo.conns.Load())
	}
	// With loopback allowed, the odd spellings reach the same origin: they were normalised to
	// 127.0.0.1 before the rule (host 127.0.0.1) matched.
	open := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok = open.token("alice")
	for _, s := range []string{"2130706433", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"} {
		status, body, c := open.connect(s+":"+strconv.Itoa(p), tok)
		if status != 200 {
			t.Errorf("%s with loopback allowed: %d %q", s, status, body)
			continue
		}
		roundTrip(t, c, "x")
		c.Close()
	}
}

func TestDenyListWins(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, `"127.0.0.1"`, egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	status, body, _ := r.connect("127.0.0.1:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 403 || !strings.Contains(body, "deny list") {
		t.Fatalf("%d %q", status, body)
	}
}

func TestReportMode(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("trial", "group:researchers", "report", []string{"example.com"}, 443, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	status, _, c := r.connect("127.0.0.1:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 200 {
		t.Fatalf("report mode refused: %d", status)
	}
	roundTrip(t, c, "y")
	c.Close()
	r.gw.FlushDecisions()
	if !strings.Contains(r.dlog.String(), `"event_code":"egress.reported"`) || !strings.Contains(r.dlog.String(), "report mode") {
		t.Fatalf("report-mode decision not logged as such:\n%s", r.dlog.String())
	}
}

// A just-in-time destination: allowed while the grant is active; revocation and expiry close
// open tunnels and refuse new ones.
func TestJustInTimeGrant(t *testing.T) {
	echo := newEcho(t)
	p := echo.port()
	target := "127.0.0.1:" + strconv.Itoa(p)
	r := newRig(t, parsePolicy(t, "", jitDocs(p)), rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	status, body, _ := r.connect(target, tok)
	if status != 403 || !strings.Contains(body, "rampart request create --resource egress/127.0.0.1:"+strconv.Itoa(p)) {
		t.Fatalf("before the grant: %d %q", status, body)
	}
	grant := func(d time.Duration) access.Grant {
		c, err := r.svc.Create(r.ctx, access.CreateInput{Requester: "alice", Role: "egress-local", Reason: "x", Duration: d})
		if err != nil {
			t.Fatal(err)
		}
		rq, err := r.svc.Review(r.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: "dave", Decision: access.Approve})
		if err != nil {
			t.Fatal(err)
		}
		g, _ := r.store.Grant(r.ctx, rq.GrantID)
		return g
	}
	g := grant(time.Hour)
	status, _, c := r.connect(target, tok)
	if status != 200 {
		t.Fatalf("with the grant: %d", status)
	}
	roundTrip(t, c, "allowed")
	if _, err := r.svc.Revoke(r.ctx, g.ID, "dave", "done"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	if status, _, _ := r.connect(target, tok); status != 403 {
		t.Fatalf("after revocation: %d", status)
	}
	// Expiry, with the clock moved past it (and the index kept in sync, as the server does).
	grant(time.Hour)
	status, _, c = r.connect(target, tok)
	if status != 200 {
		t.Fatalf("with the second grant: %d", status)
	}
	roundTrip(t, c, "again")
	r.clock.Advance(time.Hour)
	if err := r.ix.Sync(r.ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c)
	status, body, _ = r.connect(target, tok)
	if status != 403 || !strings.Contains(body, "expired") {
		t.Fatalf("after expiry: %d %q", status, body)
	}
}

// fakeDNS answers A queries for rebind.test.: the first answer is 127.0.0.1 (allowed), every
// later one 10.0.0.1 (forbidden) — a DNS-rebinding attacker.
type fakeDNS struct {
	queries atomic.Int64
	answers func(n int64) []string
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	for _, q := range req.Question {
		if q.Qtype != dns.TypeA {
			continue // AAAA: no answer
		}
		n := f.queries.Add(1)
		for _, ip := range f.answers(n) {
			rr, _ := dns.NewRR(q.Name + " 0 IN A " + ip)
			m.Answer = append(m.Answer, rr)
		}
	}
	_ = w.WriteMsg(m)
}

func startDNS(t *testing.T, f *fakeDNS) *net.Resolver {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: f}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
}

func TestDNSRebindingCannotSwitchTheAddress(t *testing.T) {
	echo := newEcho(t)
	f := &fakeDNS{answers: func(n int64) []string {
		if n == 1 {
			return []string{"127.0.0.1"}
		}
		return []string{"10.0.0.1"}
	}}
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"rebind.test"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, resolver: startDNS(t, f)})
	status, body, c := r.connect("rebind.test:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 200 {
		t.Fatalf("rebind.test: %d %q", status, body)
	}
	roundTrip(t, c, "checked address")
	c.Close()
	// The gateway resolved once and dialled the address it checked: one A query, and the origin
	// at 127.0.0.1 got the connection.
	if echo.conns.Load() != 1 || f.queries.Load() != 1 {
		t.Fatalf("origin saw %d connections after %d A queries", echo.conns.Load(), f.queries.Load())
	}
	// The next resolution returns the forbidden address: refused.
	status, body, _ = r.connect("rebind.test:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 403 || !strings.Contains(body, "10.0.0.1") {
		t.Fatalf("rebound answer: %d %q", status, body)
	}
}

func TestMixedDNSAnswerRefused(t *testing.T) {
	echo := newEcho(t)
	f := &fakeDNS{answers: func(int64) []string { return []string{"127.0.0.1", "169.254.169.254"} }}
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"mixed.test"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, resolver: startDNS(t, f)})
	status, body, _ := r.connect("mixed.test:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 403 || !strings.Contains(body, "169.254.169.254") {
		t.Fatalf("mixed answer: %d %q", status, body)
	}
	if echo.conns.Load() != 0 {
		t.Fatal("the gateway connected despite a forbidden address in the answer")
	}
}

func TestBudgetExhaustion(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), "1000"))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	tok := r.token("alice")
	status, _, c := r.connect(target, tok)
	if status != 200 {
		t.Fatal(status)
	}
	roundTrip(t, c, strings.Repeat("a", 600))
	_, _ = c.Write([]byte(strings.Repeat("b", 600)))
	waitClosed(t, c)
	status, body, _ := r.connect(target, tok)
	if status != 403 || !strings.Contains(body, "exfiltration budget") {
		t.Fatalf("after exhaustion: %d %q", status, body)
	}
	// Another subject is unaffected.
	if status, _, c := r.connect(target, r.token("carol")); status != 200 {
		t.Fatalf("carol: %d", status)
	} else {
		c.Close()
	}
	recs, err := r.store.Entries(r.ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if strings.Contains(string(rec.Data), `"event_code":"egress.budget_exhausted"`) {
			n++
			if !strings.Contains(string(rec.Data), `"class_uid":4001`) || !strings.Contains(string(rec.Data), `"severity":"High"`) {
				t.Fatalf("ledger entry %s", rec.Data)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d budget entries in the ledger, want exactly 1", n)
	}
}

func TestPlainHTTP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			http.Error(w, "proxy credentials leaked to the origin", 500)
			return
		}
		fmt.Fprintf(w, "origin saw %s %s", r.Method, r.URL.Path)
	}))
	defer origin.Close()
	u, _ := url.Parse(origin.URL)
	port, _ := strconv.Atoi(u.Port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, port, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	proxyURL, _ := url.Parse("http://" + r.addr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), ProxyConnectHeader: http.Header{}}}
	req, _ := http.NewRequest("GET", origin.URL+"/data", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "origin saw GET /data" {
		t.Fatalf("plain HTTP: %d %q", resp.StatusCode, body)
	}
	// A Host header that differs from the request URL is refused.
	raw := "GET " + origin.URL + "/x HTTP/1.1\r\nHost: evil.example\r\nProxy-Authorization: Bearer " + tok + "\r\n\r\n"
	c, _ := net.Dial("tcp", r.addr)
	defer c.Close()
	_, _ = c.Write([]byte(raw))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("Host mismatch: %v %v", resp, err)
	}
	// https:// must use CONNECT.
	c2, _ := net.Dial("tcp", r.addr)
	defer c2.Close()
	_, _ = c2.Write([]byte("GET https://127.0.0.1:" + u.Port() + "/ HTTP/1.1\r\nHost: 127.0.0.1:" + u.Port() + "\r\n\r\n"))
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("https absolute URI: %v %v", resp, err)
	}
}

// Half-close: the client finishes sending, the origin still answers.
func TestHalfClose(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c) // until the client's half-close
		fmt.Fprintf(c, "got %d bytes", n)
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, port, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	status, _, c := r.connect("127.0.0.1:"+strconv.Itoa(port), r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	_, _ = c.Write([]byte("12345"))
	_ = c.(*bufferedConn).Conn.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got 5 bytes" {
		t.Fatalf("after half-close: %q %v", got, err)
	}
}

func TestTunnelLimitAndSlowloris(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egress.Limits{MaxTunnelsPerSubject: 2}})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	tok := r.token("alice")
	var open []net.Conn
	for i := 0; i < 2; i++ {
		status, _, c := r.connect(target, tok)
		if status != 200 {
			t.Fatalf("tunnel %d: %d", i, status)
		}
		open = append(open, c)
	}
	if status, body, _ := r.connect(target, tok); status != 429 || !strings.Contains(body, "2 open connections") {
		t.Fatalf("third tunnel: %d %q", status, body)
	}
	for _, c := range open {
		c.Close()
	}
	// A client that never finishes its request head is cut off (ReadHeaderTimeout).
	c, _ := net.Dial("tcp", r.addr)
	defer c.Close()
	_, _ = c.Write([]byte("CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Slow: "))
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("a slow client was not cut off")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("slow client cut off after %s", d)
	}
}

func TestPolicyReloadAndShutdown(t *testing.T) {
	echo := newEcho(t)
	p := echo.port()
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, p, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	target := "127.0.0.1:" + strconv.Itoa(p)
	status, _, kept := r.connect(target, r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	// A reload that still allows the destination keeps the tunnel open.
	r.pol.Store(parsePolicy(t, "", egressPolicy("research-v2", "group:researchers", "enforce", []string{"127.0.0.1", "example.com"}, p, "")))
	r.gw.Revalidate()
	roundTrip(t, kept, "still open")
	// A reload that removes it closes it.
	r.pol.Store(parsePolicy(t, "", egressPolicy("research-v3", "group:researchers", "enforce", []string{"example.com"}, p, "")))
	r.gw.Revalidate()
	waitClosed(t, kept)
	// Shutdown: open tunnels get a grace period, then are closed; new requests are refused.
	r.pol.Store(pol)
	status, _, c := r.connect(target, r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	r.gw.Shutdown(ctx)
	waitClosed(t, c)
	if status, _, _ := r.connect(target, r.token("alice")); status != 503 {
		t.Fatalf("after shutdown: %d", status)
	}
}

// pki is a throwaway CA with server and client certificates.
type pki struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	dir    string
}

func newPKI(t *testing.T, name string) *pki {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{caCert: cert, caKey: key, dir: t.TempDir()}
}

func (p *pki) issue(t *testing.T, serial int64, cn string, uri string, server bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMTLSIdentity(t *testing.T) {
	echo := newEcho(t)
	ca := newPKI(t, "workload-ca")
	srvCert := ca.issue(t, 10, "gateway", "", true)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	writePEM(t, filepath.Join(ca.dir, "ca.pem"), "CERTIFICATE", ca.caCert.Raw)
	writePEM(t, filepath.Join(ca.dir, "gw.pem"), "CERTIFICATE", srvCert.Certificate[0])
	writePEM(t, filepath.Join(ca.dir, "gw.key"), "PRIVATE KEY", keyDER)
	// Serial 21 is revoked.
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(21), RevocationTime: time.Now()}}}, ca.caCert, ca.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(ca.dir, "ca.crl"), "X509 CRL", crlDER)
	tcfg, cas, err := egress.ServerTLS(egress.TLSFiles{CertFile: filepath.Join(ca.dir, "gw.pem"), KeyFile: filepath.Join(ca.dir, "gw.key"), ClientCAFile: filepath.Join(ca.dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	revs := &egress.Revocations{}
	if err := revs.Load(filepath.Join(ca.dir, "ca.crl"), cas, time.Now()); err != nil {
		t.Fatal(err)
	}
	pol := parsePolicy(t, "", egressPolicy("trainer", "k8s:prod/ml/trainer", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, tls: tcfg, revoked: revs.Revoked})
	roots := x509.NewCertPool()
	roots.AddCert(ca.caCert)
	dial := func(cert tls.Certificate) (net.Conn, error) {
		c, err := tls.Dial("tcp", r.addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
		if err != nil {
			return nil, err
		}
		return c, c.Handshake()
	}
	target := "127.0.0.1:" + strconv.Itoa(echo.port())

	good := ca.issue(t, 20, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	c, err := dial(good)
	if err != nil {
		t.Fatal(err)
	}
	status, body, tun := connectOn(t, c, target, "")
	if status != 200 {
		t.Fatalf("good certificate: %d %q", status, body)
	}
	roundTrip(t, tun, "mtls")
	tun.Close()

	revoked := ca.issue(t, 21, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	c, err = dial(revoked)
	if err != nil {
		t.Fatal(err)
	}
	if status, body, _ := connectOn(t, c, target, ""); status != 403 || !strings.Contains(body, "revoked") {
		t.Fatalf("revoked certificate: %d %q", status, body)
	}

	other := newPKI(t, "someone-else")
	wrong := other.issue(t, 30, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)
	if c, err := dial(wrong); err == nil {
		// TLS 1.3 may report the client certificate refusal on the first read.
		status, _, _ := connectOn(t, c, target, "")
		if status == 200 {
			t.Fatal("a certificate from another CA opened a tunnel")
		}
	}
	// Another workload's certificate has no policy.
	nosy := ca.issue(t, 22, "nosy", "spiffe://prod/ns/ml/sa/nosy", false)
	c, _ = dial(nosy)
	if status, _, _ := connectOn(t, c, target, ""); status != 403 {
		t.Fatalf("unlisted workload: %d", status)
	}
}

// Raw request bytes of any shape get an HTTP error, never a panic or a connection anywhere.
func FuzzProxyRequest(f *testing.F) {
	for _, s := range []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET http://0x7f.1/ HTTP/1.1\r\nHost: 0x7f.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT [::ffff:127.0.0.1]:80 HTTP/1.1\r\nProxy-Authorization: Bearer rpt_x\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	pol, err := policy.Parse([]policy.File{{Name: "p.yaml", Data: []byte(fmt.Sprintf(basePolicy, "") + egressPolicy("any", "default", "enforce", []string{"example.com", "*.example.com"}, 443, ""))}})
	if err != nil {
		f.Fatal(err)
	}
	// No resolver can answer (the address is unroutable) and no range is allowed: nothing leaves.
	dead := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, fmt.Errorf("no DNS in the fuzzer")
	}}
	g := egress.New(egress.Config{Policy: func() *policy.Policy { return pol }, Resolver: dead, DecisionLog: io.Discard})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:9"
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if rec.Code < 400 {
			t.Fatalf("request %q answered %d", raw, rec.Code)
		}
	})
}

// A download that lasts longer than the idle timeout, with a silent client, is not idle; a
// tunnel where neither side sends is closed.
func TestIdleTimeoutCountsBothDirections(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	const chunks = 16
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				var first [1]byte
				if _, err := c.Read(first[:]); err != nil {
					return
				}
				if first[0] != 'd' { // "i": stay silent until the gateway closes the tunnel
					_, _ = io.Copy(io.Discard, c)
					return
				}
				for i := 0; i < chunks; i++ { // 16 × 50 ms = 800 ms, idle timeout 300 ms
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}(c)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, port, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egress.Limits{IdleTimeout: 300 * time.Millisecond}})
	target := "127.0.0.1:" + strconv.Itoa(port)
	tok := r.token("alice")

	status, _, c := r.connect(target, tok)
	if status != 200 {
		t.Fatal(status)
	}
	defer c.Close()
	_, _ = c.Write([]byte("d"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if len(got) != chunks {
		t.Fatalf("one-way download cut after %d of %d bytes (%v): the silent direction was taken for idleness", len(got), chunks, err)
	}

	status, _, idle := r.connect(target, tok)
	if status != 200 {
		t.Fatal(status)
	}
	defer idle.Close()
	_, _ = idle.Write([]byte("i"))
	start := time.Now()
	waitClosed(t, idle)
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle tunnel closed after %s, want about 300ms", d)
	}
}
