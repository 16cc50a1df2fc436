package egress_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts every byte its connections read: what reached the origin.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// budgetEntries counts the egress.budget_exhausted entries in the ledger.
func (r *rig) budgetEntries() int {
	r.t.Helper()
	r.gw.FlushLedger()
	recs, err := r.store.Entries(r.ctx, 0, 100000)
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if strings.Contains(string(rec.Data), `"event_code":"egress.budget_exhausted"`) {
			n++
		}
	}
	return n
}

// Issue 12, item 3: request lines and headers were never counted, so 60 GETs with about 24 KB
// of headers each carried 1.4 MB through a 64 KiB/h budget with no budget entry. Now every byte
// written to the destination counts: the third request does not fit, the rest are refused, at
// most the budget reached the origin, and the ledger has one entry.
func TestHeadersCountAgainstTheBudget(t *testing.T) {
	var received atomic.Int64
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	origin.Listener = countingListener{origin.Listener, &received}
	origin.Start()
	defer origin.Close()
	u, _ := url.Parse(origin.URL)
	port, _ := strconv.Atoi(u.Port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, port, "64KiB"))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	proxyURL, _ := url.Parse("http://" + r.addr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	pad := strings.Repeat("x", 4000)
	ok, refused := 0, 0
	for i := 0; i < 60; i++ {
		req, _ := http.NewRequest("GET", origin.URL+"/data?i="+strconv.Itoa(i), nil)
		req.Header.Set("Proxy-Authorization", "Bearer "+tok)
		for h := 0; h < 6; h++ {
			req.Header.Set("X-Pad-"+strconv.Itoa(h), pad) // 6 × 4 KB: about 24 KB of headers
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == 200:
			ok++
		case resp.StatusCode == 403 && strings.Contains(string(body), "exfiltration budget"):
			refused++
		default:
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if ok != 2 || refused != 58 {
		t.Fatalf("%d requests went through and %d were refused; want 2 (48 KB of headers) and 58", ok, refused)
	}
	if got := received.Load(); got > 64<<10 {
		t.Fatalf("the origin received %d bytes through a budget of %d", got, 64<<10)
	}
	if n := r.budgetEntries(); n != 1 {
		t.Fatalf("%d budget entries in the ledger, want 1", n)
	}
}

// Issue 12, item 3: CONNECT heads count too (the client chose every byte of them, and the name
// they carry is resolved): a subject that opens tunnels with large heads and sends nothing
// through them still spends its budget.
func TestConnectHeadsCountAgainstTheBudget(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), "64KiB"))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	head := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + tok + "\r\n"
	for h := 0; h < 6; h++ {
		head += "X-Pad-" + strconv.Itoa(h) + ": " + strings.Repeat("y", 4000) + "\r\n"
	}
	head += "\r\n"
	statuses := ""
	for i := 0; i < 10; i++ {
		c, br := r.sendHead(head)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatalf("CONNECT %d: %v", i, err)
		}
		statuses += strconv.Itoa(resp.StatusCode) + " "
		c.Close()
	}
	if statuses != "200 200 403 403 403 403 403 403 403 403 " {
		t.Fatalf("CONNECT answers %s; want two tunnels (48 KB of heads), then refusals", statuses)
	}
	if n := r.budgetEntries(); n != 1 {
		t.Fatalf("%d budget entries in the ledger, want 1", n)
	}
}

// Issue 12, item 3: with fixed windows a subject could send its whole budget just before the
// hour and again just after it. The window slides: the second half is refused.
func TestBudgetWindowSlides(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), "4000"))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	now := r.clock.Now()
	r.clock.Advance(now.Truncate(time.Hour).Add(time.Hour).Sub(now) - 30*time.Second) // 30 s before the hour
	status, _, c := r.connect(target, tok)
	if status != 200 {
		t.Fatal(status)
	}
	roundTrip(t, c, strings.Repeat("a", 3000))
	c.Close()
	r.clock.Advance(time.Minute) // 30 s after the hour: a fixed window would start afresh
	status, body, c := r.connect(target, tok)
	if status != 200 {
		t.Fatalf("a second tunnel with budget left: %d %q", status, body)
	}
	_, _ = c.Write([]byte(strings.Repeat("b", 3000)))
	waitClosed(t, c)
	if status, body, _ := r.connect(target, tok); status != 403 || !strings.Contains(body, "exfiltration budget") {
		t.Fatalf("after the budget was spent across the hour: %d %q", status, body)
	}
	if n := r.budgetEntries(); n != 1 {
		t.Fatalf("%d budget entries in the ledger, want 1", n)
	}
}
