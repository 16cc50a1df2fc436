package egress

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

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
