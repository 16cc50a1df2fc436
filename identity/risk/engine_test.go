package risk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"rampart.dev/rampart/identity/risk"
)

type assessCase struct {
	name  string
	past  []risk.Attempt
	cfg   risk.Config
	noGeo bool // no geo data at all
	// pastNoGeo: the past was recorded without geo data (a database added since).
	pastNoGeo bool
	attempt   risk.Attempt
	want      []string // detection codes in order; nil for none
	level     risk.Level
}

func runAssessCases(t *testing.T, cases []assessCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var geo risk.Geo = testGeo(t)
			if tc.noGeo {
				geo = nil
			}
			cfg := tc.cfg
			if cfg.AnonymousIPs == nil && cfg.BadIPs == nil {
				cfg.AnonymousIPs, cfg.BadIPs = testLists(t)
			}
			h := &risk.MemoryHistory{}
			if tc.pastNoGeo {
				record(t, h, nil, tc.past)
			} else {
				record(t, h, geo, tc.past)
			}
			eng, err := risk.NewEngine(cfg, geo, h)
			if err != nil {
				t.Fatal(err)
			}
			as, err := eng.Assess(context.Background(), tc.attempt)
			if err != nil {
				t.Fatal(err)
			}
			if got := codes(as); !slices.Equal(got, tc.want) {
				t.Fatalf("detections %q, want %q\n%s", got, tc.want, describe(as))
			}
			if as.Level != tc.level {
				t.Fatalf("level %s, want %s\n%s", as.Level, tc.level, describe(as))
			}
			checkInvariants(t, as)
		})
	}
}

func describe(as risk.Assessment) string {
	s := ""
	for _, d := range as.Detections {
		s += fmt.Sprintf("  %s %s: %s %v\n", d.Level, d.Code, d.Message, d.Evidence)
	}
	return s
}

// checkInvariants holds for every assessment: the level is the highest detection level, every
// detection explains itself, and the whole encodes as JSON for the audit record.
func checkInvariants(t *testing.T, as risk.Assessment) {
	t.Helper()
	if _, err := json.Marshal(as); err != nil {
		t.Errorf("the assessment does not encode as JSON: %v", err)
	}
	maxLevel := risk.None
	for _, d := range as.Detections {
		maxLevel = max(maxLevel, d.Level)
		if d.Code == "" || d.Message == "" || len(d.Evidence) == 0 || d.Level == risk.None {
			t.Errorf("detection %+v lacks a code, message, evidence or level", d)
		}
	}
	if as.Level != maxLevel {
		t.Errorf("level %s, but the highest detection is %s", as.Level, maxLevel)
	}
}

const (
	laptop = "fp-laptop"
	phone  = "fp-phone"
)

var soon = t0.Add(30 * time.Minute) // 09:30 UTC, alice's usual time

func TestFamiliaritySignals(t *testing.T) {
	runAssessCases(t, []assessCase{
		{name: "first sign-in ever", attempt: signIn("alice", ipBerlin, phone, soon), level: risk.None},
		{name: "learning: 4 sign-ins, everything new, nothing fires",
			past:    daily(4, "alice", ipHome, laptop),
			attempt: signIn("alice", ipBerlin, phone, t0.Add(-6*time.Hour)), // 03:00 UTC
			level:   risk.None},
		{name: "learned: the same attempt after 5 sign-ins",
			past:    daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipBerlin, phone, t0.Add(-6*time.Hour)),
			want: []string{"new_device", "new_ip", "new_asn", "new_country", "unusual_hour",
				"combination:new_country+new_device", "combination:new_device+new_asn"},
			level: risk.High},
		{name: "familiar sign-in", past: daily(20, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, soon), level: risk.None},
		{name: "new device at home", past: daily(5, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, phone, soon),
			want: []string{"new_device"}, level: risk.Low},
		{name: "no fingerprint from a user who always had one", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipHome, "", soon), want: []string{"new_device"}, level: risk.Low},
		{name: "no fingerprint from a user who never had one", past: daily(5, "alice", ipHome, ""),
			attempt: signIn("alice", ipHome, "", soon), level: risk.None},
		{name: "fingerprints only recently: device learning not over", past: concat(daily(10, "alice", ipHome, "")[:6], daily(4, "alice", ipHome, laptop)),
			attempt: signIn("alice", ipHome, phone, soon), level: risk.None},
		{name: "another address of the same home network", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipHome2, laptop, soon), want: []string{"new_ip"}, level: risk.Low},
		{name: "IPv6: another address in a known /64 is not new", past: daily(5, "alice", ipV6Home, laptop),
			attempt: signIn("alice", "2001:db8:3303:1:aaaa:bbbb:cccc:dddd", laptop, soon), level: risk.None},
		{name: "IPv6: another /64 is new", past: daily(5, "alice", ipV6Home, laptop),
			attempt: signIn("alice", "2001:db8:3303:2::10", laptop, soon), want: []string{"new_ip"}, level: risk.Low},
		{name: "IPv4-mapped form of a known address is not new", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", "::ffff:"+ipHome, laptop, soon), level: risk.None},
		{name: "new network, same country, known device", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipOffice, laptop, soon), want: []string{"new_ip", "new_asn"}, level: risk.Low},
		{name: "new network, same country, new device", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipOffice, phone, soon),
			want:    []string{"new_device", "new_ip", "new_asn", "combination:new_device+new_asn"}, level: risk.Medium},
		{name: "new country, known device", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipBerlin, laptop, soon), want: []string{"new_ip", "new_asn", "new_country"}, level: risk.Medium},
		{name: "known country and network from another city", past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipGeneva, laptop, soon.Add(24*time.Hour)), want: []string{"new_ip"}, level: risk.Low},
		{name: "geo data added later: no country or ASN learned yet", pastNoGeo: true, past: daily(8, "alice", ipHome, laptop),
			attempt: signIn("alice", ipBerlin, laptop, soon), want: []string{"new_ip"}, level: risk.Low},
		{name: "another subject's history does not count", past: daily(5, "bob", ipHome, laptop),
			attempt: signIn("alice", ipBerlin, phone, soon), level: risk.None},
		{name: "failed sign-in of an unknown user: no familiarity", past: daily(5, "alice", ipHome, laptop),
			attempt: failure("mallory", ipBerlin, soon), level: risk.None},
		{name: "step-up is checked like a sign-in", past: daily(5, "alice", ipHome, laptop),
			attempt: risk.Attempt{Subject: "alice", Time: soon, IP: addr(ipHome), Fingerprint: phone, Kind: risk.KindStepUp, Success: true},
			want:    []string{"new_device"}, level: risk.Low},
	})
}

// at returns t0's day at hh:mm UTC.
func at(hh, mm int) time.Time { return time.Date(2026, 3, 2, hh, mm, 0, 0, time.UTC) }

func TestUnusualHour(t *testing.T) {
	// Sign-ins at 23:30 on five days: 00:30 is near (the circle wraps), 02:00 is not.
	late := func(n int) []risk.Attempt {
		var out []risk.Attempt
		for k := n; k >= 1; k-- {
			out = append(out, signIn("alice", ipHome, laptop, at(23, 30).Add(-time.Duration(k+1)*24*time.Hour)))
		}
		return out
	}
	runAssessCases(t, []assessCase{
		{name: "usual hour", past: daily(5, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, at(9, 45)), level: risk.None},
		{name: "03:00 against 09:00", past: daily(5, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, at(3, 0)),
			want: []string{"unusual_hour"}, level: risk.Low},
		{name: "exactly the margin away is usual", past: daily(5, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, at(11, 0)),
			level: risk.None},
		{name: "a minute past the margin", past: daily(5, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, at(11, 1)),
			want: []string{"unusual_hour"}, level: risk.Low},
		{name: "wider margin", cfg: risk.Config{UnusualHourMargin: 3 * time.Hour}, past: daily(5, "alice", ipHome, laptop),
			attempt: signIn("alice", ipHome, laptop, at(11, 1)), level: risk.None},
		{name: "across midnight", past: late(5), attempt: signIn("alice", ipHome, laptop, at(0, 30)), level: risk.None},
		{name: "across midnight, too far", past: late(5), attempt: signIn("alice", ipHome, laptop, at(2, 0)),
			want: []string{"unusual_hour"}, level: risk.Low},
		{name: "one earlier night-time sign-in makes the hour usual",
			past:    append(daily(5, "alice", ipHome, laptop), signIn("alice", ipHome, laptop, at(3, 15).Add(-24*time.Hour))),
			attempt: signIn("alice", ipHome, laptop, at(3, 0)), level: risk.None},
		{name: "learning", past: daily(4, "alice", ipHome, laptop), attempt: signIn("alice", ipHome, laptop, at(3, 0)), level: risk.None},
		{name: "refreshes happen at any hour", past: daily(5, "alice", ipHome, laptop),
			attempt: refresh("alice", ipHome, laptop, ipHome, laptop, at(3, 0)), level: risk.None},
	})
}

func TestImpossibleTravel(t *testing.T) {
	zurich := signIn("alice", ipHome, laptop, t0)
	unlocated := signIn("alice", ipUnknown, laptop, t0.Add(50*time.Minute))
	runAssessCases(t, []assessCase{
		{name: "Zurich then Sydney 1h later", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipSydney, laptop, t0.Add(time.Hour)), want: []string{"impossible_travel"}, level: risk.High},
		{name: "Zurich then Geneva 1h later", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipGeneva, laptop, t0.Add(time.Hour)), level: risk.None},
		{name: "Zurich then Geneva 5 min later: closer than MinTravelKm", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipGeneva, laptop, t0.Add(5*time.Minute)), level: risk.None},
		{name: "Zurich then Berlin 10 min later", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipBerlin, laptop, t0.Add(10*time.Minute)), want: []string{"impossible_travel"}, level: risk.High},
		{name: "Zurich then Berlin 2h later", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipBerlin, laptop, t0.Add(2*time.Hour)), level: risk.None},
		{name: "Zurich then Sydney a day later", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipSydney, laptop, t0.Add(24*time.Hour)), level: risk.None},
		{name: "the same instant: no division by zero", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipSydney, laptop, t0), want: []string{"impossible_travel"}, level: risk.High},
		{name: "a record slightly in the future (clock skew) still counts", past: []risk.Attempt{signIn("alice", ipHome, laptop, t0.Add(time.Minute))},
			attempt: signIn("alice", ipSydney, laptop, t0), want: []string{"impossible_travel"}, level: risk.High},
		{name: "an unlocated sign-in in between is skipped", past: []risk.Attempt{zurich, unlocated},
			attempt: signIn("alice", ipSydney, laptop, t0.Add(time.Hour)), want: []string{"impossible_travel"}, level: risk.High},
		{name: "the nearest located sign-in is compared", past: []risk.Attempt{signIn("alice", ipSydney, laptop, t0.Add(-72*time.Hour)), zurich},
			attempt: signIn("alice", ipGeneva, laptop, t0.Add(time.Hour)), level: risk.None},
		{name: "unlocated attempt: nothing to compare", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipUnknown, laptop, t0.Add(time.Minute)), level: risk.None},
		{name: "country without coordinates: nothing to compare", past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipFrance, laptop, t0.Add(time.Minute)), level: risk.None},
		{name: "slower limit", cfg: risk.Config{ImpossibleSpeedKmh: 20000}, past: []risk.Attempt{zurich},
			attempt: signIn("alice", ipSydney, laptop, t0.Add(time.Hour)), level: risk.None},
		{name: "failed attempt from Sydney is flagged too", past: []risk.Attempt{zurich},
			attempt: risk.Attempt{Subject: "alice", Username: "alice", Time: t0.Add(time.Hour), IP: addr(ipSydney), Kind: risk.KindSignIn},
			want:    []string{"impossible_travel"}, level: risk.High},
	})
}

func TestImpossibleTravelAccuracy(t *testing.T) {
	// Zurich and Berlin are 670 km apart; two sign-ins 10 minutes apart. What counts is the
	// distance that certainly separates them, less both accuracy radii.
	for _, tc := range []struct {
		accuracy uint
		travel   bool
	}{
		{0, true},    // 670 km in 10 min
		{50, true},   // 570 km
		{100, false}, // 470 km: below MinTravelKm, however fast
		{300, false}, // 70 km
	} {
		tab, err := risk.NewTable([]risk.TableEntry{
			{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Location: risk.Location{Country: "CH", Lat: 47.3769, Lon: 8.5417, HasGeo: true, AccuracyKm: tc.accuracy}},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Location: risk.Location{Country: "DE", Lat: 52.52, Lon: 13.405, HasGeo: true, AccuracyKm: tc.accuracy}},
		})
		if err != nil {
			t.Fatal(err)
		}
		h := &risk.MemoryHistory{}
		record(t, h, tab, []risk.Attempt{signIn("alice", ipHome, laptop, t0)})
		eng, err := risk.NewEngine(risk.Config{}, tab, h)
		if err != nil {
			t.Fatal(err)
		}
		as, err := eng.Assess(context.Background(), signIn("alice", ipBerlin, laptop, t0.Add(10*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		if as.Has(risk.CodeImpossibleTravel) != tc.travel {
			t.Errorf("accuracy %d km each: impossible travel %v, want %v\n%s", tc.accuracy, !tc.travel, tc.travel, describe(as))
		}
	}
}

func TestImpossibleTravelEvidence(t *testing.T) {
	h := &risk.MemoryHistory{}
	geo := testGeo(t)
	record(t, h, geo, []risk.Attempt{signIn("alice", ipHome, laptop, t0)})
	eng, err := risk.NewEngine(risk.Config{}, geo, h)
	if err != nil {
		t.Fatal(err)
	}
	as, err := eng.Assess(context.Background(), signIn("alice", ipSydney, laptop, t0.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	d := as.Detections[0]
	ev := d.Evidence
	// Zurich–Sydney is 16,560 km on the great circle.
	if km := ev["distance_km"].(float64); km < 16500 || km > 16620 {
		t.Errorf("distance %v km, want about 16,560", km)
	}
	if v := ev["speed_kmh"].(float64); v < 16400 || v > 16560 {
		t.Errorf("speed %v km/h, want about 16,490 (distance less 70 km of accuracy, over 1 h)", v)
	}
	if ev["from_place"] != "CH" || ev["to_place"] != "Sydney, AU" || ev["elapsed_seconds"] != int64(3600) {
		t.Errorf("evidence %v", ev)
	}
	if as.Location == nil || as.Location.City != "Sydney" {
		t.Errorf("location %+v, want Sydney", as.Location)
	}
	t.Log(d.Message)

	// At the same instant, the elapsed time counts as a minute: the speed stays a number.
	as, err = eng.Assess(context.Background(), signIn("alice", ipSydney, laptop, t0))
	if err != nil {
		t.Fatal(err)
	}
	if v := as.Detections[0].Evidence["speed_kmh"].(float64); v < 980000 || v > 1000000 {
		t.Errorf("speed at the same instant %v km/h, want about 16,498 km per minute = 989,880", v)
	}
}

func TestListedAddresses(t *testing.T) {
	runAssessCases(t, []assessCase{
		{name: "anonymous by the geo data", attempt: signIn("alice", ipVPN, laptop, soon), want: []string{"anonymous_ip"}, level: risk.Medium},
		{name: "anonymous by the list", attempt: signIn("alice", ipListedAnon, laptop, soon), want: []string{"anonymous_ip"}, level: risk.Medium},
		{name: "anonymous on a refresh from elsewhere", attempt: refresh("alice", ipListedAnon, laptop, ipHome, laptop, soon),
			want: []string{"anonymous_ip", "token_replay"}, level: risk.Medium},
		{name: "a refresh from the session's own anonymous address is not asked again",
			attempt: refresh("alice", ipVPN, laptop, ipVPN, laptop, soon), level: risk.None},
		{name: "not anonymous", attempt: signIn("alice", ipBerlin, laptop, soon), level: risk.None},
		{name: "anonymous with a new device", past: daily(5, "alice", ipVPN, laptop), attempt: signIn("alice", ipVPN, phone, soon),
			want: []string{"new_device", "anonymous_ip", "combination:anonymous_ip+new_device"}, level: risk.High},
		{name: "bad", attempt: signIn("alice", ipBad, laptop, soon), want: []string{"bad_ip"}, level: risk.High},
		{name: "bad, even for a failed unknown user", attempt: failure("nobody", ipBad, soon), want: []string{"bad_ip"}, level: risk.High},
		{name: "bad, in its IPv4-mapped form", attempt: signIn("alice", "::ffff:"+ipBad, laptop, soon), want: []string{"bad_ip"}, level: risk.High},
		{name: "next to bad is not bad", attempt: signIn("alice", "192.0.2.251", laptop, soon), level: risk.None},
	})
}

// failures is n failed attempts for username from ip, one a minute, ending a minute before end.
func failures(n int, username, ip string, end time.Time) []risk.Attempt {
	var out []risk.Attempt
	for i := n; i >= 1; i-- {
		out = append(out, failure(username, ip, end.Add(-time.Duration(i)*time.Minute)))
	}
	return out
}

func TestFailureSignals(t *testing.T) {
	var spray, spray9, sprayV6 []risk.Attempt
	for i := range 10 {
		u := fmt.Sprintf("user%02d", i)
		spray = append(spray, failure(u, ipUnknown, soon.Add(-time.Duration(10-i)*time.Minute)))
		if i < 9 {
			spray9 = append(spray9, spray[i])
		}
		// A spray that rotates through the addresses of one IPv6 /64.
		sprayV6 = append(sprayV6, failure(u, fmt.Sprintf("2001:db8:bad:1::%x", 0x100+i), soon.Add(-time.Duration(10-i)*time.Minute)))
	}
	home5 := daily(5, "alice", ipHome, laptop)
	runAssessCases(t, []assessCase{
		{name: "4 failures then success", past: failures(4, "alice", ipHome, soon), attempt: signIn("alice", ipHome, laptop, soon), level: risk.None},
		{name: "5 failures then success", past: failures(5, "alice", ipHome, soon), attempt: signIn("alice", ipHome, laptop, soon),
			want: []string{"user_failures"}, level: risk.Medium},
		{name: "the 5th failure itself", past: failures(4, "alice", ipHome, soon), attempt: failure("alice", ipHome, soon),
			want: []string{"user_failures"}, level: risk.Medium},
		{name: "failures outside the window do not count", past: failures(5, "alice", ipHome, soon.Add(-15*time.Minute)),
			attempt: signIn("alice", ipHome, laptop, soon), level: risk.None},
		{name: "a longer window counts them", cfg: risk.Config{FailureWindow: time.Hour}, past: failures(5, "alice", ipHome, soon.Add(-15*time.Minute)),
			attempt: signIn("alice", ipHome, laptop, soon), want: []string{"user_failures"}, level: risk.Medium},
		{name: "another user's failures do not count", past: failures(5, "bob", ipHome, soon), attempt: signIn("alice", ipHome, laptop, soon),
			level: risk.None},
		{name: "success from a new device after failures", past: concat(home5, failures(5, "alice", ipHome, soon)),
			attempt: signIn("alice", ipHome, phone, soon),
			want:    []string{"new_device", "user_failures", "combination:user_failures+new"}, level: risk.High},
		{name: "success from a new address (known device) after failures", past: concat(home5, failures(5, "alice", ipHome, soon)),
			attempt: signIn("alice", ipHome2, laptop, soon), want: []string{"new_ip", "user_failures"}, level: risk.Medium},
		{name: "a failure from a new device after failures does not combine", past: concat(home5, failures(5, "alice", ipHome, soon)),
			attempt: risk.Attempt{Subject: "alice", Username: "alice", Time: soon, IP: addr(ipHome), Fingerprint: phone, Kind: risk.KindSignIn},
			want:    []string{"new_device", "user_failures"}, level: risk.Medium},
		{name: "a refresh ignores password guessing", past: failures(5, "alice", ipHome, soon),
			attempt: refresh("alice", ipHome, laptop, ipHome, laptop, soon), level: risk.None},
		{name: "spray: 10 usernames from one address", past: spray, attempt: failure("user10", ipUnknown, soon),
			want: []string{"password_spray"}, level: risk.High},
		{name: "spray: a success from the spraying address", past: spray, attempt: signIn("alice", ipUnknown, laptop, soon),
			want: []string{"password_spray"}, level: risk.High},
		{name: "spray: a refresh from the spraying address", past: spray, attempt: refresh("alice", ipUnknown, laptop, ipUnknown, laptop, soon),
			want: []string{"password_spray"}, level: risk.High},
		{name: "spray: 9 usernames are not enough", past: spray9, attempt: failure("user10", ipUnknown, soon), level: risk.None},
		{name: "spray: lower threshold", cfg: risk.Config{SprayUsers: 5}, past: spray9, attempt: failure("user10", ipUnknown, soon),
			want: []string{"password_spray"}, level: risk.High},
		{name: "spray: another address is unaffected", past: spray, attempt: failure("user10", "192.0.2.201", soon), level: risk.None},
		{name: "spray: rotating through an IPv6 /64", past: sprayV6, attempt: failure("user10", "2001:db8:bad:1::ffff", soon),
			want: []string{"password_spray"}, level: risk.High},
		{name: "spray: the next /64 is another source", past: sprayV6, attempt: failure("user10", "2001:db8:bad:2::1", soon), level: risk.None},
		{name: "one user failing 10 times is not a spray", past: failures(10, "bob", ipUnknown, soon), attempt: failure("carol", ipUnknown, soon),
			level: risk.None},
	})
}

func TestTokenReplay(t *testing.T) {
	withSeen := func(a risk.Attempt, seen time.Time) risk.Attempt { a.SessionLastSeen = seen; return a }
	home5 := daily(5, "alice", ipHome, laptop)
	runAssessCases(t, []assessCase{
		{name: "same place, same device", past: home5, attempt: refresh("alice", ipHome, laptop, ipHome, laptop, soon), level: risk.None},
		{name: "another device", past: home5, attempt: refresh("alice", ipHome, phone, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.High},
		{name: "no fingerprint where the session had one", past: home5, attempt: refresh("alice", ipHome, "", ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.High},
		{name: "a fingerprint where the session had none", attempt: refresh("alice", ipHome, laptop, ipHome, "", soon),
			want: []string{"token_replay"}, level: risk.High},
		{name: "same device, another network", past: home5, attempt: refresh("alice", ipBerlin, laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Medium},
		{name: "same device, another address of the same network", past: home5, attempt: refresh("alice", ipHome2, laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Low},
		{name: "dual stack: IPv6 in the same AS", past: home5, attempt: refresh("alice", ipV6Home, laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Low},
		{name: "without ASN data: same /24 is one network", noGeo: true, attempt: refresh("alice", ipHome2, laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Low},
		{name: "without ASN data: another /24 is another network", noGeo: true, attempt: refresh("alice", "192.0.3.1", laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Medium},
		{name: "without ASN data: IPv6 in the same /48 is one network", noGeo: true,
			attempt: refresh("alice", "2001:db8:77:1::1", laptop, "2001:db8:77:2::1", laptop, soon), want: []string{"token_replay"}, level: risk.Low},
		{name: "without ASN data: IPv6 in another /48 is another network", noGeo: true,
			attempt: refresh("alice", "2001:db8:77:1::1", laptop, "2001:db8:78:1::1", laptop, soon), want: []string{"token_replay"}, level: risk.Medium},
		{name: "the IPv4-mapped form of the session's address is the same address",
			attempt: refresh("alice", "::ffff:"+ipHome, laptop, ipHome, laptop, soon), level: risk.None},
		{name: "without ASN data: dual stack is another network", noGeo: true, attempt: refresh("alice", ipV6Home, laptop, ipHome, laptop, soon),
			want: []string{"token_replay"}, level: risk.Medium},
		{name: "from Sydney 1h after the session was used in Zurich", past: daily(5, "alice", ipHome, laptop),
			attempt: withSeen(refresh("alice", ipSydney, laptop, ipHome, laptop, soon), soon.Add(-time.Hour)),
			want:    []string{"impossible_travel", "token_replay"}, level: risk.High},
		{name: "from Sydney long after the session was used", past: daily(5, "alice", ipHome, laptop),
			attempt: withSeen(refresh("alice", ipSydney, laptop, ipHome, laptop, soon), soon.Add(-30*time.Hour)),
			want:    []string{"token_replay"}, level: risk.Medium},
		{name: "a refresh is not checked for familiarity", past: home5, attempt: refresh("alice", ipBerlin, phone, ipBerlin, phone, soon),
			level: risk.None},
		{name: "step-up in a session from another device", past: home5,
			attempt: risk.Attempt{Subject: "alice", Time: soon, IP: addr(ipHome), Fingerprint: phone, Kind: risk.KindStepUp, Success: true,
				SessionIP: addr(ipHome), SessionFingerprint: laptop},
			want: []string{"new_device", "token_replay"}, level: risk.High},
	})
}

func TestLevelCombination(t *testing.T) {
	home5 := daily(5, "alice", ipHome, laptop)
	runAssessCases(t, []assessCase{
		{name: "lows stay low", past: home5, attempt: signIn("alice", ipHome2, phone, at(3, 0)),
			want: []string{"new_device", "new_ip", "unusual_hour"}, level: risk.Low},
		{name: "new country + new device", past: home5, attempt: signIn("alice", ipBerlin, phone, soon),
			want:  []string{"new_device", "new_ip", "new_asn", "new_country", "combination:new_country+new_device", "combination:new_device+new_asn"},
			level: risk.High},
		{name: "new country without coordinates + new device", past: home5, attempt: signIn("alice", ipFrance, phone, soon),
			want:  []string{"new_device", "new_ip", "new_asn", "new_country", "combination:new_country+new_device", "combination:new_device+new_asn"},
			level: risk.High},
		{name: "new device + new ASN", past: home5, attempt: signIn("alice", ipOffice, phone, soon),
			want: []string{"new_device", "new_ip", "new_asn", "combination:new_device+new_asn"}, level: risk.Medium},
		{name: "medium + high is high", past: failures(5, "alice", ipHome, soon), attempt: signIn("alice", ipBad, laptop, soon),
			want: []string{"bad_ip", "user_failures"}, level: risk.High},
		{name: "impossible travel alone is high", past: []risk.Attempt{signIn("alice", ipHome, laptop, t0)},
			attempt: signIn("alice", ipSydney, laptop, t0.Add(time.Hour)), want: []string{"impossible_travel"}, level: risk.High},
	})
}

// failingHistory fails one of its methods.
type failingHistory struct {
	risk.MemoryHistory
	fail string
}

var errDown = errors.New("database is down")

func (f *failingHistory) Recent(ctx context.Context, s string, n int) ([]risk.Record, error) {
	if f.fail == "Recent" {
		return nil, errDown
	}
	return f.MemoryHistory.Recent(ctx, s, n)
}

func (f *failingHistory) FailuresByUser(ctx context.Context, u string, since time.Time) (int, error) {
	if f.fail == "FailuresByUser" {
		return 0, errDown
	}
	return f.MemoryHistory.FailuresByUser(ctx, u, since)
}

func (f *failingHistory) FailuresBySource(ctx context.Context, p netip.Prefix, since time.Time) (int, int, error) {
	if f.fail == "FailuresBySource" {
		return 0, 0, errDown
	}
	return f.MemoryHistory.FailuresBySource(ctx, p, since)
}

func TestHistoryUnavailableFailsClosed(t *testing.T) {
	for _, method := range []string{"Recent", "FailuresByUser", "FailuresBySource"} {
		t.Run(method, func(t *testing.T) {
			eng, err := risk.NewEngine(risk.Config{}, testGeo(t), &failingHistory{fail: method})
			if err != nil {
				t.Fatal(err)
			}
			as, err := eng.Assess(context.Background(), signIn("alice", ipHome, laptop, soon))
			if !errors.Is(err, risk.ErrHistoryUnavailable) || !errors.Is(err, errDown) {
				t.Fatalf("err = %v, want ErrHistoryUnavailable wrapping the store's error", err)
			}
			if !reflect.DeepEqual(as, risk.Assessment{}) {
				t.Fatalf("an assessment came with the error: %+v", as)
			}
		})
	}
}

func TestInvalidAttempts(t *testing.T) {
	eng, err := risk.NewEngine(risk.Config{}, nil, &risk.MemoryHistory{})
	if err != nil {
		t.Fatal(err)
	}
	ok := signIn("alice", ipHome, laptop, soon)
	for _, tc := range []struct {
		name string
		edit func(*risk.Attempt)
	}{
		{"no time", func(a *risk.Attempt) { a.Time = time.Time{} }},
		{"no IP", func(a *risk.Attempt) { a.IP = netip.Addr{} }},
		{"no kind", func(a *risk.Attempt) { a.Kind = "" }},
		{"unknown kind", func(a *risk.Attempt) { a.Kind = "login" }},
		{"success without subject", func(a *risk.Attempt) { a.Subject = "" }},
		{"refresh without session", func(a *risk.Attempt) { a.Kind = risk.KindRefresh }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := ok
			tc.edit(&a)
			if _, err := eng.Assess(context.Background(), a); !errors.Is(err, risk.ErrInvalidAttempt) {
				t.Fatalf("err = %v, want ErrInvalidAttempt", err)
			}
		})
	}
	if _, err := eng.Assess(context.Background(), ok); err != nil {
		t.Fatalf("the valid attempt: %v", err)
	}
	// A failed refresh (an unknown token) has no session to name.
	unknownToken := risk.Attempt{Time: soon, IP: addr(ipHome), Kind: risk.KindRefresh}
	if as, err := eng.Assess(context.Background(), unknownToken); err != nil || as.Level != risk.None {
		t.Fatalf("failed refresh without a session: %v, %v", as, err)
	}
}

func TestNewEngineRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  risk.Config
	}{
		{"negative learning", risk.Config{LearningSignIns: -1}},
		{"history too large", risk.Config{HistorySize: risk.MaxHistorySize + 1}},
		{"learning beyond history", risk.Config{LearningSignIns: 20, HistorySize: 10}},
		{"negative speed", risk.Config{ImpossibleSpeedKmh: -5}},
		{"NaN distance", risk.Config{MinTravelKm: nan()}},
		{"margin of 12h", risk.Config{UnusualHourMargin: 12 * time.Hour}},
		{"negative window", risk.Config{FailureWindow: -time.Minute}},
		{"negative spray", risk.Config{SprayUsers: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := risk.NewEngine(tc.cfg, nil, &risk.MemoryHistory{}); err == nil {
				t.Fatal("accepted")
			} else {
				t.Log(err)
			}
		})
	}
	if _, err := risk.NewEngine(risk.Config{}, nil, nil); err == nil {
		t.Fatal("accepted a nil history")
	}
	eng, err := risk.NewEngine(risk.Config{}, nil, &risk.MemoryHistory{})
	if err != nil {
		t.Fatal(err)
	}
	if c := eng.Config(); c.LearningSignIns != 5 || c.HistorySize != 50 || c.ImpossibleSpeedKmh != 1000 || c.FailureWindow != 15*time.Minute ||
		c.UserFailures != 5 || c.SprayUsers != 10 || c.UnusualHourMargin != 2*time.Hour || c.MinTravelKm != 500 {
		t.Fatalf("defaults: %+v", c)
	}
}

func nan() float64 { z := 0.0; return z / z }

// TestDeterministic: the same inputs give the same assessment, whatever else runs at once.
func TestDeterministic(t *testing.T) {
	geo := testGeo(t)
	anon, bad := testLists(t)
	h := &risk.MemoryHistory{}
	record(t, h, geo, concat(daily(30, "alice", ipHome, laptop), failures(6, "alice", ipHome, soon)))
	eng, err := risk.NewEngine(risk.Config{AnonymousIPs: anon, BadIPs: bad}, geo, h)
	if err != nil {
		t.Fatal(err)
	}
	a := signIn("alice", ipBerlin, phone, at(2, 0))
	first, err := eng.Assess(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan risk.Assessment)
	for range 8 {
		go func() {
			as, _ := eng.Assess(context.Background(), a)
			done <- as
		}()
	}
	for range 8 {
		if as := <-done; !reflect.DeepEqual(as, first) {
			t.Fatalf("assessments differ:\n%s\n%s", describe(first), describe(as))
		}
	}
	if first.String() != "high: new_device, new_ip, new_asn, new_country, unusual_hour, user_failures, combination, combination, combination" {
		t.Fatalf("String() = %q", first.String())
	}
}
