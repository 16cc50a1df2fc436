package egress

import (
	"fmt"
	"net/netip"
)

// forbiddenRange is a block of addresses the gateway never dials unless an operator allows the
// range explicitly.
type forbiddenRange struct {
	prefix netip.Prefix
	why    string
}

func mustPrefixes(list [][2]string) []forbiddenRange {
	out := make([]forbiddenRange, len(list))
	for i, p := range list {
		out[i] = forbiddenRange{netip.MustParsePrefix(p[0]), p[1]}
	}
	return out
}

var forbidden4 = mustPrefixes([][2]string{
	{"0.0.0.0/8", "unspecified / this network"},
	{"10.0.0.0/8", "private (RFC 1918)"},
	// Azure's platform endpoint (the WireServer): DHCP, DNS, health probes and the VM agent's
	// configuration and certificates, reachable from every Azure VM and pod network.
	{"168.63.129.16/32", "Azure's platform endpoint (WireServer)"},
	{"100.64.0.0/10", "carrier-grade NAT (RFC 6598)"},
	{"127.0.0.0/8", "loopback"},
	{"169.254.0.0/16", "link-local (cloud metadata lives at 169.254.169.254)"},
	{"172.16.0.0/12", "private (RFC 1918)"},
	{"192.0.0.0/24", "IETF protocol assignments"},
	{"192.0.2.0/24", "documentation"},
	{"192.88.99.0/24", "6to4 relay anycast"},
	{"192.168.0.0/16", "private (RFC 1918)"},
	{"198.18.0.0/15", "benchmarking"},
	{"198.51.100.0/24", "documentation"},
	{"203.0.113.0/24", "documentation"},
	{"224.0.0.0/4", "multicast"},
	{"240.0.0.0/4", "reserved, and broadcast"},
})

var forbidden6 = mustPrefixes([][2]string{
	{"::/96", "unspecified, loopback or IPv4-compatible"},
	{"100::/64", "discard"},
	{"2001::/32", "Teredo tunnel"},
	{"2001:db8::/32", "documentation"},
	{"64:ff9b:1::/48", "local-use NAT64"},
	{"fc00::/7", "unique local (cloud metadata fd00:ec2::254 lives here)"},
	{"fe80::/10", "link-local"},
	{"fec0::/10", "site-local (deprecated by RFC 3879, still routed inside some networks)"},
	{"ff00::/8", "multicast"},
})

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	// translated is the IPv4-translated prefix of stateless IP/ICMP translation (SIIT, RFC
	// 2765): ::ffff:0:a.b.c.d, one 16-bit group away from the IPv4-mapped ::ffff:a.b.c.d.
	translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries: IPv4-mapped (::ffff:a.b.c.d),
// IPv4-translated (::ffff:0:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4 (2002:AABB:CCDD::).
func embeddedIPv4(a netip.Addr) (netip.Addr, string, bool) {
	switch {
	case a.Is4In6():
		return a.Unmap(), "IPv4-mapped", true
	case translated.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), "IPv4-translated (SIIT)", true
	case nat64.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), "NAT64", true
	case sixToFour.Contains(a):
		b := a.As16()
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), "6to4", true
	}
	return netip.Addr{}, "", false
}

// AddrPolicy decides which addresses the gateway may dial.
type AddrPolicy struct {
	// Allow are ranges the operator opened on purpose (--allow-range); they win over the
	// built-in forbidden ranges.
	Allow []netip.Prefix
	// Own are the gateway's own addresses: forbidden unless allowed, so it cannot be made to
	// connect to itself.
	Own map[netip.Addr]bool
}

// Check returns an error saying why a may not be dialled, or nil.
func (p *AddrPolicy) Check(a netip.Addr) error {
	a = a.WithZone("")
	for _, pr := range p.Allow {
		if pr.Contains(a) || (a.Is4In6() && pr.Contains(a.Unmap())) {
			return nil
		}
	}
	if v4, how, ok := embeddedIPv4(a); ok {
		if err := p.Check(v4); err != nil {
			return fmt.Errorf("%s is the %s form of %s, which is forbidden: %w", a, how, v4, err)
		}
		if how == "IPv4-mapped" {
			// A mapped address is the IPv4 address itself: the socket connects to it over IPv4
			// and the gateway dials it in that form. It was checked as such just above.
			return nil
		}
		// Translation prefixes reach IPv4 through a gateway we do not control: forbid them unless
		// allowed, even when the embedded address is public.
		return fmt.Errorf("%s reaches %s through %s translation; allow the range explicitly if that is intended", a, v4, how)
	}
	list := forbidden6
	if a.Is4() {
		list = forbidden4
	}
	for _, r := range list {
		if r.prefix.Contains(a) {
			return fmt.Errorf("%s is in %s (%s)", a, r.prefix, r.why)
		}
	}
	if p.Own[a] {
		return fmt.Errorf("%s is one of the gateway's own addresses", a)
	}
	return nil
}
