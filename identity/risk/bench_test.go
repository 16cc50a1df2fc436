package risk_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity/risk"
)

// BenchmarkAssess scores sign-ins of a subject with 50 recorded sign-ins (the default baseline),
// against MaxMind-format City, ASN and Anonymous-IP databases behind a configuration table,
// anonymous and bad lists of 5,000 prefixes each, and 2,000 recent failures in the history.
// The attempts rotate through a familiar sign-in, a new device in a new country, impossible
// travel, a refresh and a failure. Besides ns/op it reports the p50 and p99 of individually
// timed calls (the target is p99 < 1 ms).
func BenchmarkAssess(b *testing.B) {
	files := testMMDB(b)
	db, err := risk.OpenMMDB(files)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, bc := range []struct {
		name string
		geo  risk.Geo
	}{
		{"mmdb", risk.Chain{testGeoOffice(b), db}},
		{"table", testGeo(b)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			eng, attempts := benchSetup(b, bc.geo)
			ctx := context.Background()
			var lat []time.Duration
			i := 0
			for b.Loop() {
				a := attempts[i%len(attempts)]
				i++
				start := time.Now()
				if _, err := eng.Assess(ctx, a); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p/100*float64(len(lat))))] }
			b.ReportMetric(float64(pct(50).Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(pct(99).Nanoseconds()), "p99-ns")
		})
	}
}

func testGeoOffice(b testing.TB) *risk.Table {
	t, err := risk.NewTable([]risk.TableEntry{{Prefix: mustPrefix("192.0.2.64/26"), Location: zurichOffice}})
	if err != nil {
		b.Fatal(err)
	}
	return t
}

func benchSetup(b *testing.B, geo risk.Geo) (*risk.Engine, []risk.Attempt) {
	var anon, bad strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&anon, "10.%d.%d.0/24\n", i/256, i%256)
		fmt.Fprintf(&bad, "2001:db8:%x::/48 # feed entry %d\n", i, i)
	}
	anonList, err := risk.ParsePrefixList("anon.txt", strings.NewReader(anon.String()))
	if err != nil {
		b.Fatal(err)
	}
	badList, err := risk.ParsePrefixList("bad.txt", strings.NewReader(bad.String()))
	if err != nil {
		b.Fatal(err)
	}
	h := &risk.MemoryHistory{}
	// 50 sign-ins over 50 days from home, the office and a phone.
	var past []risk.Attempt
	for k := 50; k >= 1; k-- {
		ip, fp := "192.0.2.10", laptop
		switch k % 5 {
		case 1:
			ip = "192.0.2.70"
		case 2:
			fp = phone
		}
		past = append(past, signIn("alice", ip, fp, t0.Add(-time.Duration(k)*24*time.Hour+time.Duration(k%3)*time.Hour)))
	}
	// 2,000 failures in the last 15 minutes from 200 addresses.
	for i := range 2000 {
		past = append(past, failure(fmt.Sprintf("user%d", i%300), fmt.Sprintf("198.18.%d.%d", i%200/100, i%100), t0.Add(-time.Duration(i%900)*time.Second)))
	}
	record(b, h, geo, past)
	eng, err := risk.NewEngine(risk.Config{AnonymousIPs: anonList, BadIPs: badList}, geo, h)
	if err != nil {
		b.Fatal(err)
	}
	return eng, []risk.Attempt{
		signIn("alice", "192.0.2.10", laptop, t0.Add(30*time.Minute)),
		signIn("alice", "203.0.113.9", "fp-new", t0.Add(time.Hour)),
		signIn("alice", "2001:db8:3303:1::10", laptop, t0.Add(2*time.Hour)),
		refresh("alice", "192.0.2.11", laptop, "192.0.2.10", laptop, t0.Add(3*time.Hour)),
		failure("alice", "198.18.0.7", t0.Add(time.Minute)),
	}
}
