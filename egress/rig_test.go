package egress_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// The test rig: a real gateway over a real SQLite store, workflow and decision index, and the
// origins and clients the tests drive it with.

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
	// refusals aggregates egress.denied entries, as the server's recorder does.
	refusals *refusals.Recorder
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
	// record replaces the ledger writer (default: append to the rig's store).
	record func(ctx context.Context, e audit.Event) error
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
	record := o.record
	if record == nil {
		record = func(ctx context.Context, e audit.Event) error {
			return st.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, e); return err })
		}
	}
	r.refusals = refusals.New(refusals.Options{Record: record, Now: r.clock.Now})
	r.gw = egress.New(egress.Config{
		Policy: r.pol.Load, Grants: r.ix, Tokens: r.tokens, Revoked: o.revoked, Cluster: "prod",
		Record: record, Refused: r.refusals.Record,
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
	t.Cleanup(func() {
		cancel()
		srv.Close() // does not wait for hijacked connections: the tunnels
		// Close what is still open and wait until every flow is untracked, so that no tunnel's
		// goroutine outlives the test (the race detector caught one reading the rig's clock as
		// it logged its close after TestReportMode had returned).
		done, stop := context.WithCancel(context.Background())
		stop()
		r.gw.Shutdown(done)
	})
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

// grant has alice request role for d and dave approve it.
func (r *rig) grant(role string, d time.Duration) access.Grant {
	r.t.Helper()
	c, err := r.svc.Create(r.ctx, access.CreateInput{Requester: "alice", Role: role, Reason: "x", Duration: d})
	if err != nil {
		r.t.Fatal(err)
	}
	rq, err := r.svc.Review(r.ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: "dave", Decision: access.Approve})
	if err != nil {
		r.t.Fatal(err)
	}
	g, err := r.store.Grant(r.ctx, rq.GrantID)
	if err != nil {
		r.t.Fatal(err)
	}
	return g
}

// sendHead opens a connection to the gateway and writes a request head.
func (r *rig) sendHead(head string) (net.Conn, *bufio.Reader) {
	r.t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		r.t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// readLine reads one line of a streamed body, failing the test if none comes within 10 s.
func readLine(t *testing.T, c net.Conn, br *bufio.Reader) (string, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := br.ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("nothing arrived within 10 s")
	}
	return line, err
}
