package risk_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"rampart.dev/rampart/identity/risk"
)

// A sign-in handler assesses the attempt, applies the outcome, and records what it let in.
func Example() {
	ctx := context.Background()
	geo, _ := risk.NewTable([]risk.TableEntry{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Location: risk.Location{Country: "CH", City: "Zurich", ASN: 3303, Lat: 47.3769, Lon: 8.5417, HasGeo: true}},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Location: risk.Location{Country: "AU", City: "Sydney", ASN: 1221, Lat: -33.8688, Lon: 151.2093, HasGeo: true}},
	})
	bad, _ := risk.ParsePrefixList("bad.txt", strings.NewReader("198.51.100.0/24 # last month's spray\n"))
	hist := &risk.MemoryHistory{} // Rampart's store in production
	engine, err := risk.NewEngine(risk.Config{BadIPs: bad}, geo, hist)
	if err != nil {
		panic(err)
	}
	outcomes := risk.DefaultOutcomes()

	signIn := func(ip string, at time.Time) {
		a := risk.Attempt{Subject: "alice", Username: "alice", Time: at, IP: netip.MustParseAddr(ip),
			Fingerprint: "f00d", Kind: risk.KindSignIn, Success: true}
		as, err := engine.Assess(ctx, a)
		if err != nil {
			fmt.Println("refuse (503):", err) // fail closed
			return
		}
		out := outcomes.For(as.Level)
		fmt.Printf("%s from %s: %s → %s\n", at.Format("15:04"), ip, as, out)
		if out == risk.Allow { // after a step-up, record when the second factor succeeds
			_ = hist.AddSignIn(ctx, a.Subject, risk.NewRecord(a, as.Location))
		}
	}
	t := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	signIn("192.0.2.10", t)
	signIn("203.0.113.9", t.Add(time.Hour))
	signIn("198.51.100.7", t.Add(2*time.Hour))
	// Output:
	// 09:00 from 192.0.2.10: none → allow
	// 10:00 from 203.0.113.9: high: impossible_travel → block
	// 11:00 from 198.51.100.7: high: bad_ip → block
}
