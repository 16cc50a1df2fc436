package egress_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/egress"
	"rampart.dev/rampart/policy"
)

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
