package risk_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/identity/risk/risktest"
)

func TestMemoryHistory(t *testing.T) {
	risktest.TestHistory(t, func(t *testing.T) risktest.Store { return &risk.MemoryHistory{} })
}

func TestNewRecordAndFailure(t *testing.T) {
	a := risk.Attempt{Subject: "alice", Time: t0, IP: addr("::ffff:192.0.2.10"), Fingerprint: "fp", Kind: risk.KindSignIn, Success: true}
	r := risk.NewRecord(a, &zurichHome)
	want := risk.Record{Time: t0, IP: addr("192.0.2.10"), Fingerprint: "fp", Country: "CH", ASN: 3303, Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 20}
	if r != want {
		t.Errorf("NewRecord = %+v, want %+v", r, want)
	}
	if r := risk.NewRecord(a, nil); r.Country != "" || r.HasGeo {
		t.Errorf("NewRecord without location = %+v", r)
	}
	if r := risk.NewRecord(a, &countryOnly); r.HasGeo || r.Lat != 0 || r.Country != "FR" {
		t.Errorf("NewRecord without coordinates = %+v", r)
	}
	f := risk.NewFailure(risk.Attempt{Subject: "alice", Time: t0, IP: addr("192.0.2.10")})
	if f.Username != "alice" {
		t.Errorf("NewFailure without username: %+v", f)
	}
	f = risk.NewFailure(risk.Attempt{Subject: "alice", Username: "alice@example.org", Time: t0, IP: addr("192.0.2.10")})
	if f.Username != "alice@example.org" {
		t.Errorf("NewFailure: %+v", f)
	}
}

func TestMemoryHistoryBounds(t *testing.T) {
	ctx := context.Background()
	h := &risk.MemoryHistory{}
	for i := range 1200 {
		if err := h.AddSignIn(ctx, "alice", risk.Record{Time: t0.Add(time.Duration(i) * time.Minute), IP: addr("192.0.2.1")}); err != nil {
			t.Fatal(err)
		}
	}
	rs, _ := h.Recent(ctx, "alice", 5000)
	if len(rs) != 1000 || !rs[0].Time.Equal(t0.Add(1199*time.Minute)) {
		t.Fatalf("%d records kept, newest %v", len(rs), rs[0].Time)
	}
	for i := range 70000 {
		_ = h.AddFailure(ctx, risk.Failure{Time: t0.Add(time.Duration(i) * time.Second), Username: "x", IP: addr("192.0.2.1")})
	}
	n, _ := h.FailuresByUser(ctx, "x", t0)
	if n != 1<<16 {
		t.Fatalf("%d failures kept", n)
	}
	if _, users, _ := h.FailuresBySource(ctx, netip.MustParsePrefix("192.0.2.1/32"), t0); users != 1 {
		t.Fatalf("%d users", users)
	}
}

// TestMemoryHistoryAnySource: a prefix other than SourceOf's is answered too (by a scan).
func TestMemoryHistoryAnySource(t *testing.T) {
	ctx := context.Background()
	h := &risk.MemoryHistory{}
	for i, ip := range []string{"2001:db8:5:1::1", "2001:db8:5:2::1", "2001:db8:6:1::1", "192.0.2.1", "192.0.2.2"} {
		_ = h.AddFailure(ctx, risk.Failure{Time: t0, Username: fmt.Sprint("u", i), IP: addr(ip)})
	}
	for _, tc := range []struct {
		prefix string
		want   int
	}{{"2001:db8:5::/48", 2}, {"2001:db8::/32", 3}, {"192.0.2.0/24", 2}, {"192.0.2.2/32", 1}} {
		n, users, _ := h.FailuresBySource(ctx, netip.MustParsePrefix(tc.prefix), t0)
		if n != tc.want || users != tc.want {
			t.Errorf("FailuresBySource(%s) = %d, %d; want %d", tc.prefix, n, users, tc.want)
		}
	}
}
