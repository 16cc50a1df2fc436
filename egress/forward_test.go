package egress_test

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// slowOrigin is a real HTTP server on loopback that answers as slowly as the test says: GET
// /stream sends one chunk, then another each time next is signalled; POST /upload reports each
// part of the body as it arrives. It reports what it could not deliver or did not receive.
type slowOrigin struct {
	srv  *http.Server
	port int
	next chan struct{}
	// sent gets the number of every chunk the origin wrote and flushed; gone is closed when the
	// origin sees its client (the gateway) leave in the middle of a stream.
	sent chan int
	gone chan struct{}
	// parts gets every read of an upload's body; uploadErr how the body ended.
	parts     chan string
	uploadEnd chan error
	goneOnce  sync.Once
}

func newSlowOrigin(t *testing.T) *slowOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &slowOrigin{port: ln.Addr().(*net.TCPAddr).Port, next: make(chan struct{}), sent: make(chan int, 100), gone: make(chan struct{}),
		parts: make(chan string, 100), uploadEnd: make(chan error, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		for i := 1; i <= 20; i++ {
			if i > 1 {
				select {
				case <-o.next:
				case <-r.Context().Done():
					o.goneOnce.Do(func() { close(o.gone) })
					return
				}
			}
			if _, err := fmt.Fprintf(w, "chunk-%d\n", i); err != nil {
				o.goneOnce.Do(func() { close(o.gone) })
				return
			}
			if err := rc.Flush(); err != nil {
				o.goneOnce.Do(func() { close(o.gone) })
				return
			}
			o.sent <- i
		}
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				o.parts <- string(buf[:n])
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				o.uploadEnd <- err
				return
			}
		}
	})
	o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = o.srv.Serve(ln) }()
	t.Cleanup(func() { o.srv.Close() })
	return o
}

// Issue 12, item 1 (invariant 2): a streaming GET forwarded under a 3-second just-in-time grant
// kept delivering chunks after the grant expired, because forwarded requests were not
// registered for revalidation. Now the revalidation that closes tunnels cuts it too, both ways:
// the client gets nothing more and the origin sees its client leave.
func TestForwardedStreamEndsWithItsGrant(t *testing.T) {
	o := newSlowOrigin(t)
	r := newRig(t, parsePolicy(t, "", jitDocs(o.port)), rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	r.grant("egress-local", 3*time.Second)
	target := "127.0.0.1:" + strconv.Itoa(o.port)
	c, br := r.sendHead("GET http://" + target + "/stream HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + tok + "\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("with the grant: %v %v", resp, err)
	}
	body := bufio.NewReader(resp.Body)
	if line, err := readLine(t, c, body); line != "chunk-1\n" {
		t.Fatalf("first chunk %q %v", line, err)
	}
	o.next <- struct{}{}
	if line, err := readLine(t, c, body); line != "chunk-2\n" {
		t.Fatalf("second chunk %q %v", line, err)
	}
	// The grant expires (by the gateway's clock) and the gateway revalidates, as its ticker does
	// every 100 ms.
	r.clock.Advance(4 * time.Second)
	r.gw.Revalidate()
	select {
	case o.next <- struct{}{}: // the origin is still there: let it try to send chunk 3
	case <-o.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin neither sent nor saw the gateway leave")
	}
	if line, err := readLine(t, c, body); err == nil {
		t.Fatalf("after the grant expired the client still received %q", line)
	}
	select {
	case <-o.gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin's side of the request stayed open after the grant expired")
	}
	r.gw.FlushDecisions()
	if !strings.Contains(r.dlog.String(), `"connection":"request"`) || !strings.Contains(r.dlog.String(), "expired") {
		t.Fatalf("no closed line for the cut request:\n%s", r.dlog.String())
	}
}

// Issue 12, item 1: a slow POST under the grant delivered its whole body after the grant
// expired. Now the upload is cut at the same revalidation: the origin never receives the part
// sent after it.
func TestForwardedUploadEndsWithItsGrant(t *testing.T) {
	o := newSlowOrigin(t)
	r := newRig(t, parsePolicy(t, "", jitDocs(o.port)), rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	r.grant("egress-local", 3*time.Second)
	target := "127.0.0.1:" + strconv.Itoa(o.port)
	part1, part2 := strings.Repeat("a", 100), strings.Repeat("b", 100)
	c, _ := r.sendHead("POST http://" + target + "/upload HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + tok +
		"\r\nContent-Length: 200\r\n\r\n" + part1)
	var got strings.Builder
	for got.Len() < len(part1) {
		select {
		case p := <-o.parts:
			got.WriteString(p)
		case <-time.After(10 * time.Second):
			t.Fatalf("the origin received %d bytes of the first part", got.Len())
		}
	}
	r.clock.Advance(4 * time.Second)
	r.gw.Revalidate()
	_, _ = io.WriteString(c, part2) // may fail: the gateway closed the connection
	select {
	case err := <-o.uploadEnd:
		if err == nil {
			t.Fatal("the origin received the whole body after the grant expired")
		}
	case p := <-o.parts:
		t.Fatalf("the origin received %q after the grant expired", p)
	case <-time.After(10 * time.Second):
		t.Fatal("the upload was neither cut nor finished")
	}
	for len(o.parts) > 0 {
		if p := <-o.parts; strings.Contains(p, "b") {
			t.Fatalf("the origin received %q after the grant expired", p)
		}
	}
}

// A forwarded request that ends by itself leaves the client's connection open for the next
// one, and writes no closed line (only the cut ones do).
func TestForwardedRequestsKeepTheConnection(t *testing.T) {
	o := newSlowOrigin(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, o.port, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	target := "127.0.0.1:" + strconv.Itoa(o.port)
	req := "POST http://" + target + "/upload HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + tok + "\r\nContent-Length: 2\r\n\r\nok"
	c, br := r.sendHead(req)
	for i := 0; i < 2; i++ {
		if i == 1 {
			_, _ = io.WriteString(c, req)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d on one connection: %v %v", i+1, resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	r.gw.FlushDecisions()
	if strings.Contains(r.dlog.String(), "egress.closed") {
		t.Fatalf("a finished request wrote a closed line:\n%s", r.dlog.String())
	}
}

// Issue 12, item 7: the gateway forwards a request as the client sent it, less what concerns
// one connection only: headers the Connection header names are removed both ways, and no
// Accept-Encoding is added (Go's Transport asks for gzip unless told not to, and then
// decompresses the answer behind the client's back).
func TestForwardedHeadersAsSent(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/raw" {
			// Go's server rewrites a handler's Connection header: answer on the wire.
			c, _, _ := http.NewResponseController(w).Hijack()
			defer c.Close()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close, X-Hop-Reply\r\nX-Hop-Reply: for the gateway only\r\nX-End-Reply: for the client\r\nContent-Length: 2\r\n\r\nok")
			return
		}
		if r.Header.Get("Accept-Encoding") == "gzip" {
			w.Header().Set("Content-Encoding", "gzip")
			gz := gzip.NewWriter(w)
			fmt.Fprintf(gz, "compressed")
			gz.Close()
			return
		}
		for _, h := range []string{"X-Hop", "X-Hop-Too", "Keep-Alive", "X-End", "Accept-Encoding"} {
			fmt.Fprintf(w, "%s=%q\n", h, r.Header.Values(h))
		}
	}))
	defer origin.Close()
	u, _ := url.Parse(origin.URL)
	port, _ := strconv.Atoi(u.Port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, port, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	send := func(path, extra string) (*http.Response, string) {
		t.Helper()
		c, br := r.sendHead("GET " + origin.URL + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nProxy-Authorization: Bearer " + tok + "\r\n" + extra + "\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := send("/", "Connection: keep-alive, X-Hop,X-Hop-Too\r\nX-Hop: a\r\nX-Hop-Too: b\r\nKeep-Alive: timeout=5\r\nX-End: c\r\n")
	want := "X-Hop=[]\nX-Hop-Too=[]\nKeep-Alive=[]\nX-End=[\"c\"]\nAccept-Encoding=[]\n"
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("the origin saw:\n%s\nwant:\n%s", body, want)
	}
	if resp, body = send("/raw", ""); resp.Header.Get("X-Hop-Reply") != "" || resp.Header.Get("X-End-Reply") != "for the client" || body != "ok" {
		t.Fatalf("response headers %v", resp.Header)
	}
	// A client that asks for gzip gets the origin's gzip, untouched.
	resp, body = send("/", "Accept-Encoding: gzip\r\n")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	gz, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(gz); string(plain) != "compressed" {
		t.Fatalf("gzip body %q", plain)
	}
}

// Issue 12, item 7: the gateway wrote a log line of its own for every tunnel beside the
// decision line (the standalone process writes both to standard error). The decision log has
// the one egress.closed line; the log has nothing per tunnel.
func TestOneLinePerTunnelClose(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	logs := &syncBuffer{}
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, logger: slog.New(slog.NewJSONHandler(logs, nil))})
	status, _, c := r.connect("127.0.0.1:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	roundTrip(t, c, "x")
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(r.dlog.String(), "egress.closed"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no closed line:\n%s", r.dlog.String())
		}
		r.gw.FlushDecisions()
	}
	if n := strings.Count(r.dlog.String(), "egress.closed"); n != 1 {
		t.Fatalf("%d closed lines", n)
	}
	if logs.String() != "" {
		t.Fatalf("the gateway logged per tunnel besides its decision line:\n%s", logs.String())
	}
}
