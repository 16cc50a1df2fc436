package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// ErrPlaintext is wrapped by the error of every request the client refuses to send in clear.
var ErrPlaintext = errors.New("refusing plain http to a server that is not on this machine")

// baseURL turns --addr into the server's URL. A bare host:port means https, except for a
// loopback host (127.0.0.0/8, ::1, localhost), where rampart dev listens over plain http: a
// server elsewhere is reached over the network, where a bearer token, a refresh token or the
// session a sign-in returns must not travel in clear.
func baseURL(addr string) string {
	if !strings.Contains(addr, "://") {
		host := addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		}
		if loopbackHost(strings.Trim(host, "[]")) {
			addr = "http://" + addr
		} else {
			addr = "https://" + addr
		}
	}
	return strings.TrimRight(addr, "/")
}

// loopbackHost reports whether host names this machine: localhost, or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkScheme refuses a request over plain http to a host that is not this machine: requests
// carry bearer tokens, and the sign-in endpoints answer with session tokens, so either way a
// credential would cross the network in clear. Checked for every request the client sends,
// redirects included.
func checkScheme(u *url.URL) error {
	if u.Scheme == "https" || (u.Scheme == "http" && loopbackHost(u.Hostname())) {
		return nil
	}
	if u.Scheme != "http" {
		return fmt.Errorf("the server address %s has scheme %q; use https://HOST[:PORT] (or http:// for this machine only)", u.Redacted(), u.Scheme)
	}
	https := *u
	https.Scheme, https.Path, https.RawQuery = "https", "", ""
	return fmt.Errorf("%w: %s would carry your credential (or the session a sign-in returns) across the network in clear; use %s (a bare host:port means https for any host but this one), or reach the server through a tunnel to 127.0.0.1",
		ErrPlaintext, (&url.URL{Scheme: u.Scheme, Host: u.Host}).String(), https.String())
}

// guarded returns hc (or a client with timeout) whose every request, redirects included, passes
// checkScheme before it is sent.
func guarded(hc *http.Client) *http.Client {
	if hc == nil {
		hc = &http.Client{}
	}
	g := *hc
	next := g.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	if _, ok := next.(schemeGuard); !ok {
		g.Transport = schemeGuard{next}
	}
	return &g
}

// schemeGuard is a RoundTripper that refuses what checkScheme refuses.
type schemeGuard struct{ next http.RoundTripper }

func (s schemeGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := checkScheme(r.URL); err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return s.next.RoundTrip(r)
}

// refused returns the guard's own error when err is a refusal to send in clear (without the
// "Get URL:" wrapping of net/http), and nil otherwise.
func refused(err error) error {
	if !errors.Is(err, ErrPlaintext) {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
