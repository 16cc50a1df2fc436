package risk_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity/risk"
)

// t0 is a Monday morning; histories are built on the days before it.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// Places of the test geo table (documentation address ranges, real coordinates).
var (
	zurichHome   = risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Org: "Swisscom", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 20}
	zurichOffice = risk.Location{Country: "CH", City: "Zurich", ASN: 559, Org: "SWITCH", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 5}
	geneva       = risk.Location{Country: "CH", City: "Geneva", ASN: 3303, Org: "Swisscom", Lat: 46.2044, Lon: 6.1432, HasGeo: true, AccuracyKm: 20}
	sydney       = risk.Location{Country: "AU", City: "Sydney", ASN: 1221, Org: "Telstra", Lat: -33.8688, Lon: 151.2093, HasGeo: true, AccuracyKm: 50}
	berlin       = risk.Location{Country: "DE", City: "Berlin", ASN: 3320, Org: "Deutsche Telekom", Lat: 52.52, Lon: 13.405, HasGeo: true, AccuracyKm: 10}
	vpnAmsterdam = risk.Location{Country: "NL", City: "Amsterdam", ASN: 9009, Org: "M247", Lat: 52.3676, Lon: 4.9041, HasGeo: true, AccuracyKm: 100, Anonymous: true}
	zurichV6     = risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Org: "Swisscom", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: 20}
	// A place known only by its country and network (no coordinates).
	countryOnly = risk.Location{Country: "FR", ASN: 3215, Org: "Orange"}
)

// Addresses used by the tests.
const (
	ipHome       = "192.0.2.10"  // zurichHome 192.0.2.0/26
	ipHome2      = "192.0.2.11"  // zurichHome, another address
	ipOffice     = "192.0.2.70"  // zurichOffice 192.0.2.64/26
	ipGeneva     = "192.0.2.130" // geneva 192.0.2.128/26
	ipSydney     = "203.0.113.9"
	ipBerlin     = "198.51.100.20"
	ipVPN        = "198.51.100.140"
	ipFrance     = "198.51.100.250" // countryOnly 198.51.100.248/29
	ipUnknown    = "192.0.2.200"    // not in the table
	ipListedAnon = "192.0.2.241"    // on the anonymous list, not in the table
	ipBad        = "192.0.2.250"    // on the bad list, not in the table
	ipV6Home     = "2001:db8:3303:1::10"
)

func testGeo(t testing.TB) *risk.Table {
	t.Helper()
	tab, err := risk.NewTable([]risk.TableEntry{
		{Prefix: netip.MustParsePrefix("192.0.2.0/26"), Location: zurichHome},
		{Prefix: netip.MustParsePrefix("192.0.2.64/26"), Location: zurichOffice},
		{Prefix: netip.MustParsePrefix("192.0.2.128/26"), Location: geneva},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Location: sydney},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Location: berlin},
		{Prefix: netip.MustParsePrefix("198.51.100.128/25"), Location: vpnAmsterdam},
		{Prefix: netip.MustParsePrefix("198.51.100.248/29"), Location: countryOnly},
		{Prefix: netip.MustParsePrefix("2001:db8:3303::/48"), Location: zurichV6},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func testLists(t testing.TB) (anon, bad *risk.PrefixList) {
	t.Helper()
	anon, err := risk.ParsePrefixList("anonymous.txt", strings.NewReader("# public VPN exits\n192.0.2.240/29\n"))
	if err != nil {
		t.Fatal(err)
	}
	bad, err = risk.ParsePrefixList("bad.txt", strings.NewReader("192.0.2.250 # seen spraying in January\n"))
	if err != nil {
		t.Fatal(err)
	}
	return anon, bad
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// signIn is a successful interactive sign-in.
func signIn(subject, ip, fp string, at time.Time) risk.Attempt {
	return risk.Attempt{Subject: subject, Username: subject, Time: at, IP: addr(ip), Fingerprint: fp, Kind: risk.KindSignIn, Success: true}
}

// failure is a failed sign-in for a username.
func failure(username, ip string, at time.Time) risk.Attempt {
	return risk.Attempt{Username: username, Time: at, IP: addr(ip), Kind: risk.KindSignIn}
}

// refresh is a token refresh of a session last used from sessionIP by device sessionFP.
func refresh(subject, ip, fp, sessionIP, sessionFP string, at time.Time) risk.Attempt {
	return risk.Attempt{Subject: subject, Username: subject, Time: at, IP: addr(ip), Fingerprint: fp, Kind: risk.KindRefresh, Success: true,
		SessionIP: addr(sessionIP), SessionFingerprint: sessionFP}
}

// daily is n sign-ins at 09:00 UTC on each of the n days before t0.
func daily(n int, subject, ip, fp string) []risk.Attempt {
	var out []risk.Attempt
	for k := n; k >= 1; k-- {
		out = append(out, signIn(subject, ip, fp, t0.Add(-time.Duration(k)*24*time.Hour)))
	}
	return out
}

func concat(parts ...[]risk.Attempt) []risk.Attempt {
	var out []risk.Attempt
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// record writes past attempts as the caller would: a success as its subject's sign-in (with its
// location), a failure as a failure.
func record(t testing.TB, h *risk.MemoryHistory, geo risk.Geo, past []risk.Attempt) {
	t.Helper()
	ctx := context.Background()
	for _, a := range past {
		if !a.Success {
			if err := h.AddFailure(ctx, risk.NewFailure(a)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var loc *risk.Location
		if geo != nil {
			if l, ok := geo.Lookup(a.IP); ok {
				loc = &l
			}
		}
		if err := h.AddSignIn(ctx, a.Subject, risk.NewRecord(a, loc)); err != nil {
			t.Fatal(err)
		}
	}
}

// codes lists an assessment's detections, combinations as "combination:<rule>".
func codes(as risk.Assessment) []string {
	var out []string
	for _, d := range as.Detections {
		c := d.Code
		if c == risk.CodeCombination {
			c += ":" + d.Evidence["rule"].(string)
		}
		out = append(out, c)
	}
	return out
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
