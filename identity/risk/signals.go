package risk

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Detection codes (the package documentation says when each fires).
const (
	// CodeNewDevice: a fingerprint never seen for the subject.
	CodeNewDevice = "new_device"
	// CodeNewIP: a network address (SourceOf) never seen for the subject.
	CodeNewIP = "new_ip"
	// CodeNewASN: an autonomous system never seen for the subject.
	CodeNewASN = "new_asn"
	// CodeNewCountry: a country never seen for the subject.
	CodeNewCountry = "new_country"
	// CodeUnusualHour: a time of day far from all of the subject's sign-ins.
	CodeUnusualHour = "unusual_hour"
	// CodeImpossibleTravel: too far from the previous place for the time elapsed.
	CodeImpossibleTravel = "impossible_travel"
	// CodeAnonymousIP: an anonymising service.
	CodeAnonymousIP = "anonymous_ip"
	// CodeBadIP: a listed bad source.
	CodeBadIP = "bad_ip"
	// CodeUserFailures: many recent failures for the username.
	CodeUserFailures = "user_failures"
	// CodePasswordSpray: many usernames failing from the source.
	CodePasswordSpray = "password_spray"
	// CodeTokenReplay: a session used from another device or address than its own.
	CodeTokenReplay = "token_replay"
	// CodeCombination marks a detection added by a combination rule; its evidence names the
	// rule ("rule") and the detections it combined ("codes").
	CodeCombination = "combination"
)

// signals is what one assessment observed; assess evaluates every signal over it.
type signals struct {
	cfg          *Config
	a            Attempt
	loc          *Location
	records      []Record
	username     string
	userFailures int
	srcFailures  int
	srcUsers     int
	session      bool
	sessionLoc   *Location
	out          []Detection
}

func (s *signals) add(code string, l Level, ev map[string]any, format string, args ...any) {
	s.out = append(s.out, Detection{Code: code, Level: l, Evidence: ev, Message: fmt.Sprintf(format, args...)})
}

func (s *signals) has(code string) bool {
	for _, d := range s.out {
		if d.Code == code {
			return true
		}
	}
	return false
}

// assess runs the signals in their documented order, then the combinations, and takes the
// highest level.
func (s *signals) assess() Assessment {
	if s.a.Kind.interactive() {
		s.newDevice()
		s.newIP()
		s.newASN()
		s.newCountry()
		s.unusualHour()
	}
	s.impossibleTravel()
	s.anonymousIP()
	s.badIP()
	s.userFailureVelocity() // never counted for a refresh (Assess)
	s.passwordSpray()
	if s.session {
		s.tokenReplay()
	}
	s.combinations()
	as := Assessment{Detections: s.out, Location: s.loc}
	for _, d := range s.out {
		as.Level = max(as.Level, d.Level)
	}
	return as
}

// distinct counts the distinct known values of a property among the records.
func distinct[T comparable](rs []Record, get func(Record) (T, bool)) int {
	seen := make(map[T]struct{}, len(rs))
	for _, r := range rs {
		if v, ok := get(r); ok {
			seen[v] = struct{}{}
		}
	}
	return len(seen)
}

// familiar counts the records that carry a property and reports whether one has value v.
func familiar[T comparable](rs []Record, v T, get func(Record) (T, bool)) (known int, seen bool) {
	for _, r := range rs {
		if x, ok := get(r); ok {
			known++
			seen = seen || x == v
		}
	}
	return known, seen
}

func recFingerprint(r Record) (string, bool)  { return r.Fingerprint, r.Fingerprint != "" }
func recSource(r Record) (netip.Prefix, bool) { return SourceOf(r.IP), r.IP.IsValid() }
func recASN(r Record) (uint, bool)            { return r.ASN, r.ASN != 0 }
func recCountry(r Record) (string, bool)      { return r.Country, r.Country != "" }

func (s *signals) newDevice() {
	known, seen := familiar(s.records, s.a.Fingerprint, recFingerprint)
	if known < s.cfg.LearningSignIns || seen {
		return
	}
	ev := map[string]any{"fingerprint": s.a.Fingerprint, "known_devices": distinct(s.records, recFingerprint), "baseline_sign_ins": known}
	if s.a.Fingerprint == "" {
		s.add(CodeNewDevice, Low, ev, "%s's client presented no device fingerprint; their last %d sign-ins did", s.a.Subject, known)
		return
	}
	s.add(CodeNewDevice, Low, ev, "device %s is not among the %d devices of %s's last %d sign-ins",
		short(s.a.Fingerprint), ev["known_devices"], s.a.Subject, known)
}

func (s *signals) newIP() {
	src := SourceOf(s.a.IP)
	known, seen := familiar(s.records, src, recSource)
	if known < s.cfg.LearningSignIns || seen {
		return
	}
	n := distinct(s.records, recSource)
	s.add(CodeNewIP, Low, map[string]any{"ip": s.a.IP.String(), "network": src.String(), "known_networks": n, "baseline_sign_ins": known},
		"%s is not among the %d networks of %s's last %d sign-ins", src, n, s.a.Subject, known)
}

func (s *signals) newASN() {
	if s.loc == nil || s.loc.ASN == 0 {
		return
	}
	known, seen := familiar(s.records, s.loc.ASN, recASN)
	if known < s.cfg.LearningSignIns || seen {
		return
	}
	n := distinct(s.records, recASN)
	s.add(CodeNewASN, Low, map[string]any{"asn": s.loc.ASN, "org": s.loc.Org, "known_asns": n, "baseline_sign_ins": known},
		"AS%d (%s) is not among the %d networks of %s's last %d sign-ins", s.loc.ASN, s.loc.Org, n, s.a.Subject, known)
}

func (s *signals) newCountry() {
	if s.loc == nil || s.loc.Country == "" {
		return
	}
	known, seen := familiar(s.records, s.loc.Country, recCountry)
	if known < s.cfg.LearningSignIns || seen {
		return
	}
	var countries []string
	for _, r := range s.records {
		if r.Country != "" && !slices.Contains(countries, r.Country) {
			countries = append(countries, r.Country)
		}
	}
	slices.Sort(countries)
	s.add(CodeNewCountry, Medium, map[string]any{"country": s.loc.Country, "city": s.loc.City, "known_countries": countries, "baseline_sign_ins": known},
		"first sign-in of %s from %s in their last %d (before: %v)", s.a.Subject, place(s.loc.City, s.loc.Country), known, countries)
}

// minuteOfDay is t's time of day in UTC, in minutes.
func minuteOfDay(t time.Time) int {
	t = t.UTC()
	return t.Hour()*60 + t.Minute()
}

// circularMinutes is the distance between two times of day, going either way round the clock.
func circularMinutes(a, b int) int {
	d := a - b
	if d < 0 {
		d = -d
	}
	return min(d, 24*60-d)
}

func hhmm(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

func (s *signals) unusualHour() {
	if len(s.records) < s.cfg.LearningSignIns {
		return
	}
	now := minuteOfDay(s.a.Time)
	best, nearest := 24*60, 0
	for _, r := range s.records {
		m := minuteOfDay(r.Time)
		if d := circularMinutes(now, m); d < best {
			best, nearest = d, m
		}
	}
	margin := int(s.cfg.UnusualHourMargin / time.Minute)
	if best <= margin {
		return
	}
	s.add(CodeUnusualHour, Low, map[string]any{"time_utc": hhmm(now), "nearest_usual_utc": hhmm(nearest), "gap_minutes": best,
		"margin_minutes": margin, "baseline_sign_ins": len(s.records)},
		"%s UTC is %s from the nearest time of day (%s UTC) of %s's last %d sign-ins", hhmm(now),
		time.Duration(best)*time.Minute, hhmm(nearest), s.a.Subject, len(s.records))
}

// point is a place at a time that travel is measured from.
type point struct {
	what     string // "sign-in" or "session"
	t        time.Time
	ip       netip.Addr
	lat, lon float64
	accuracy uint
	country  string
	city     string
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func (s *signals) impossibleTravel() {
	if s.loc == nil || !s.loc.HasGeo {
		return
	}
	var prev *point
	for _, r := range s.records {
		if !r.HasGeo {
			continue
		}
		if prev == nil || absDuration(s.a.Time.Sub(r.Time)) < absDuration(s.a.Time.Sub(prev.t)) {
			prev = &point{what: "sign-in", t: r.Time, ip: r.IP, lat: r.Lat, lon: r.Lon, accuracy: r.AccuracyKm, country: r.Country}
		}
	}
	if sl := s.sessionLoc; s.session && sl != nil && sl.HasGeo && !s.a.SessionLastSeen.IsZero() {
		if prev == nil || absDuration(s.a.Time.Sub(s.a.SessionLastSeen)) < absDuration(s.a.Time.Sub(prev.t)) {
			prev = &point{what: "session", t: s.a.SessionLastSeen, ip: s.a.SessionIP, lat: sl.Lat, lon: sl.Lon,
				accuracy: sl.AccuracyKm, country: sl.Country, city: sl.City}
		}
	}
	if prev == nil {
		return
	}
	dist := haversineKm(prev.lat, prev.lon, s.loc.Lat, s.loc.Lon)
	tolerance := float64(prev.accuracy) + float64(s.loc.AccuracyKm)
	eff := dist - tolerance
	if eff < s.cfg.MinTravelKm {
		return
	}
	elapsed := absDuration(s.a.Time.Sub(prev.t))
	hours := max(elapsed.Hours(), 1.0/60) // a minute at least: clocks and records are not that precise
	speed := eff / hours
	if speed <= s.cfg.ImpossibleSpeedKmh {
		return
	}
	from, to := place(prev.city, prev.country), place(s.loc.City, s.loc.Country)
	s.add(CodeImpossibleTravel, High, map[string]any{
		"from": prev.what, "from_ip": prev.ip.String(), "from_place": from, "from_lat": prev.lat, "from_lon": prev.lon,
		"from_time": prev.t.UTC().Format(time.RFC3339),
		"to_ip":     s.a.IP.String(), "to_place": to, "to_lat": s.loc.Lat, "to_lon": s.loc.Lon,
		"to_time":     s.a.Time.UTC().Format(time.RFC3339),
		"distance_km": round1(dist), "accuracy_km": round1(tolerance), "elapsed_seconds": int64(elapsed / time.Second),
		"speed_kmh": round1(speed), "max_speed_kmh": s.cfg.ImpossibleSpeedKmh,
	}, "%s from %s %s after the %s from %s, %.0f km away: at least %.0f km/h (more than %.0f km/h)",
		s.a.Kind, to, elapsed.Round(time.Second), prev.what, from, dist, speed, s.cfg.ImpossibleSpeedKmh)
}

func (s *signals) anonymousIP() {
	if s.a.Kind == KindRefresh && s.a.IP == s.a.SessionIP {
		return // assessed when the session was signed in from this address
	}
	ev := map[string]any{}
	if m, ok := s.cfg.AnonymousIPs.Lookup(s.a.IP); ok {
		ev["list"], ev["prefix"] = m.Source, m.Prefix.String()
	}
	if s.loc != nil && s.loc.Anonymous {
		ev["geo"] = true
	}
	if len(ev) == 0 {
		return
	}
	ev["ip"] = s.a.IP.String()
	why := "the geo data marks it anonymous"
	if l, ok := ev["list"]; ok {
		why = fmt.Sprintf("it is listed at %s", l)
	}
	s.add(CodeAnonymousIP, Medium, ev, "%s is an anonymising service (VPN, Tor or proxy): %s", s.a.IP, why)
}

func (s *signals) badIP() {
	m, ok := s.cfg.BadIPs.Lookup(s.a.IP)
	if !ok {
		return
	}
	s.add(CodeBadIP, High, map[string]any{"ip": s.a.IP.String(), "prefix": m.Prefix.String(), "list": m.Source},
		"%s is a known-bad source (%s, listed at %s)", s.a.IP, m.Prefix, m.Source)
}

func (s *signals) userFailureVelocity() {
	if s.username == "" || s.userFailures < s.cfg.UserFailures {
		return
	}
	s.add(CodeUserFailures, Medium, map[string]any{"username": s.username, "failures": s.userFailures,
		"window_seconds": int64(s.cfg.FailureWindow / time.Second), "threshold": s.cfg.UserFailures},
		"%d failed attempts for %q in the last %s (threshold %d)", s.userFailures, s.username, s.cfg.FailureWindow, s.cfg.UserFailures)
}

func (s *signals) passwordSpray() {
	if s.srcUsers < s.cfg.SprayUsers {
		return
	}
	src := SourceOf(s.a.IP)
	s.add(CodePasswordSpray, High, map[string]any{"source": src.String(), "failures": s.srcFailures, "distinct_users": s.srcUsers,
		"window_seconds": int64(s.cfg.FailureWindow / time.Second), "threshold": s.cfg.SprayUsers},
		"%s failed %d attempts across %d usernames in the last %s (threshold %d usernames)",
		src, s.srcFailures, s.srcUsers, s.cfg.FailureWindow, s.cfg.SprayUsers)
}

// sameNetwork reports whether two addresses belong to one network: the same autonomous system
// when both are known, otherwise the same IPv4 /24 or IPv6 /48.
func sameNetwork(a, b netip.Addr, la, lb *Location) bool {
	if la != nil && lb != nil && la.ASN != 0 && lb.ASN != 0 {
		return la.ASN == lb.ASN
	}
	if a.Is4() != b.Is4() {
		return false
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	pa, _ := a.Prefix(bits)
	pb, _ := b.Prefix(bits)
	return pa == pb
}

func (s *signals) tokenReplay() {
	fpChanged := s.a.Fingerprint != s.a.SessionFingerprint
	ipChanged := s.a.IP != s.a.SessionIP
	if !fpChanged && !ipChanged {
		return
	}
	ev := map[string]any{"session_ip": s.a.SessionIP.String(), "ip": s.a.IP.String(),
		"session_fingerprint": s.a.SessionFingerprint, "fingerprint": s.a.Fingerprint}
	if s.sessionLoc != nil && s.sessionLoc.ASN != 0 {
		ev["session_asn"] = s.sessionLoc.ASN
	}
	if s.loc != nil && s.loc.ASN != 0 {
		ev["asn"] = s.loc.ASN
	}
	switch {
	case fpChanged:
		s.add(CodeTokenReplay, High, ev, "%s of a session from device %s presented by device %s (from %s; the session was last used from %s)",
			s.a.Kind, orNone(short(s.a.SessionFingerprint)), orNone(short(s.a.Fingerprint)), s.a.IP, s.a.SessionIP)
	case !sameNetwork(s.a.IP, s.a.SessionIP, s.loc, s.sessionLoc):
		s.add(CodeTokenReplay, Medium, ev, "%s of a session from another network: %s, the session was last used from %s",
			s.a.Kind, s.a.IP, s.a.SessionIP)
	default:
		s.add(CodeTokenReplay, Low, ev, "%s of a session from another address in the same network: %s, the session was last used from %s",
			s.a.Kind, s.a.IP, s.a.SessionIP)
	}
}

// combination is a rule that makes detections seen together worse than each alone.
type combination struct {
	rule  string
	level Level
	codes []string
	// successOnly restricts the rule to successful attempts.
	successOnly bool
	// anyOf: at least one of these must also have fired (empty: none needed).
	anyOf []string
	why   string
}

// combinations are the documented rules, in order.
var combinations = []combination{
	{rule: "new_country+new_device", level: High, codes: []string{CodeNewCountry, CodeNewDevice},
		why: "a device never seen, in a country never seen"},
	{rule: "new_device+new_asn", level: Medium, codes: []string{CodeNewDevice, CodeNewASN},
		why: "a device never seen, on a network never seen"},
	{rule: "anonymous_ip+new_device", level: High, codes: []string{CodeAnonymousIP, CodeNewDevice},
		why: "a device never seen, hiding its address"},
	{rule: "user_failures+new", level: High, codes: []string{CodeUserFailures}, anyOf: []string{CodeNewDevice, CodeNewCountry},
		successOnly: true, why: "success after repeated failures, from a new device or country"},
}

func (s *signals) combinations() {
	for _, c := range combinations {
		if c.successOnly && !s.a.Success {
			continue
		}
		codes := slices.Clone(c.codes)
		ok := true
		for _, code := range c.codes {
			ok = ok && s.has(code)
		}
		if ok && len(c.anyOf) > 0 {
			ok = false
			for _, code := range c.anyOf {
				if s.has(code) {
					codes, ok = append(codes, code), true
				}
			}
		}
		if ok {
			s.add(CodeCombination, c.level, map[string]any{"rule": c.rule, "codes": codes}, "%s (%s)", c.why, c.rule)
		}
	}
}

// place names a city and country for messages.
func place(city, country string) string {
	switch {
	case city != "" && country != "":
		return city + ", " + country
	case country != "":
		return country
	case city != "":
		return city
	}
	return "an unknown place"
}

// short abbreviates a fingerprint for messages (the evidence keeps it whole).
func short(fp string) string {
	r := []rune(fp)
	if len(r) > 12 {
		return string(r[:12]) + "…"
	}
	return fp
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
