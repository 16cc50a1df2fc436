package egress_test

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"rampart.dev/rampart/egress"
)

// The address classification is a security-critical algorithm: AddrPolicy.Check is compared here
// with a brute-force reference written from the registries (IANA special-purpose address
// registries, RFC 6890 and the documents docs/egress.md cites) as explicit first and last
// addresses, compared byte by byte, with none of netip's prefix logic.

// refRange is a block as its first and last address.
type refRange struct{ first, last [16]byte }

func refBlock(first, last string) refRange {
	return refRange{netip.MustParseAddr(first).As16(), netip.MustParseAddr(last).As16()}
}

func (r refRange) has(b [16]byte) bool {
	return string(b[:]) >= string(r.first[:]) && string(b[:]) <= string(r.last[:])
}

// As16 of an IPv4 address is its IPv4-mapped form, so the IPv4 table is written in that form.
var refForbidden4 = []refRange{
	refBlock("0.0.0.0", "0.255.255.255"),
	refBlock("10.0.0.0", "10.255.255.255"),
	refBlock("100.64.0.0", "100.127.255.255"),
	refBlock("127.0.0.0", "127.255.255.255"),
	refBlock("168.63.129.16", "168.63.129.16"),
	refBlock("169.254.0.0", "169.254.255.255"),
	refBlock("172.16.0.0", "172.31.255.255"),
	refBlock("192.0.0.0", "192.0.0.255"),
	refBlock("192.0.2.0", "192.0.2.255"),
	refBlock("192.88.99.0", "192.88.99.255"),
	refBlock("192.168.0.0", "192.168.255.255"),
	refBlock("198.18.0.0", "198.19.255.255"),
	refBlock("198.51.100.0", "198.51.100.255"),
	refBlock("203.0.113.0", "203.0.113.255"),
	refBlock("224.0.0.0", "255.255.255.255"),
}

var refForbidden6 = []refRange{
	refBlock("::", "::ffff:ffff"),
	refBlock("100::", "100::ffff:ffff:ffff:ffff"),
	refBlock("2001::", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"),
	refBlock("fc00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
}

// Forms that reach IPv4 through a translator: refused unless allowed, whatever they carry.
var refTranslation = []refRange{
	refBlock("64:ff9b::", "64:ff9b::ffff:ffff"),
	refBlock("2002::", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	refBlock("::ffff:0:0:0", "::ffff:0:ffff:ffff"),
}

var refMapped = refBlock("::ffff:0.0.0.0", "::ffff:255.255.255.255")

// refPrefixHas reports whether prefix p holds a, bit by bit, within one address family.
func refPrefixHas(p netip.Prefix, a netip.Addr) bool {
	if p.Addr().Is4() != a.Is4() {
		return false
	}
	pb, ab := p.Addr().AsSlice(), a.AsSlice()
	for i := 0; i < p.Bits(); i++ {
		if (pb[i/8]>>(7-i%8))&1 != (ab[i/8]>>(7-i%8))&1 {
			return false
		}
	}
	return true
}

// refAllowed is the specification of AddrPolicy.Check as a plain decision.
func refAllowed(p *egress.AddrPolicy, a netip.Addr) bool {
	a = a.WithZone("")
	b := a.As16()
	mapped := a.Is6() && refMapped.has(b)
	var v4 netip.Addr
	if mapped {
		v4 = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	for _, pr := range p.Allow {
		if refPrefixHas(pr, a) || (mapped && refPrefixHas(pr, v4)) {
			return true
		}
	}
	if mapped {
		return refAllowed(p, v4)
	}
	if a.Is6() {
		for _, r := range refTranslation {
			if r.has(b) {
				return false
			}
		}
	}
	list := refForbidden6
	if a.Is4() {
		list = refForbidden4
	}
	for _, r := range list {
		if r.has(b) {
			return false
		}
	}
	for o := range p.Own {
		if o == a {
			return false
		}
	}
	return true
}

// TestAddrPolicyAgainstReference draws addresses around the edge of every block (first − 1,
// first, last, last + 1), in every IPv6 form that carries an IPv4 address, with random allowed
// ranges and own addresses, and requires Check to agree with the reference. The seed is printed
// on failure; RAMPART_ADDR_SEED replays it.
func TestAddrPolicyAgainstReference(t *testing.T) {
	seed := uint64(rand.Int64())
	if s := os.Getenv("RAMPART_ADDR_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var edges []netip.Addr
	for i, list := range [][]refRange{refForbidden4, refForbidden6, refTranslation, {refMapped}} {
		for _, r := range list {
			for _, b := range [][16]byte{r.first, r.last} {
				a := netip.AddrFrom16(b)
				if i == 0 {
					a = a.Unmap() // the IPv4 table, as IPv4 addresses
				}
				edges = append(edges, a, a.Prev(), a.Next())
			}
		}
	}
	randomAddr := func() netip.Addr {
		switch rng.IntN(4) {
		case 0:
			var b [4]byte
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			return netip.AddrFrom4(b)
		case 1:
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			return netip.AddrFrom16(b)
		default:
			if a := edges[rng.IntN(len(edges))]; a.IsValid() {
				return a
			}
			return netip.IPv4Unspecified()
		}
	}
	// wrap puts an IPv4 address into one of the IPv6 forms that carry it.
	wrap := func(a netip.Addr) netip.Addr {
		if !a.Is4() {
			return a
		}
		v := a.As4()
		var b [16]byte
		switch rng.IntN(5) {
		case 0:
			return netip.AddrFrom16(a.As16()) // IPv4-mapped
		case 1:
			b[8], b[9] = 0xff, 0xff // ::ffff:0:a.b.c.d
			copy(b[12:], v[:])
		case 2:
			b[1], b[2], b[3] = 0x64, 0xff, 0x9b // 64:ff9b::a.b.c.d
			copy(b[12:], v[:])
		case 3:
			b[0], b[1] = 0x20, 0x02 // 2002:AABB:CCDD::
			copy(b[2:6], v[:])
		default:
			return a
		}
		return netip.AddrFrom16(b)
	}
	const cases = 200000
	for i := 0; i < cases; i++ {
		p := &egress.AddrPolicy{}
		for n := rng.IntN(3); n > 0; n-- {
			base := randomAddr()
			if rng.IntN(2) == 0 {
				base = wrap(base)
			}
			bits := base.BitLen() - rng.IntN(base.BitLen()/2+1)
			p.Allow = append(p.Allow, netip.PrefixFrom(base, bits).Masked())
		}
		if rng.IntN(4) == 0 {
			p.Own = map[netip.Addr]bool{randomAddr(): true}
		}
		a := randomAddr()
		if rng.IntN(3) == 0 {
			a = wrap(a)
		}
		if a.Is6() && rng.IntN(50) == 0 {
			a = a.WithZone("eth0")
		}
		err := p.Check(a)
		if want := refAllowed(p, a); want != (err == nil) {
			t.Fatalf("case %d (RAMPART_ADDR_SEED=%d): Check(%s) with allow %v own %v = %v, the reference says allowed=%v",
				i, seed, a, p.Allow, p.Own, err, want)
		}
	}
	t.Logf("%d cases agree (seed %d)", cases, seed)
}

// The reference itself, on the addresses named in the issue, so that a wrong table in both
// places cannot agree silently.
func TestAddrReferenceByHand(t *testing.T) {
	p := &egress.AddrPolicy{}
	for _, s := range []string{"168.63.129.16", "::ffff:168.63.129.16", "fec0::1", "feff::1", "::ffff:0:7f00:1", "::ffff:0:808:808", "169.254.169.254", "fd00:ec2::254"} {
		if refAllowed(p, netip.MustParseAddr(s)) {
			t.Errorf("the reference allows %s", s)
		}
	}
	for _, s := range []string{"168.63.129.15", "168.63.129.17", "::ffff:8.8.8.8", "fbff::1", "2606:4700::1"} {
		if !refAllowed(p, netip.MustParseAddr(s)) {
			t.Errorf("the reference refuses %s", s)
		}
	}
}
