package risk

import (
	"fmt"
	"net/netip"
	"slices"
)

// prefixSet maps network prefixes to values and finds the longest prefix containing an address.
// It keeps one hash map per prefix length in use, longest first, so a lookup costs one hash
// probe per distinct length (typically a handful, at most 33 for IPv4 and 129 for IPv6).
type prefixSet[V any] struct {
	v4, v6 []prefixLevel[V]
	n      int
}

type prefixLevel[V any] struct {
	bits int
	m    map[netip.Prefix]V
}

// canonicalPrefix checks a prefix and turns IPv4-mapped IPv6 prefixes (::ffff:192.0.2.0/120)
// into IPv4 ones, since addresses are unmapped before lookup.
func canonicalPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix")
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s has a zone; zones are not allowed", p)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has bits set after the /%d; did you mean %s?", p, p.Bits(), m)
	}
	if p.Addr().Is4In6() { // a masked prefix with this address is at least a /96
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96), nil
	}
	return p, nil
}

// insert adds p (already canonical). It returns the value already stored for exactly p, if any,
// and then keeps it.
func (s *prefixSet[V]) insert(p netip.Prefix, v V) (V, bool) {
	levels := &s.v6
	if p.Addr().Is4() {
		levels = &s.v4
	}
	i, found := slices.BinarySearchFunc(*levels, p.Bits(), func(l prefixLevel[V], bits int) int { return bits - l.bits })
	if !found {
		*levels = slices.Insert(*levels, i, prefixLevel[V]{bits: p.Bits(), m: map[netip.Prefix]V{}})
	}
	m := (*levels)[i].m
	if old, dup := m[p]; dup {
		return old, true
	}
	m[p] = v
	s.n++
	var zero V
	return zero, false
}

// lookup returns the longest prefix containing addr and its value.
func (s *prefixSet[V]) lookup(addr netip.Addr) (netip.Prefix, V, bool) {
	addr = normAddr(addr)
	levels := s.v6
	if addr.Is4() {
		levels = s.v4
	}
	for _, l := range levels {
		p, err := addr.Prefix(l.bits)
		if err != nil {
			continue
		}
		if v, ok := l.m[p]; ok {
			return p, v, true
		}
	}
	var zero V
	return netip.Prefix{}, zero, false
}
