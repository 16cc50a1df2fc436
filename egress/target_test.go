package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseTargetNormalises(t *testing.T) {
	cases := []struct{ in, host string }{
		{"example.com:443", "example.com"},
		{"EXAMPLE.com.:443", "example.com"},
		{"127.0.0.1:443", "127.0.0.1"},
		{"2130706433:443", "127.0.0.1"},   // one decimal number
		{"0177.0.0.1:443", "127.0.0.1"},   // octal
		{"0x7f.1:443", "127.0.0.1"},       // hex, two parts
		{"0x7F.0.0.1:443", "127.0.0.1"},   // upper-case hex
		{"127.1:443", "127.0.0.1"},        // short form
		{"127.0.1:443", "127.0.0.1"},      // three parts
		{"0x7f000001:443", "127.0.0.1"},   // one hex number
		{"017700000001:443", "127.0.0.1"}, // one octal number
		{"0:443", "0.0.0.0"},
		{"169.254.169.254:80", "169.254.169.254"},
		{"0251.0376.0251.0376:80", "169.254.169.254"},
		{"[::1]:443", "::1"},
		{"[0:0:0:0:0:0:0:1]:443", "::1"},
		{"[::ffff:127.0.0.1]:443", "127.0.0.1"},
		{"[::ffff:7f00:1]:443", "127.0.0.1"},
		{"[fe80::1%eth0]:443", "fe80::1"},
		{"[FD00:EC2::254]:80", "fd00:ec2::254"},
		{"1.2.3.4.nip.io:443", "1.2.3.4.nip.io"}, // a name, not an address
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in, 0)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.Host != c.host {
			t.Errorf("%q: host %q, want %q", c.in, got.Host, c.host)
		}
		if _, err := netip.ParseAddr(c.host); (err == nil) != got.IP.IsValid() {
			t.Errorf("%q: IP %v for host %q", c.in, got.IP, c.host)
		}
	}
}

func TestParseTargetRefuses(t *testing.T) {
	for _, in := range []string{
		"", "example.com", "example.com:0", "example.com:65536", "example.com:08", "example.com:http",
		"256.1.1.1:443", "1.2.3.4.5:443", "0x1g.1:443", "08.1.1.1:443", "1.2.3.999:443", "127.0.0.1.:99999",
		"exa mple.com:443", "ex\u00e4mple.com:443", "[::1:443", "[::zz]:443", "a..b:443", strings.Repeat("a.", 200) + "com:443",
		"user@example.com:443", "example.com/path:443",
	} {
		if got, err := ParseTarget(in, 0); err == nil || !errors.Is(err, ErrBadTarget) {
			t.Errorf("%q accepted as %+v (%v)", in, got, err)
		}
	}
	if got, err := ParseTarget("example.com", 80); err != nil || got.Port != 80 {
		t.Fatalf("default port: %+v %v", got, err)
	}
}

func TestAddrPolicy(t *testing.T) {
	p := &AddrPolicy{Own: map[netip.Addr]bool{netip.MustParseAddr("203.0.114.7"): true}}
	forbidden := []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fd00:ec2::254", "fc00::1", "ff02::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "2001::1",
		"::127.0.0.1", "203.0.114.7",
		// Issue 12, item 4: Azure's platform endpoint (also mapped), site-local, and the
		// IPv4-translated form of public and private addresses.
		"168.63.129.16", "::ffff:168.63.129.16", "fec0::1", "fec0:ffff::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
		"::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "::ffff:0:808:808", "::ffff:0:0:0", "::ffff:0:ffff:ffff",
	}
	for _, s := range forbidden {
		if err := p.Check(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s allowed", s)
		}
	}
	for _, s := range []string{"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34", "140.82.112.3",
		"168.63.129.15", "168.63.129.17", "fbff:ffff::1", "::fffe:0:808:808"} {
		if err := p.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused: %v", s, err)
		}
	}
	// NAT64 of a public address still needs the range allowed.
	if err := p.Check(netip.MustParseAddr("64:ff9b::5db8:d822")); err == nil {
		t.Error("NAT64 translation allowed without an explicit range")
	}
	open := &AddrPolicy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1"} {
		if err := open.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s refused despite the allowed range: %v", s, err)
		}
	}
	if err := open.Check(netip.MustParseAddr("127.0.0.2")); err == nil {
		t.Error("127.0.0.2 allowed by 127.0.0.1/32")
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "0x7f.1:80", "[::ffff:127.0.0.1]:443", "2130706433:1", "[fe80::1%25eth0]:443", "a.b.c.d:1"} {
		f.Add(s)
	}
	p := &AddrPolicy{}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s, 0)
		if err != nil {
			return
		}
		// Normalisation is idempotent: the normalised form parses to itself.
		again, err := ParseTarget(got.String(), 0)
		if err != nil || again != got {
			t.Fatalf("%q → %q → %+v (%v)", s, got.String(), again, err)
		}
		if got.IP.IsValid() {
			_ = p.Check(got.IP)
			if got.Host != got.IP.String() {
				t.Fatalf("IP host %q is not canonical (%s)", got.Host, got.IP)
			}
		}
	})
}
