// Package risktest is the conformance suite for implementations of risk.History: Rampart's
// stores run it, and so does risk.MemoryHistory, the reference. A store that passes answers the
// engine exactly as the reference would.
package risktest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"rampart.dev/rampart/identity/risk"
)

// Store is a History that can also be written, as the caller writes it after each attempt.
type Store interface {
	risk.History
	// AddSignIn records a sign-in (or step-up) that was let in.
	AddSignIn(ctx context.Context, subject string, r risk.Record) error
	// AddFailure records a failed attempt.
	AddFailure(ctx context.Context, f risk.Failure) error
}

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// TestHistory checks a History implementation. open must return an empty store each time it is
// called.
func TestHistory(t *testing.T, open func(t *testing.T) Store) {
	t.Run("Recent", func(t *testing.T) { testRecent(t, open(t)) })
	t.Run("FailuresByUser", func(t *testing.T) { testFailuresByUser(t, open(t)) })
	t.Run("FailuresBySource", func(t *testing.T) { testFailuresBySource(t, open(t)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testRecent(t *testing.T, s Store) {
	ctx := context.Background()
	got, err := s.Recent(ctx, "alice", 10)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("Recent of an empty store: %d records, want 0", len(got))
	}
	// Seven sign-ins, written out of time order, with every field set.
	var want []risk.Record
	for i := range 7 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})
		if i%2 == 1 {
			ip = netip.MustParseAddr("2001:db8:1:2::" + string(rune('a'+i)))
		}
		want = append(want, risk.Record{Time: t0.Add(time.Duration(i)*time.Hour + 123456789), IP: ip,
			Fingerprint: "fp-" + string(rune('a'+i)), Country: "CH", ASN: uint(3300 + i),
			Lat: 47.37 + float64(i)/100, Lon: -8.54 - float64(i)/100, HasGeo: i != 3, AccuracyKm: uint(20 + i)})
		if i == 3 {
			want[i].Lat, want[i].Lon, want[i].AccuracyKm = 0, 0, 0
		}
	}
	for _, i := range []int{3, 0, 6, 1, 5, 2, 4} {
		must(t, s.AddSignIn(ctx, "alice", want[i]))
	}
	must(t, s.AddSignIn(ctx, "bob", risk.Record{Time: t0.Add(10 * time.Hour), IP: netip.MustParseAddr("198.51.100.1")}))

	for _, tc := range []struct{ limit, n int }{{5, 5}, {7, 7}, {50, 7}, {1, 1}, {0, 0}} {
		got, err := s.Recent(ctx, "alice", tc.limit)
		must(t, err)
		if len(got) != tc.n {
			t.Fatalf("Recent(alice, %d): %d records, want %d", tc.limit, len(got), tc.n)
		}
		for k, r := range got {
			w := want[6-k] // newest first
			if !r.Time.Equal(w.Time) || r.IP != w.IP || r.Fingerprint != w.Fingerprint || r.Country != w.Country ||
				r.ASN != w.ASN || r.HasGeo != w.HasGeo || r.Lat != w.Lat || r.Lon != w.Lon {
				t.Fatalf("Recent(alice, %d)[%d] = %+v, want %+v", tc.limit, k, r, w)
			}
			if r.AccuracyKm != 0 && r.AccuracyKm != w.AccuracyKm { // storing it is optional
				t.Fatalf("Recent(alice, %d)[%d].AccuracyKm = %d, want %d or 0", tc.limit, k, r.AccuracyKm, w.AccuracyKm)
			}
		}
	}
	got, err = s.Recent(ctx, "bob", 10)
	must(t, err)
	if len(got) != 1 || got[0].IP != netip.MustParseAddr("198.51.100.1") {
		t.Fatalf("Recent(bob) = %+v, want bob's one sign-in", got)
	}
}

func testFailuresByUser(t *testing.T, s Store) {
	ctx := context.Background()
	ip := netip.MustParseAddr("203.0.113.5")
	for i := range 6 {
		must(t, s.AddFailure(ctx, risk.Failure{Time: t0.Add(time.Duration(i) * time.Minute), Username: "alice", IP: ip}))
	}
	must(t, s.AddFailure(ctx, risk.Failure{Time: t0.Add(3 * time.Minute), Username: "bob", IP: ip}))
	must(t, s.AddFailure(ctx, risk.Failure{Time: t0.Add(3 * time.Minute), Username: "", IP: ip}))
	for _, tc := range []struct {
		user  string
		since time.Time
		want  int
	}{
		{"alice", t0, 6},
		{"alice", t0.Add(2 * time.Minute), 4}, // since is inclusive
		{"alice", t0.Add(2*time.Minute + 1), 3},
		{"alice", t0.Add(time.Hour), 0},
		{"bob", t0, 1},
		{"carol", t0, 0},
	} {
		n, err := s.FailuresByUser(ctx, tc.user, tc.since)
		must(t, err)
		if n != tc.want {
			t.Errorf("FailuresByUser(%q, t0+%s) = %d, want %d", tc.user, tc.since.Sub(t0), n, tc.want)
		}
	}
}

func testFailuresBySource(t *testing.T, s Store) {
	ctx := context.Background()
	v4 := netip.MustParseAddr("203.0.113.5")
	add := func(min int, user, ip string) {
		must(t, s.AddFailure(ctx, risk.Failure{Time: t0.Add(time.Duration(min) * time.Minute), Username: user, IP: netip.MustParseAddr(ip)}))
	}
	add(0, "alice", "203.0.113.5")
	add(1, "alice", "203.0.113.5")
	add(2, "bob", "203.0.113.5")
	add(3, "", "203.0.113.5")      // failed before a username: a failure, not a user
	add(4, "carol", "203.0.113.6") // another IPv4 address is another source
	// IPv6: addresses in one /64 are one source.
	add(0, "u1", "2001:db8:aa:1::1")
	add(1, "u2", "2001:db8:aa:1:ffff:ffff:ffff:ffff")
	add(2, "u3", "2001:db8:aa:1::3")
	add(2, "u4", "2001:db8:aa:2::1") // the next /64

	for _, tc := range []struct {
		src          netip.Prefix
		since        time.Time
		fails, users int
	}{
		{risk.SourceOf(v4), t0, 4, 2},
		{risk.SourceOf(v4), t0.Add(2 * time.Minute), 2, 1},
		{risk.SourceOf(netip.MustParseAddr("203.0.113.6")), t0, 1, 1},
		{risk.SourceOf(netip.MustParseAddr("2001:db8:aa:1::9")), t0, 3, 3},
		{risk.SourceOf(netip.MustParseAddr("2001:db8:aa:1::9")), t0.Add(time.Minute), 2, 2},
		{risk.SourceOf(netip.MustParseAddr("2001:db8:aa:2::77")), t0, 1, 1},
		{risk.SourceOf(netip.MustParseAddr("198.51.100.1")), t0, 0, 0},
	} {
		f, u, err := s.FailuresBySource(ctx, tc.src, tc.since)
		must(t, err)
		if f != tc.fails || u != tc.users {
			t.Errorf("FailuresBySource(%s, t0+%s) = %d failures, %d users; want %d, %d", tc.src, tc.since.Sub(t0), f, u, tc.fails, tc.users)
		}
	}
}
