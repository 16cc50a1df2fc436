package risk

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// History is what the engine reads about the past. Rampart's store implements it; MemoryHistory
// is the reference implementation, and risktest.TestHistory checks any implementation against
// it. An error from any method makes Assess fail (the caller must refuse the attempt).
type History interface {
	// Recent returns up to limit of the subject's recorded sign-ins (see Record), newest first.
	// The caller owns the returned slice.
	Recent(ctx context.Context, subject string, limit int) ([]Record, error)
	// FailuresByUser counts the failed attempts recorded for username at or after since.
	FailuresByUser(ctx context.Context, username string, since time.Time) (int, error)
	// FailuresBySource counts the failed attempts recorded at or after since from an address
	// inside source, and the distinct usernames among them. The engine always asks about
	// SourceOf(ip) (an IPv4 /32 or an IPv6 /64), so a store may keep SourceOf(ip).String() in
	// an indexed column and compare it for equality instead of matching ranges.
	FailuresBySource(ctx context.Context, source netip.Prefix, since time.Time) (failures, distinctUsers int, err error)
}

// Record is one past sign-in the engine learns from: an interactive sign-in or step-up (not a
// refresh) that was let in. Build it with NewRecord.
type Record struct {
	// Time is when the sign-in happened (Attempt.Time).
	Time time.Time `json:"time"`
	// IP is the client address, unmapped (an IPv4 address is never stored as ::ffff:a.b.c.d).
	IP netip.Addr `json:"ip"`
	// Fingerprint is the device fingerprint ("" if none was presented).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Country is the ISO code of the location ("" if unknown).
	Country string `json:"country,omitempty"`
	// ASN is the autonomous system (0 if unknown).
	ASN uint `json:"asn,omitempty"`
	// Lat and Lon are the coordinates, meaningful only if HasGeo.
	Lat float64 `json:"lat,omitempty"`
	Lon float64 `json:"lon,omitempty"` // see Lat
	// HasGeo reports that Lat and Lon are known.
	HasGeo bool `json:"has_geo,omitempty"`
	// AccuracyKm is the location's accuracy radius (0 if unknown; optional to store).
	AccuracyKm uint `json:"accuracy_km,omitempty"`
}

// NewRecord is what to store, under a.Subject, once the attempt a (assessed with location loc,
// the Assessment's Location, possibly nil) has been let in.
func NewRecord(a Attempt, loc *Location) Record {
	r := Record{Time: a.Time, IP: normAddr(a.IP), Fingerprint: a.Fingerprint}
	if loc != nil {
		r.Country, r.ASN = loc.Country, loc.ASN
		if loc.HasGeo {
			r.Lat, r.Lon, r.HasGeo, r.AccuracyKm = loc.Lat, loc.Lon, true, loc.AccuracyKm
		}
	}
	return r
}

// Failure is one failed attempt, to store whether or not its subject is known.
type Failure struct {
	// Time is when the attempt failed.
	Time time.Time `json:"time"`
	// Username is Attempt.Username (or its Subject if that is empty); "" counts only for the
	// source.
	Username string `json:"username,omitempty"`
	// IP is the client address, unmapped.
	IP netip.Addr `json:"ip"`
}

// NewFailure is what to store for a failed attempt.
func NewFailure(a Attempt) Failure {
	u := a.Username
	if u == "" {
		u = a.Subject
	}
	return Failure{Time: a.Time, Username: u, IP: normAddr(a.IP)}
}

// Bounds of MemoryHistory, which is meant for tests and single-process development.
const (
	memorySignInsPerSubject = 1000
	memoryFailures          = 1 << 16
)

// MemoryHistory is a History in memory: the reference implementation, for tests and
// development. It keeps the last 1,000 sign-ins per subject and the last 65,536 failures,
// indexed by username and by source as a database would be. The zero value is ready to use,
// and it is safe for concurrent use.
type MemoryHistory struct {
	mu       sync.Mutex
	signIns  map[string][]Record // oldest first
	failures []Failure           // every kept failure, in insertion order
	byUser   map[string][]Failure
	bySource map[netip.Prefix][]Failure // by SourceOf(IP)
}

// AddSignIn records a sign-in that was let in. It never fails.
func (h *MemoryHistory) AddSignIn(_ context.Context, subject string, r Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.signIns == nil {
		h.signIns = map[string][]Record{}
	}
	r.IP = normAddr(r.IP)
	rs := h.signIns[subject]
	i, _ := slices.BinarySearchFunc(rs, r.Time, func(x Record, t time.Time) int {
		if x.Time.After(t) {
			return 1
		}
		return -1 // equal times keep insertion order
	})
	rs = slices.Insert(rs, i, r)
	if len(rs) > memorySignInsPerSubject {
		rs = slices.Delete(rs, 0, len(rs)-memorySignInsPerSubject)
	}
	h.signIns[subject] = rs
	return nil
}

// AddFailure records a failed attempt. It never fails.
func (h *MemoryHistory) AddFailure(_ context.Context, f Failure) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byUser == nil {
		h.byUser, h.bySource = map[string][]Failure{}, map[netip.Prefix][]Failure{}
	}
	f.IP = normAddr(f.IP)
	h.failures = append(h.failures, f)
	h.byUser[f.Username] = append(h.byUser[f.Username], f)
	h.bySource[SourceOf(f.IP)] = append(h.bySource[SourceOf(f.IP)], f)
	if len(h.failures) > memoryFailures {
		// The oldest failure is also the first of its username's and its source's lists.
		old := h.failures[0]
		h.failures = h.failures[1:]
		dropFirst(h.byUser, old.Username)
		dropFirst(h.bySource, SourceOf(old.IP))
	}
	return nil
}

func dropFirst[K comparable](m map[K][]Failure, k K) {
	if l := m[k]; len(l) <= 1 {
		delete(m, k)
	} else {
		m[k] = l[1:]
	}
}

// Recent implements History.
func (h *MemoryHistory) Recent(_ context.Context, subject string, limit int) ([]Record, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rs := h.signIns[subject]
	n := min(max(limit, 0), len(rs))
	out := make([]Record, n)
	for i := range n {
		out[i] = rs[len(rs)-1-i]
	}
	return out, nil
}

// FailuresByUser implements History.
func (h *MemoryHistory) FailuresByUser(_ context.Context, username string, since time.Time) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, f := range h.byUser[username] {
		if !f.Time.Before(since) {
			n++
		}
	}
	return n, nil
}

// FailuresBySource implements History. Sources of the form SourceOf returns are answered from
// the index; any other prefix by a scan.
func (h *MemoryHistory) FailuresBySource(_ context.Context, source netip.Prefix, since time.Time) (int, int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	candidates := h.failures
	if source.IsValid() && SourceOf(source.Addr()) == source {
		candidates = h.bySource[source]
	}
	n := 0
	users := map[string]struct{}{}
	for _, f := range candidates {
		if !f.Time.Before(since) && source.Contains(f.IP) {
			n++
			if f.Username != "" {
				users[f.Username] = struct{}{}
			}
		}
	}
	return n, len(users), nil
}
