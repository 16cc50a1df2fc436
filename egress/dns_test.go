package egress_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

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
