package signin

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestStartsLimit(t *testing.T) {
	var st starts
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	lim := startLimits{window: time.Minute, perSource: 3, maxSources: 2}
	a, a2, b, c := netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::2")
	for i := range 3 {
		if ok, _ := st.allow(a, now, lim); !ok {
			t.Fatalf("start %d of a refused", i)
		}
	}
	if ok, wait := st.allow(a, now.Add(10*time.Second), lim); ok || wait != 50*time.Second {
		t.Fatalf("fourth start of a: %v, wait %s", ok, wait)
	}
	// The IPv6 /64 is one source: 2001:db8::1 and ::2 share an allowance.
	for range 3 {
		st.allow(a2, now, lim)
	}
	if ok, _ := st.allow(c, now, lim); ok {
		t.Fatal("another address of the same /64 got a fresh allowance")
	}
	// Beyond maxSources, new sources share ten sources' allowance.
	n := 0
	for i := range 100 {
		if ok, _ := st.allow(netip.MustParseAddr(fmt.Sprintf("192.0.2.%d", i)), now, lim); ok {
			n++
		}
	}
	if n != 30 || len(st.n) != 2 {
		t.Fatalf("untracked sources were allowed %d starts (tracked %d)", n, len(st.n))
	}
	// A new window starts afresh.
	if ok, _ := st.allow(a, now.Add(time.Minute), lim); !ok {
		t.Fatal("a refused in the next window")
	}
	if ok, _ := st.allow(b, now.Add(time.Minute), lim); !ok {
		t.Fatal("b refused in the next window")
	}
}
