package egress_test

import (
	"strconv"
	"strings"
	"testing"
)

// TestCloseSubject: an automatic response's close_tunnels ends every open tunnel of one person
// now, including one a rule (not a grant) allowed, which no revocation would end; other people's
// tunnels stay open, and the closing is a decision line.
func TestCloseSubject(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	status, _, a1 := r.connect(target, r.token("alice"))
	status2, _, a2 := r.connect(target, r.token("alice"))
	status3, _, b := r.connect(target, r.token("carol"))
	if status != 200 || status2 != 200 || status3 != 200 {
		t.Fatalf("connects: %d %d %d", status, status2, status3)
	}
	roundTrip(t, a1, "one")
	roundTrip(t, b, "carol's")
	if n := r.gw.CloseSubject("alice", "automatic response of detection rule bulk-weight-reads"); n != 2 {
		t.Fatalf("closed %d tunnels of alice, want 2", n)
	}
	waitClosed(t, a1)
	waitClosed(t, a2)
	roundTrip(t, b, "still open")
	if n := r.gw.CloseSubject("alice", "again"); n != 0 {
		t.Fatalf("closing again closed %d", n)
	}
	r.gw.FlushDecisions()
	if log := r.dlog.String(); !strings.Contains(log, "bulk-weight-reads") || !strings.Contains(log, "egress.closed") {
		t.Fatalf("decision log: %s", log)
	}
}
