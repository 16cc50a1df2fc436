// Package budget counts the bytes each subject sends out through the egress gateway against an
// exfiltration budget — at most Limit.Bytes in any Limit.Window — in a sliding window.
//
// A fixed window (the hour from :00 to :00) lets a subject send the whole budget just before a
// boundary and again just after it: twice the budget within minutes. Here every send is checked
// against everything counted since the window's length before it, so no interval of one window
// length ever carries more than the budget (the property the tests hold the Meter to, with a
// brute-force reference beside it).
//
// Each subject's window is kept as Slots buckets of Window/Slots, so memory is constant per
// subject. The window's start is rounded down to a bucket boundary: a subject may be refused up
// to one bucket (a sixtieth of the window) early, never late. Time never runs backwards for a
// subject: an earlier clock reading counts as the latest one seen.
//
// Bytes that do not fit are counted anyway (they were read from the client, and the connection
// that carried them is cut), so a subject that crossed the budget stays refused until enough of
// its window has passed.
package budget

import (
	"sync"
	"time"
)

// Slots is the number of buckets a window is kept in.
const Slots = 60

// Limit is a budget: at most Bytes in any Window.
type Limit struct {
	Bytes  int64
	Window time.Duration
}

// width is the length of one bucket: the window divided by Slots, rounded up, so that Slots
// buckets cover at least the whole window.
func (l Limit) width() int64 {
	w := (int64(l.Window) + Slots - 1) / Slots
	if w < 1 {
		w = 1
	}
	return w
}

// Meter holds every subject's window. The zero value is ready to use; it is safe for concurrent
// use.
type Meter struct {
	mu   sync.Mutex
	subj map[string]*usage
}

type bucket struct {
	idx   int64 // which bucket of time this is: unix nanoseconds / width
	bytes int64
}

type usage struct {
	width   int64
	ring    [Slots + 1]bucket
	latest  int64 // the latest time seen, unix nanoseconds
	report  int64 // when the last exhaustion was reported, unix nanoseconds
	reports bool  // whether one was
}

// now clamps t so that time never runs backwards for this subject.
func (u *usage) now(t time.Time) int64 {
	n := t.UnixNano()
	if n < u.latest {
		n = u.latest
	}
	u.latest = n
	return n
}

// counted is the sum of the buckets in the window that ends at bucket k.
func (u *usage) counted(k int64) int64 {
	var sum int64
	for _, b := range u.ring {
		if b.bytes != 0 && b.idx >= k-Slots {
			sum += b.bytes
		}
	}
	return sum
}

// get returns the subject's usage under limit l, adapting it when the window changed: what is
// still counted moves into the current bucket of the new width (it is counted a little longer,
// never shorter).
func (m *Meter) get(subject string, l Limit, t time.Time) (*usage, int64) {
	if m.subj == nil {
		m.subj = map[string]*usage{}
	}
	u := m.subj[subject]
	w := l.width()
	if u == nil {
		u = &usage{width: w}
		m.subj[subject] = u
	}
	now := u.now(t)
	if u.width != w {
		kept := u.counted(now / u.width)
		u.ring = [Slots + 1]bucket{}
		u.width = w
		if kept > 0 {
			k := now / w
			u.ring[k%(Slots+1)] = bucket{idx: k, bytes: kept}
		}
	}
	return u, now
}

// Spend counts n bytes the subject sends at time t. ok is false when they do not fit in the
// budget (they are counted all the same); report is true for the first refusal in a window's
// length, so that exhaustion is recorded once per window, not once per refused write.
func (m *Meter) Spend(subject string, l Limit, n int64, t time.Time) (ok, report bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, now := m.get(subject, l, t)
	k := now / u.width
	used := u.counted(k)
	slot := &u.ring[k%(Slots+1)]
	if slot.idx != k {
		*slot = bucket{idx: k} // the bucket Slots+1 widths ago: out of every window from now on
	}
	slot.bytes += n
	if used+n <= l.Bytes {
		return true, false
	}
	if !u.reports || u.report+int64(l.Window) <= now {
		u.reports, u.report = true, now
		return false, true
	}
	return false, false
}

// Exhausted reports whether the subject has nothing left to send at time t, and if so the time
// at which enough of its window will have passed for it to send again.
func (m *Meter) Exhausted(subject string, l Limit, t time.Time) (bool, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, now := m.get(subject, l, t)
	k := now / u.width
	used := u.counted(k)
	if used < l.Bytes {
		return false, time.Time{}
	}
	// Buckets leave the window oldest first: bucket j is out of it from bucket j+Slots+1 on.
	for {
		var oldest int64 = -1
		for _, b := range u.ring {
			if b.bytes != 0 && b.idx >= k-Slots && (oldest < 0 || b.idx < oldest) {
				oldest = b.idx
			}
		}
		if oldest < 0 {
			return true, time.Unix(0, now)
		}
		k = oldest + Slots + 1
		if used = u.counted(k); used < l.Bytes {
			return true, time.Unix(0, k*u.width)
		}
	}
}

// Prune forgets subjects with nothing counted and no exhaustion reported within a window's
// length of t; call it now and then so that the Meter does not grow with every subject ever
// seen.
func (m *Meter) Prune(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s, u := range m.subj {
		now := t.UnixNano()
		if now < u.latest {
			continue
		}
		window := u.width * Slots
		if u.counted(now/u.width) == 0 && (!u.reports || u.report+window <= now) {
			delete(m.subj, s)
		}
	}
}

// Subjects is the number of subjects the Meter holds (for tests and metrics).
func (m *Meter) Subjects() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.subj)
}
