package netpol

import (
	"maps"
	"net/netip"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The two kinds of set Widens compares: (namespace, pod) pairs described by label requirements,
// and addresses described by CIDRs.

// space says whose labels a requirement is on.
type space uint8

const (
	nsSpace space = iota
	podSpace
)

// req is one label requirement: In, NotIn, Exists or DoesNotExist (matchLabels k: v is In [v]).
type req struct {
	space space
	key   string
	op    metav1.LabelSelectorOperator
	vals  []string
}

// negate is the requirement every label set but those satisfying r satisfies: In and NotIn
// swap (NotIn holds where the key is absent, In does not), as do Exists and DoesNotExist.
func (r req) negate() req {
	n := r
	switch r.op {
	case metav1.LabelSelectorOpIn:
		n.op = metav1.LabelSelectorOpNotIn
	case metav1.LabelSelectorOpNotIn:
		n.op = metav1.LabelSelectorOpIn
	case metav1.LabelSelectorOpExists:
		n.op = metav1.LabelSelectorOpDoesNotExist
	case metav1.LabelSelectorOpDoesNotExist:
		n.op = metav1.LabelSelectorOpExists
	}
	return n
}

type spaceKey struct {
	space space
	key   string
}

// keyCons is what a conjunction of requirements lets one label be: absent (when absentOK), or a
// value in vals (finite), or a value not in vals (not finite). Label values are drawn from an
// unbounded set, so "not in vals" is never empty.
type keyCons struct {
	absentOK bool
	finite   bool
	vals     map[string]bool
}

func (k keyCons) sat() bool { return k.absentOK || !k.finite || len(k.vals) > 0 }

// conj is a conjunction of requirements, per label. Requirements on different labels are
// independent, so it is satisfiable exactly when each label's constraint is.
type conj map[spaceKey]keyCons

// with returns c and rs.
func (c conj) with(rs ...req) conj {
	out := make(conj, len(c)+len(rs))
	maps.Copy(out, c)
	for _, r := range rs {
		sk := spaceKey{r.space, r.key}
		k, ok := out[sk]
		if !ok {
			// Every namespace carries kubernetes.io/metadata.name (the apiserver sets it to the
			// name and keeps it so); any other label may be absent.
			k = keyCons{absentOK: !(r.space == nsSpace && r.key == nameLabel)}
		}
		k.vals = cloneSet(k.vals)
		switch r.op {
		case metav1.LabelSelectorOpIn:
			k.absentOK = false
			if k.finite {
				for v := range k.vals {
					if !slices.Contains(r.vals, v) {
						delete(k.vals, v)
					}
				}
			} else {
				allowed := map[string]bool{}
				for _, v := range r.vals {
					if !k.vals[v] {
						allowed[v] = true
					}
				}
				k.finite, k.vals = true, allowed
			}
		case metav1.LabelSelectorOpNotIn:
			for _, v := range r.vals {
				if k.finite {
					delete(k.vals, v)
				} else {
					k.vals[v] = true
				}
			}
		case metav1.LabelSelectorOpExists:
			k.absentOK = false
		case metav1.LabelSelectorOpDoesNotExist:
			k.finite, k.vals = true, map[string]bool{}
		}
		out[sk] = k
	}
	return out
}

func (c conj) sat() bool {
	for _, k := range c {
		if !k.sat() {
			return false
		}
	}
	return true
}

func cloneSet(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Addresses: an address is its family and its 128-bit value (IPv4 in the low 32 bits), so
// that IPv4 and IPv6 (IPv4-mapped included) never overlap, as netip.Prefix.Contains has it.

type addr struct {
	v6     bool
	hi, lo uint64
}

func (a addr) less(b addr) bool {
	if a.v6 != b.v6 {
		return !a.v6
	}
	if a.hi != b.hi {
		return a.hi < b.hi
	}
	return a.lo < b.lo
}

func (a addr) next() addr {
	a.lo++
	if a.lo == 0 {
		a.hi++
	}
	return a
}

func (a addr) prev() addr {
	if a.lo == 0 {
		a.hi--
	}
	a.lo--
	return a
}

// interval is the addresses from lo to hi, both included, of one family.
type interval struct{ lo, hi addr }

// ipSet is a sorted list of disjoint intervals.
type ipSet []interval

func prefixSet(p netip.Prefix) ipSet {
	p = p.Masked()
	a := p.Addr()
	bits := p.Bits()
	var lo addr
	if a.Is4() {
		b := a.As4()
		lo = addr{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
		host := uint64(1)<<(32-bits) - 1
		return ipSet{{lo, addr{lo: lo.lo | host}}}
	}
	b := a.As16()
	for i := range 8 {
		lo.hi = lo.hi<<8 | uint64(b[i])
		lo.lo = lo.lo<<8 | uint64(b[8+i])
	}
	lo.v6 = true
	hi := lo
	switch {
	case bits == 0:
		hi.hi, hi.lo = ^uint64(0), ^uint64(0)
	case bits <= 64:
		hi.hi |= ^uint64(0) >> bits
		hi.lo = ^uint64(0)
	default:
		hi.lo |= ^uint64(0) >> (bits - 64)
	}
	return ipSet{{lo, hi}}
}

// allAddresses is every IPv4 and IPv6 address.
func allAddresses() ipSet {
	return prefixSet(netip.MustParsePrefix("0.0.0.0/0")).union(prefixSet(netip.MustParsePrefix("::/0")))
}

// blockSet is the addresses an ipBlock matches: its CIDR but its exceptions. lenient reads a
// CIDR that does not parse as every address (and leaves out an exception that does not);
// otherwise ok is false.
func blockSet(b *networkingv1.IPBlock, lenient bool) (ipSet, bool) {
	p, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		if lenient {
			return allAddresses(), false
		}
		return nil, false
	}
	set := prefixSet(p)
	ok := true
	for _, e := range b.Except {
		ep, err := netip.ParsePrefix(e)
		if err != nil {
			ok = false
			if !lenient {
				return nil, false
			}
			continue
		}
		set = set.minus(prefixSet(ep))
	}
	return set, ok
}

func (s ipSet) union(t ipSet) ipSet {
	all := slices.Concat(s, t)
	slices.SortFunc(all, func(a, b interval) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	var out ipSet
	for _, iv := range all {
		if n := len(out); n > 0 && out[n-1].hi.v6 == iv.lo.v6 && !out[n-1].hi.less(iv.lo) {
			if out[n-1].hi.less(iv.hi) {
				out[n-1].hi = iv.hi
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

func (s ipSet) minus(t ipSet) ipSet {
	out := slices.Clone(s)
	for _, cut := range t {
		var next ipSet
		for _, iv := range out {
			if iv.lo.v6 != cut.lo.v6 || iv.hi.less(cut.lo) || cut.hi.less(iv.lo) {
				next = append(next, iv)
				continue
			}
			if iv.lo.less(cut.lo) {
				next = append(next, interval{iv.lo, cut.lo.prev()})
			}
			if cut.hi.less(iv.hi) {
				next = append(next, interval{cut.hi.next(), iv.hi})
			}
		}
		out = next
	}
	return out
}

func (s ipSet) subsetOf(t ipSet) bool { return len(s.minus(t)) == 0 }
