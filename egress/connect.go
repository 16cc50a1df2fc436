package egress

import (
	"errors"
	"fmt"
	"net"
	"net/http"
)

func (g *Gateway) connect(w http.ResponseWriter, r *http.Request, subject string, cred credential) {
	t, err := ParseTarget(r.Host, 0)
	if err != nil {
		g.logDecision(r, Decision{Subject: subject, Rule: RuleRequest, Reason: err.Error()}, nil)
		g.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("CONNECT %q: %v", r.Host, err))
		return
	}
	if !g.reserve(subject) {
		pe := tooMany(t, subject, g.cfg.Limits.MaxTunnelsPerSubject)
		g.logDecision(r, Decision{Subject: subject, Target: t, Rule: RuleLimit, Reason: pe.msg}, nil)
		g.refuseErr(w, r, pe)
		return
	}
	defer g.release(subject)
	// The CONNECT head is counted against the budget (admit): the client chose every byte of it.
	d, perr := g.admit(r.Context(), r, subject, t, headSize(r))
	if perr != nil {
		g.refuseErr(w, r, perr)
		return
	}
	upstream, err := (&net.Dialer{Timeout: g.cfg.Limits.ConnectTimeout}).DialContext(r.Context(), "tcp", d.Addr.String())
	if err != nil {
		msg := fmt.Sprintf("allowed %s, but connecting to %s failed: %v", t, d.Addr, err)
		g.logDecision(r, d, errors.New(msg))
		g.refuse(w, r, http.StatusBadGateway, msg)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		g.refuse(w, r, http.StatusInternalServerError, "connection cannot be taken over for a tunnel")
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
	g.logDecision(r, d, nil)
	// Registered before the client hears yes, so that no revalidation or shutdown misses it.
	tun := g.openTunnel(d, cred, limitFor(g.cfg.Policy(), subject), client, upstream)
	defer g.untrack(tun.flow)
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		tun.close("closed: " + err.Error())
		return
	}
	// Bytes the client sent after the CONNECT request are already buffered: send them first.
	var first []byte
	if n := buf.Reader.Buffered(); n > 0 {
		first, _ = buf.Reader.Peek(n)
	}
	tun.run(first)
}
