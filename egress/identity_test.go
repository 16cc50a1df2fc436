package egress_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/egress"

	"rampart.dev/rampart/identity"
)

// Issue 11, item 5 (invariant 8): the gateway's revalidation of open tunnels re-checked only
// rules and grants, so a tunnel opened under a policy (no grant) outlived the revocation of its
// token, its token's expiry and its person's disabling. Each now closes it at the next
// revalidation.
func TestRevalidationRechecksIdentity(t *testing.T) {
	echo := newEcho(t)
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	ctx := context.Background()

	// A revoked token.
	secret, tok, err := r.tokens.Issue(ctx, "alice", identity.KindUser, "laptop", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	status, _, c := r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice: %d", status)
	}
	roundTrip(t, c, "before")
	if err := r.tokens.Revoke(ctx, tok.ID, "alice", "lost"); err != nil {
		t.Fatal(err)
	}
	r.gw.Revalidate()
	waitClosed(t, c)
	// The line is written after the connections close: wait for it.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(r.dlog.String(), "no longer holds"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the decision log does not say why the tunnel closed:\n%s", r.dlog.String())
		}
		r.gw.FlushDecisions()
	}

	// An expired token, by the gateway's clock.
	secret, _, _ = r.tokens.Issue(ctx, "alice", identity.KindUser, "short", "alice", time.Minute)
	status, _, c = r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice again: %d", status)
	}
	roundTrip(t, c, "still")
	r.clock.Advance(2 * time.Minute)
	r.gw.Revalidate()
	waitClosed(t, c)

	// A disabled person, whatever their credential: the decision index knows.
	secret, _, _ = r.tokens.Issue(ctx, "alice", identity.KindUser, "third", "alice", time.Hour)
	status, _, c = r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice a third time: %d", status)
	}
	roundTrip(t, c, "third")
	r.ix.SetDisabled("alice", true)
	r.gw.Revalidate()
	waitClosed(t, c)
	if status, body, _ := r.connect(target, secret); status != 403 || !strings.Contains(body, "disabled") {
		t.Fatalf("a disabled person connected: %d %q", status, body)
	}
}

func TestProxyToken(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct{ in, tok, err string }{
		{"Bearer rpt_abc", "rpt_abc", ""},
		{"bearer   rpt_abc  ", "rpt_abc", ""},
		{"Basic " + b64("alice:rpt_abc"), "rpt_abc", ""},
		{"BASIC " + b64(":rpt_abc"), "rpt_abc", ""},                                  // no user name
		{"Basic " + b64("k8s:eyJhbGciOi.x.y"), "eyJhbGciOi.x.y", ""},                 // the first colon ends the user name
		{"Basic " + strings.TrimRight(b64("rampart:rpt_abcd"), "="), "rpt_abcd", ""}, // no padding
		{"Basic " + b64("rpt_abc"), "", "no colon"},                                  // no password
		{"Basic " + b64("rpt_abc:"), "", "empty password"},                           // the token as the user name
		{"Basic !!!", "", "not base64"},
		{"Basic " + b64("a:tok en"), "", "spaces"},
		{"Bearer rpt_a b", "", "space inside"},
		{"Digest username=x", "", `scheme "Digest" is not accepted`},
		{"Bearer", "", "must be"},
		{"", "", "must be"},
	} {
		tok, err := egress.ProxyToken(c.in)
		if c.err == "" {
			if err != nil || tok != c.tok {
				t.Errorf("%q: %q %v, want %q", c.in, tok, err, c.tok)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: %q %v, want an error with %q", c.in, tok, err, c.err)
		}
	}
}

// Proxy-Authorization is untrusted input: any value gives a token or an error, never a panic,
// and a token has no whitespace or control characters and is bounded.
func FuzzProxyToken(f *testing.F) {
	for _, s := range []string{"Bearer rpt_x", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:rpt_x")), "Basic Og==", "basic  dTp0", "Negotiate x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := egress.ProxyToken(h)
		if err != nil {
			if tok != "" {
				t.Fatalf("%q: a token with an error", h)
			}
			return
		}
		if tok == "" || len(tok) > 32<<10 || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("%q gave token %q", h, tok)
		}
	})
}

// startStream sends GET /stream of the slow origin through conn and returns the body after its
// first chunk.
func startStream(t *testing.T, conn net.Conn, o *slowOrigin, auth string) *bufio.Reader {
	t.Helper()
	target := "127.0.0.1:" + strconv.Itoa(o.port)
	head := "GET http://" + target + "/stream HTTP/1.1\r\nHost: " + target + "\r\n"
	if auth != "" {
		head += "Proxy-Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
		}
		t.Fatalf("stream through the gateway: %v %v %s", resp, err, body)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := readLine(t, conn, body); line != "chunk-1\n" {
		t.Fatalf("first chunk %q %v", line, err)
	}
	return body
}

// expectCut lets the origin send its next chunk and requires that the client never gets it.
func expectCut(t *testing.T, conn net.Conn, body *bufio.Reader, o *slowOrigin) {
	t.Helper()
	select {
	case o.next <- struct{}{}:
	case <-o.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin neither sent nor saw the gateway leave")
	}
	if line, err := readLine(t, conn, body); err == nil {
		t.Fatalf("the client still received %q", line)
	}
}

func basic(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("rampart:"+token))
}

// Issue 12, item 2 (invariant 8): identity is re-checked at every revalidation for forwarded
// requests as well as tunnels, whatever the credential: a bearer token, the same token as a
// Basic password, a client certificate. Before item 1 forwarded requests were never
// revalidated, so none of these cut a running download.
func TestForwardedRequestsRecheckIdentity(t *testing.T) {
	o := newSlowOrigin(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, o.port, ""),
		egressPolicy("trainer", "k8s:prod/ml/trainer", "enforce", []string{"127.0.0.1"}, o.port, ""))
	ctx := context.Background()
	for _, scheme := range []string{"Bearer", "Basic"} {
		auth := func(tok string) string {
			if scheme == "Basic" {
				return basic(tok)
			}
			return "Bearer " + tok
		}
		t.Run(scheme+" token revoked", func(t *testing.T) {
			r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
			secret, tok, err := r.tokens.Issue(ctx, "alice", identity.KindUser, "laptop", "alice", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := net.Dial("tcp", r.addr)
			defer c.Close()
			body := startStream(t, c, o, auth(secret))
			if err := r.tokens.Revoke(ctx, tok.ID, "alice", "lost"); err != nil {
				t.Fatal(err)
			}
			r.gw.Revalidate()
			expectCut(t, c, body, o)
		})
		t.Run(scheme+" token expired", func(t *testing.T) {
			r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
			secret, _, _ := r.tokens.Issue(ctx, "alice", identity.KindUser, "short", "alice", time.Minute)
			c, _ := net.Dial("tcp", r.addr)
			defer c.Close()
			body := startStream(t, c, o, auth(secret))
			r.clock.Advance(2 * time.Minute)
			r.gw.Revalidate()
			expectCut(t, c, body, o)
		})
		t.Run(scheme+" person disabled", func(t *testing.T) {
			r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
			c, _ := net.Dial("tcp", r.addr)
			defer c.Close()
			body := startStream(t, c, o, auth(r.token("alice")))
			r.ix.SetDisabled("alice", true)
			r.gw.Revalidate()
			expectCut(t, c, body, o)
		})
	}
	t.Run("client certificate revoked", func(t *testing.T) {
		m := newMTLSRig(t, pol)
		c := m.dial(t, m.ca.issue(t, 40, "trainer", "spiffe://prod/ns/ml/sa/trainer", false))
		body := startStream(t, c, o, "")
		m.revoke(t, 40)
		m.gw.Revalidate()
		expectCut(t, c, body, o)
	})
	t.Run("client certificate expired", func(t *testing.T) {
		m := newMTLSRig(t, pol)
		c := m.dial(t, m.ca.issue(t, 41, "trainer", "spiffe://prod/ns/ml/sa/trainer", false))
		body := startStream(t, c, o, "")
		m.clock.Advance(2 * time.Hour) // the certificate was issued for an hour
		m.gw.Revalidate()
		expectCut(t, c, body, o)
	})
}

// Tunnels opened with Basic credentials and with client certificates are re-checked too.
func TestTunnelsRecheckBasicAndCertificates(t *testing.T) {
	echo := newEcho(t)
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""),
		egressPolicy("trainer", "k8s:prod/ml/trainer", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	ctx := context.Background()
	t.Run("Basic token revoked", func(t *testing.T) {
		r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
		secret, tok, _ := r.tokens.Issue(ctx, "alice", identity.KindUser, "laptop", "alice", time.Hour)
		c, _ := net.Dial("tcp", r.addr)
		defer c.Close()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, basic(secret))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("Basic CONNECT: %v %v", resp, err)
		}
		tun := &bufferedConn{Conn: c, r: br}
		roundTrip(t, tun, "basic")
		if err := r.tokens.Revoke(ctx, tok.ID, "alice", "lost"); err != nil {
			t.Fatal(err)
		}
		r.gw.Revalidate()
		waitClosed(t, tun)
	})
	t.Run("client certificate revoked", func(t *testing.T) {
		m := newMTLSRig(t, pol)
		status, body, tun := connectOn(t, m.dial(t, m.ca.issue(t, 50, "trainer", "spiffe://prod/ns/ml/sa/trainer", false)), target, "")
		if status != 200 {
			t.Fatalf("mTLS CONNECT: %d %q", status, body)
		}
		roundTrip(t, tun, "mtls")
		m.revoke(t, 50)
		m.gw.Revalidate()
		waitClosed(t, tun)
	})
}

// Issue 12, item 5: clients given a proxy URL with credentials (http://USER:TOKEN@proxy) send
// them as Proxy-Authorization: Basic; the gateway takes the token from the password, whatever
// the user name, and challenges with both schemes it accepts. Go's own Transport here; the
// end-to-end tests drive curl, git, Python and Go's ProxyFromEnvironment.
func TestBasicProxyAuthorization(t *testing.T) {
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls origin for "+r.URL.Path)
	}))
	defer tlsOrigin.Close()
	plainOrigin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			http.Error(w, "proxy credentials leaked to the origin", 500)
			return
		}
		io.WriteString(w, "plain origin for "+r.URL.Path)
	}))
	defer plainOrigin.Close()
	port := func(s *httptest.Server) int { u, _ := url.Parse(s.URL); p, _ := strconv.Atoi(u.Port()); return p }
	pol := parsePolicy(t, "", egressPolicy("tls", "group:researchers", "enforce", []string{"127.0.0.1"}, port(tlsOrigin), ""),
		egressPolicy("plain", "group:researchers", "enforce", []string{"127.0.0.1"}, port(plainOrigin), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	get := func(user *url.Userinfo, target string) (int, string) {
		t.Helper()
		proxy := &url.URL{Scheme: "http", Host: r.addr, User: user}
		tr := tlsOrigin.Client().Transport.(*http.Transport).Clone()
		tr.Proxy = http.ProxyURL(proxy)
		resp, err := (&http.Client{Transport: tr}).Get(target)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, user := range []*url.Userinfo{url.UserPassword("alice", tok), url.UserPassword("anyone", tok), url.UserPassword("", tok)} {
		if status, body := get(user, tlsOrigin.URL+"/x"); status != 200 || body != "tls origin for /x" {
			t.Errorf("CONNECT as %q: %d %q", user.Username(), status, body)
		}
		if status, body := get(user, plainOrigin.URL+"/y"); status != 200 || body != "plain origin for /y" {
			t.Errorf("http:// as %q: %d %q", user.Username(), status, body)
		}
	}
	// A wrong password, or the token as the user name, is refused (never the default rule).
	if status, body := get(url.UserPassword("alice", "rpt_forged"), plainOrigin.URL+"/"); status != 407 || !strings.Contains(body, "unknown token") {
		t.Errorf("forged: %d %q", status, body)
	}
	if status, body := get(url.User(tok), plainOrigin.URL+"/"); status != 407 || !strings.Contains(body, "empty password") {
		t.Errorf("token as the user name: %d %q", status, body)
	}
	// The challenge names both schemes.
	c, br := r.sendHead("GET " + plainOrigin.URL + "/ HTTP/1.1\r\nHost: " + strings.TrimPrefix(plainOrigin.URL, "http://") + "\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Values("Proxy-Authenticate"); resp.StatusCode != 407 || len(got) != 2 || !strings.HasPrefix(got[0], "Basic realm=") || !strings.HasPrefix(got[1], "Bearer realm=") {
		t.Fatalf("challenge: %d %q", resp.StatusCode, got)
	}
}
