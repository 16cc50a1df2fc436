package egress_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/egress"
)

// ledgerEntry is the part of an egress entry these tests read.
type ledgerEntry struct {
	ActivityID int    `json:"activity_id"`
	Message    string `json:"message"`
	Status     string `json:"status"`
	Actor      struct {
		User struct {
			Name string `json:"name"`
		} `json:"user"`
	} `json:"actor"`
	Metadata struct {
		EventCode string `json:"event_code"`
	} `json:"metadata"`
	Dst struct {
		IP   string `json:"ip"`
		Port int    `json:"port"`
	} `json:"dst_endpoint"`
	Src struct {
		IP string `json:"ip"`
	} `json:"src_endpoint"`
	Traffic struct {
		BytesOut int64 `json:"bytes_out"`
		BytesIn  int64 `json:"bytes_in"`
	} `json:"traffic"`
	Count    int            `json:"count"`
	Unmapped map[string]any `json:"unmapped"`
}

// entries returns the rig's ledger entries of one code, after the gateway's queue is written.
func (r *rig) entries(code string) []ledgerEntry {
	r.t.Helper()
	r.gw.FlushLedger()
	recs, err := r.store.Entries(r.ctx, 0, 100000)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []ledgerEntry
	for _, rec := range recs {
		var e ledgerEntry
		if err := json.Unmarshal(rec.Data, &e); err != nil {
			r.t.Fatal(err)
		}
		if e.Metadata.EventCode == code {
			out = append(out, e)
		}
	}
	return out
}

// waitEntries polls until the ledger holds n entries of code (the deadline is only a failure
// limit).
func (r *rig) waitEntries(code string, n int) []ledgerEntry {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := r.entries(code)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d %s entries in the ledger after 20 s, want %d: %+v", len(got), code, n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A tunnel writes egress.transfer entries: one per TransferEvery while it is open and carries
// bytes (Traffic, bytes since the last entry), one when it ends (Close), with the subject, the
// destination, the rule and one tunnel id.
func TestTunnelTransfersInTheLedger(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egressLimits()})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	status, body, c := r.connect(target, r.token("alice"))
	if status != 200 {
		t.Fatalf("CONNECT: %d %s", status, body)
	}
	roundTrip(t, c, strings.Repeat("a", 3000))
	if got := r.entries("egress.transfer"); len(got) != 0 {
		t.Fatalf("an entry before the report interval passed: %+v", got)
	}
	r.clock.Advance(time.Minute)
	open := r.waitEntries("egress.transfer", 1)[0]
	if open.ActivityID != 6 || open.Traffic.BytesOut != 3000 || open.Traffic.BytesIn != 3000 || open.Actor.User.Name != "alice" ||
		open.Dst.IP != "127.0.0.1" || open.Dst.Port != echo.port() || open.Src.IP != "127.0.0.1" || open.Unmapped["rule_name"] != "research" {
		t.Fatalf("the open tunnel's report: %+v", open)
	}
	roundTrip(t, c, strings.Repeat("b", 1000))
	c.Close()
	got := r.waitEntries("egress.transfer", 2)
	end := got[1]
	if end.ActivityID != 2 || end.Traffic.BytesOut != 1000 || end.Traffic.BytesIn != 1000 ||
		end.Unmapped["total_bytes_out"] != float64(4000) || end.Unmapped["tunnel_id"] != open.Unmapped["tunnel_id"] || end.Unmapped["tunnel_id"] == "" {
		t.Fatalf("the tunnel's last entry: %+v", end)
	}
	// Nothing more for a tunnel that ended, however long the clock runs.
	r.clock.Advance(time.Hour)
	if got := r.entries("egress.transfer"); len(got) != 2 {
		t.Fatalf("%d transfer entries, want 2", len(got))
	}
}

// An open tunnel that carries nothing writes nothing: only bytes moved are reported.
func TestIdleTunnelWritesNoTransfers(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egressLimits()})
	status, _, c := r.connect("127.0.0.1:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		r.clock.Advance(time.Minute)
		time.Sleep(150 * time.Millisecond) // let revalidation ticks pass; the check below would fail if one wrote
	}
	if got := r.entries("egress.transfer"); len(got) != 0 {
		t.Fatalf("an idle tunnel wrote %d transfer entries: %+v", len(got), got)
	}
}

// Refused connections are egress.denied entries aggregated per caller: the first of a window in
// full, the rest in one summary.
func TestDeniedConnectionsAggregated(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"example.org"}, 443, ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egressLimits()})
	tok := r.token("alice")
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	for i := 0; i < 20; i++ {
		if status, _, _ := r.connect(target, tok); status != 403 {
			t.Fatalf("CONNECT %d: %d, want 403", i, status)
		}
	}
	got := r.entries("egress.denied")
	if len(got) != 1 || got[0].Status != "Failure" || got[0].Actor.User.Name != "alice" || got[0].Dst.Port != echo.port() ||
		got[0].Unmapped["rule"] != "default-deny" || !strings.Contains(got[0].Message, "no egress policy allows") {
		t.Fatalf("after 20 refusals: %+v, want one entry in full", got)
	}
	r.clock.Advance(2 * time.Minute)
	if err := r.refusals.Flush(r.ctx); err != nil {
		t.Fatal(err)
	}
	got = r.entries("egress.denied")
	if len(got) != 2 || got[1].Count != 19 {
		t.Fatalf("after the window: %+v, want a summary counting 19", got)
	}
}

// Invariant 11: anonymous callers that a default egress policy lets through cannot write an
// entry per connection: their transfers are summed into one entry per report interval.
func TestAnonymousTransfersSummed(t *testing.T) {
	echo := newEcho(t)
	pol := parsePolicy(t, "", egressPolicy("open", "default", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egressLimits()})
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	for i := 0; i < 30; i++ {
		status, body, c := r.connect(target, "")
		if status != 200 {
			t.Fatalf("anonymous CONNECT %d: %d %s", i, status, body)
		}
		roundTrip(t, c, "hello")
		c.Close()
	}
	waitFlows(t, r)
	if got := r.entries("egress.transfer"); len(got) != 0 {
		t.Fatalf("anonymous connections wrote %d entries before the interval ended", len(got))
	}
	r.clock.Advance(time.Minute)
	r.waitEntries("egress.transfer", 1)
	r.gw.FlushLedger() // a second summary, queued with the first, would be written now
	got := r.entries("egress.transfer")
	if len(got) != 1 || got[0].Count != 30 || got[0].Traffic.BytesOut != 150 || got[0].Actor.User.Name != "anonymous" {
		t.Fatalf("anonymous summary: %+v, want one entry for 30 connections and 150 bytes", got)
	}
}

// waitFlows waits until the gateway has written the last entries of the connections closed so
// far: the connections end asynchronously after the client closes.
func waitFlows(t *testing.T, r *rig) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.gw.OpenFlows() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("tunnels still open after 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The ledger never stalls a tunnel: with the ledger writer stuck, a tunnel still carries bytes,
// and a tunnel that exhausts its budget is still cut at once (before, the budget entry was
// written on the tunnel's own goroutine, which then waited on the ledger with the bytes).
func TestLedgerNeverBlocksTheDataPath(t *testing.T) {
	echo := newEcho(t)
	stuck := make(chan struct{})
	defer close(stuck)
	record := func(ctx context.Context, e audit.Event) error { <-stuck; return nil }
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), "4000"))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}, limits: egressLimits(), record: record})
	status, _, c := r.connect("127.0.0.1:"+strconv.Itoa(echo.port()), r.token("alice"))
	if status != 200 {
		t.Fatal(status)
	}
	roundTrip(t, c, strings.Repeat("a", 1000))
	r.clock.Advance(time.Minute) // a transfer report is queued and its write hangs
	time.Sleep(200 * time.Millisecond)
	roundTrip(t, c, strings.Repeat("b", 1000))
	// Over the budget: the budget entry cannot be written, the tunnel is cut anyway.
	_, _ = c.Write([]byte(strings.Repeat("c", 3000)))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8192)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the tunnel over its budget was not cut while the ledger was stuck")
			}
			break
		}
	}
}

// egressLimits are the rig's limits for ledger tests: revalidation (and so the reports of open
// tunnels) every 20 ms, reports every minute of the injected clock.
func egressLimits() egress.Limits {
	return egress.Limits{RevalidateEvery: 20 * time.Millisecond, TransferEvery: time.Minute}
}
