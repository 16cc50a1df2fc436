package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// forward proxies one absolute-URI http:// request. While it runs it is an open flow like a
// tunnel: revalidation cuts it (both the upload of its body and the download of its response)
// when its grant ends, the policy stops allowing it or its caller's credential stops holding.
// Every byte written to the destination is counted against the subject's budget.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, subject string, cred credential) {
	if r.URL.Scheme != "http" {
		g.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("%s:// requests go through CONNECT; only http:// is forwarded as a request", r.URL.Scheme))
		return
	}
	t, err := ParseTarget(r.URL.Host, 80)
	if err != nil {
		g.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("request URL host %q: %v", r.URL.Host, err))
		return
	}
	hc := connOf(r)
	// The Host header must name the URL's host (Go's server drops it for absolute URIs, so read
	// it from the recorded head). Without the head, refuse rather than guess.
	bodyDone := &atomic.Bool{}
	if hc != nil {
		raw, complete := hc.take()
		hosts, found := rawHosts(raw, r)
		if !complete || !found {
			g.refuse(w, r, http.StatusBadRequest, "cannot read this request's head (pipelined requests are not accepted); send one request at a time")
			return
		}
		if len(hosts) > 1 {
			g.refuse(w, r, http.StatusBadRequest, "more than one Host header")
			return
		}
		if len(hosts) == 1 {
			if th, err := ParseTarget(hosts[0], 80); err != nil || th != t {
				g.logDecision(r, Decision{Subject: subject, Target: t, Rule: RuleRequest, Reason: "Host header differs from the request URL"}, nil)
				g.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("the Host header %q does not name the request URL's host %q", hosts[0], r.URL.Host))
				return
			}
		}
	}
	if !g.reserve(subject) {
		g.refuseErr(w, r, tooMany(t, subject, g.cfg.Limits.MaxTunnelsPerSubject))
		return
	}
	defer g.release(subject)
	d, perr := g.admit(r.Context(), r, subject, t, 0)
	if perr != nil {
		g.refuseErr(w, r, perr)
		return
	}
	g.logDecision(r, d, nil)
	b := limitFor(g.cfg.Policy(), subject)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var upstream atomic.Pointer[meteredConn]
	f := g.track(d, cred, "request", r.RemoteAddr, func() {
		cancel()
		if hc != nil {
			hc.Close() // the client's side: no more of its body is read, no more response reaches it
		}
		if c := upstream.Load(); c != nil {
			c.Conn.Close() // the destination's side: nothing more is sent to it or read from it
		}
	})
	defer g.untrack(f)
	defer f.finish()

	out := r.Clone(ctx)
	if r.Body == nil || r.Body == http.NoBody {
		bodyDone.Store(true)
	} else {
		// Once the body is read to its end, everything recorded since belongs to the next
		// request on this connection (Go's server starts reading it then): forget this one's.
		out.Body = &endOfBody{ReadCloser: r.Body, atEOF: func() {
			bodyDone.Store(true)
			if hc != nil {
				hc.take()
			}
		}}
	}
	out.RequestURI = ""
	out.URL.Host = t.String()
	out.Host = t.String()
	removeHopByHop(out.Header)
	// One request per transport, closed when it ends. Keep-alives are not disabled, so that the
	// request does not say "Connection: close" (and the destination answer it) on the client's
	// behalf.
	tr := &http.Transport{
		Proxy: nil,
		// The request goes as the client sent it: Go's Transport would otherwise ask for gzip
		// the client never asked for (and decompress the answer behind its back).
		DisableCompression:     true,
		ResponseHeaderTimeout:  60 * time.Second,
		MaxResponseHeaderBytes: maxResponseHead,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: g.cfg.Limits.ConnectTimeout}).DialContext(ctx, "tcp", d.Addr.String())
			if err != nil {
				return nil, err
			}
			mc := &meteredConn{Conn: c, spend: func(n int) bool { f.meter.out.Add(int64(n)); return g.spend(ctx, d, b, n) }}
			upstream.Store(mc)
			if f.closed() {
				c.Close()
				return nil, errors.New("the connection was closed by the gateway")
			}
			return mc, nil
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(out)
	if err != nil {
		switch c := upstream.Load(); {
		case c != nil && c.over.Load():
			_, until := g.exhausted(subject, b)
			g.refuseErr(w, r, budgetSpent(t, subject, b, until))
		case f.closed():
			// Cut by revalidation: the client's connection is closed already.
		default:
			g.refuse(w, r, http.StatusBadGateway, fmt.Sprintf("allowed %s, but the request failed: %v", t, err))
		}
		return
	}
	defer resp.Body.Close()
	if c := upstream.Load(); c != nil {
		resp.Header["Connection"] = append(resp.Header["Connection"], c.responseConnection()...)
	}
	removeHopByHop(resp.Header)
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if !bodyDone.Load() {
		// The destination answered before the whole body was sent: what is left of it would be
		// read as the start of the next request's head, so this connection ends here.
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(resp.StatusCode)
	// Stream: every read is passed on and flushed at once (a server-sent event stream or a slow
	// download must not wait in the gateway's buffers).
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	for {
		n, err := resp.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
			f.meter.in.Add(int64(n))
			g.m.bytes.WithLabelValues("in").Add(float64(n))
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The destination or the gateway cut the response short: end the client's connection
			// without the final chunk, so that the client sees a truncated response, not a
			// complete one.
			panic(http.ErrAbortHandler)
		}
	}
}

// endOfBody calls atEOF once, when the body has been read to its end.
type endOfBody struct {
	io.ReadCloser
	atEOF func()
	once  sync.Once
}

func (b *endOfBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.atEOF)
	}
	return n, err
}

// removeHopByHop deletes the headers that concern one connection only: those RFC 9110 names
// and every header the Connection header lists (Connection: X-Session names a header meant for
// the gateway, not for the next hop).
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

var hopHeaders = []string{"Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate", "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
