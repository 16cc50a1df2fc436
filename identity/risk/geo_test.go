package risk_test

import (
	"net/netip"
	"strings"
	"testing"

	"rampart.dev/rampart/identity/risk"
)

func TestTableLongestPrefix(t *testing.T) {
	loc := func(city string) risk.Location { return risk.Location{City: city} }
	tab, err := risk.NewTable([]risk.TableEntry{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Location: loc("corp")},
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Location: loc("zurich-office")},
		{Prefix: netip.MustParsePrefix("10.1.2.0/24"), Location: loc("zurich-lab")},
		{Prefix: netip.MustParsePrefix("10.1.2.3/32"), Location: loc("one-host")},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Location: loc("internet-v4")},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Location: loc("v6-corp")},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Location: loc("v6-lab")},
		{Prefix: netip.MustParsePrefix("::ffff:192.0.2.0/120"), Location: loc("mapped")}, // read as 192.0.2.0/24
	})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 8 {
		t.Fatalf("Len() = %d, want 8", tab.Len())
	}
	for _, tc := range []struct{ ip, want string }{
		{"10.9.9.9", "corp"},
		{"10.1.9.9", "zurich-office"},
		{"10.1.2.9", "zurich-lab"},
		{"10.1.2.3", "one-host"},
		{"10.1.2.4", "zurich-lab"},
		{"11.0.0.1", "internet-v4"},
		{"::ffff:10.1.2.3", "one-host"}, // mapped addresses are looked up as IPv4
		{"2001:db8:1:2::1", "v6-lab"},
		{"2001:db8:2::1", "v6-corp"},
		{"2001:db9::1", ""}, // no IPv6 default: not found
		{"fe80::1%eth0", ""},
		{"192.0.2.77", "mapped"},
	} {
		got, ok := tab.Lookup(netip.MustParseAddr(tc.ip))
		if got.City != tc.want || ok != (tc.want != "") {
			t.Errorf("Lookup(%s) = %q, %v; want %q", tc.ip, got.City, ok, tc.want)
		}
	}
	var none *risk.Table
	if _, ok := none.Lookup(netip.MustParseAddr("10.0.0.1")); ok {
		t.Error("a nil table found something")
	}
}

func TestTableRefusesBadEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []risk.TableEntry
		want    string
	}{
		{"host bits", []risk.TableEntry{{Prefix: netip.MustParsePrefix("10.1.2.3/16")}}, "did you mean 10.1.0.0/16"},
		{"duplicate", []risk.TableEntry{{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, {Prefix: netip.MustParsePrefix("10.0.0.0/8")}}, "entry 1: 10.0.0.0/8 is given twice"},
		{"zero prefix", []risk.TableEntry{{}}, "invalid prefix"},
		{"latitude", []risk.TableEntry{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Location: risk.Location{Lat: 91, HasGeo: true}}}, "latitude"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := risk.NewTable(tc.entries)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestChain(t *testing.T) {
	office, _ := risk.NewTable([]risk.TableEntry{{Prefix: netip.MustParsePrefix("192.0.2.0/26"), Location: risk.Location{City: "office"}}})
	var nilTable *risk.Table
	c := risk.Chain{nil, nilTable, office, testGeo(t)}
	if l, _ := c.Lookup(netip.MustParseAddr(ipHome)); l.City != "office" {
		t.Errorf("the first member does not win: %q", l.City)
	}
	if l, _ := c.Lookup(netip.MustParseAddr(ipSydney)); l.City != "Sydney" {
		t.Errorf("the second member is not asked: %q", l.City)
	}
	if _, ok := c.Lookup(netip.MustParseAddr(ipUnknown)); ok {
		t.Error("found an unknown address")
	}
}
