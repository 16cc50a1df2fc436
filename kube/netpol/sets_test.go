package netpol

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The set algebra in general, beyond the selectors the rendered default-deny policy uses (only
// matchLabels) that the reference test exercises: random conjunctions covered, or not, by
// random unions of selectors with every operator, against brute force over every label set that
// can tell them apart (each key absent, at a value mentioned, or at another).
func TestCoveredSelAgainstBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	keys := map[space][]string{nsSpace: {nameLabel, "team"}, podSpace: {"app", "tier"}}
	vals := []string{"a", "b", "c"}
	ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
	randReq := func() req {
		sp := space(r.IntN(2))
		q := req{space: sp, key: keys[sp][r.IntN(2)], op: ops[r.IntN(4)]}
		if q.op == metav1.LabelSelectorOpIn || q.op == metav1.LabelSelectorOpNotIn {
			for range 1 + r.IntN(2) {
				q.vals = append(q.vals, vals[r.IntN(3)])
			}
		}
		return q
	}
	// Every label set of a space, as apimachinery's labels.Set.
	sets := func(sp space) []labels.Set {
		out := []labels.Set{{}}
		for _, k := range keys[sp] {
			var next []labels.Set
			for _, base := range out {
				for _, v := range append(slices.Clone(vals), "other", "") {
					if v == "" && k == nameLabel {
						continue // every namespace has it
					}
					l := maps.Clone(base)
					if v != "" {
						l[k] = v
					}
					next = append(next, l)
				}
			}
			out = next
		}
		return out
	}
	nsSets, podSets := sets(nsSpace), sets(podSpace)
	matches := func(rs []req, ns, pod labels.Set) bool {
		for _, q := range rs {
			l := pod
			if q.space == nsSpace {
				l = ns
			}
			sel, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: q.key, Operator: q.op, Values: q.vals}}})
			if err != nil {
				t.Fatal(err)
			}
			if !sel.Matches(l) {
				return false
			}
		}
		return true
	}
	covered, not := 0, 0
	for i := range 3000 {
		var p []req
		for range r.IntN(4) {
			p = append(p, randReq())
		}
		dds := make([][]req, r.IntN(4))
		for j := range dds {
			for range r.IntN(3) {
				dds[j] = append(dds[j], randReq())
			}
		}
		want := true
	brute:
		for _, ns := range nsSets {
			for _, pod := range podSets {
				if !matches(p, ns, pod) {
					continue
				}
				in := false
				for _, d := range dds {
					in = in || matches(d, ns, pod)
				}
				if !in {
					want = false
					break brute
				}
			}
		}
		if got := coveredSel(conj(nil).with(p...), dds); got != want {
			t.Fatalf("case %d: coveredSel(%+v, %+v) = %v, brute force %v", i, p, dds, got, want)
		}
		if want {
			covered++
		} else {
			not++
		}
	}
	if covered < 300 || not < 300 {
		t.Fatalf("%d covered, %d not: the generator proves too little", covered, not)
	}
}

// Address sets against netip over every address that can tell them apart: both ends of each
// prefix and just beyond.
func TestIPSetsAgainstNetip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	pool := []string{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/30", "10.0.0.4/31", "10.0.0.5/32", "255.255.255.255/32", "0.0.0.0/32",
		"::/0", "fd00::/8", "fd00::1/128", "::ffff:10.0.0.0/104", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128", "8000::/1", "::/65", "::8000:0:0:0/65"}
	for i := range 2000 {
		var in, out []netip.Prefix
		for range 1 + r.IntN(3) {
			in = append(in, netip.MustParsePrefix(pool[r.IntN(len(pool))]))
		}
		for range r.IntN(3) {
			out = append(out, netip.MustParsePrefix(pool[r.IntN(len(pool))]))
		}
		var a, b ipSet
		for _, p := range in {
			a = a.union(prefixSet(p))
		}
		for _, p := range out {
			b = b.union(prefixSet(p))
		}
		diff := a.minus(b)
		contains := func(ps []netip.Prefix, x netip.Addr) bool {
			return slices.ContainsFunc(ps, func(p netip.Prefix) bool { return p.Contains(x) })
		}
		inSet := func(s ipSet, x netip.Addr) bool {
			one := prefixSet(netip.PrefixFrom(x, x.BitLen()))[0].lo
			return slices.ContainsFunc(s, func(iv interval) bool { return !one.less(iv.lo) && !iv.hi.less(one) })
		}
		subset := true
		for _, p := range slices.Concat(in, out) {
			for _, x := range []netip.Addr{p.Masked().Addr(), lastOf(p), p.Masked().Addr().Prev(), lastOf(p).Next()} {
				if !x.IsValid() {
					continue
				}
				want := contains(in, x) && !contains(out, x)
				if inSet(diff, x) != want || inSet(a, x) != contains(in, x) {
					t.Fatalf("case %d: %v minus %v at %v: got %v, want %v", i, in, out, x, inSet(diff, x), want)
				}
				subset = subset && !want
			}
		}
		if a.subsetOf(b) != subset {
			t.Fatalf("case %d: %v ⊆ %v = %v, want %v", i, in, out, a.subsetOf(b), subset)
		}
	}
	// An ipBlock's exceptions, and CIDRs that do not parse.
	set, ok := blockSet(&networkingv1.IPBlock{CIDR: "10.0.0.4/31", Except: []string{"10.0.0.4/32"}}, false)
	if !ok || !set.subsetOf(prefixSet(netip.MustParsePrefix("10.0.0.5/32"))) || len(set) != 1 {
		t.Fatalf("10.0.0.4/31 except 10.0.0.4/32: %v %v", set, ok)
	}
	if set, ok := blockSet(&networkingv1.IPBlock{CIDR: "nonsense"}, true); ok || !allAddresses().subsetOf(set) {
		t.Fatal("a CIDR that does not parse is not read as every address when lenient")
	}
	if set, ok := blockSet(&networkingv1.IPBlock{CIDR: "nonsense"}, false); ok || len(set) != 0 {
		t.Fatal("a CIDR that does not parse covers something in the default-deny policy")
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
