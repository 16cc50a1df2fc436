package budget

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// reference is the specification of the Meter written as a list of every send, with no buckets:
// a send at time t fits when the bytes of every earlier send at or after start(t) — the window's
// length before t, rounded down to a bucket boundary — plus its own are at most the budget.
type reference struct {
	limit  Limit
	sends  []send
	latest int64
	report int64
	ever   bool
}

type send struct {
	at int64
	n  int64
	ok bool
}

func (r *reference) clamp(t time.Time) int64 {
	n := t.UnixNano()
	if n < r.latest {
		n = r.latest
	}
	r.latest = n
	return n
}

// start is where the window that ends at now begins: the bucket boundary Slots buckets before
// the bucket of now.
func (r *reference) start(now int64) int64 {
	w := r.limit.width()
	return (now/w - Slots) * w
}

func (r *reference) used(now int64) int64 {
	var sum int64
	for _, s := range r.sends {
		if s.at >= r.start(now) {
			sum += s.n
		}
	}
	return sum
}

func (r *reference) spend(n int64, t time.Time) (ok, report bool) {
	now := r.clamp(t)
	ok = r.used(now)+n <= r.limit.Bytes
	r.sends = append(r.sends, send{at: now, n: n, ok: ok})
	if !ok && (!r.ever || r.report+int64(r.limit.Window) <= now) {
		r.ever, r.report, report = true, now, true
	}
	return ok, report
}

// exhausted finds, by trying every bucket boundary from now on, the first time the window holds
// less than the budget.
func (r *reference) exhausted(t time.Time) (bool, time.Time) {
	now := r.clamp(t)
	if r.used(now) < r.limit.Bytes {
		return false, time.Time{}
	}
	w := r.limit.width()
	for at := now; ; at = (at/w + 1) * w {
		if r.used(at) < r.limit.Bytes {
			return true, time.Unix(0, at)
		}
		if at > now+int64(r.limit.Window)*3 {
			return true, time.Unix(0, now) // a zero budget never has room
		}
	}
}

// TestMeterAgainstReference runs random sends, clock moves and exhaustion checks of several
// subjects through the Meter and the reference and requires the same answers, and checks the
// properties the package promises on every run:
//   - safety: no interval of one window's length carries more than the budget of sends that
//     fitted (checked exactly, to the nanosecond, at every accepted send);
//   - at most one bucket early: a refused send would not have fitted in an exact sliding window
//     of Slots+1 buckets (everything counted, refused sends too).
//
// The seed is printed on failure; RAMPART_BUDGET_SEED replays it.
func TestMeterAgainstReference(t *testing.T) {
	seed := uint64(rand.Int64())
	if s := os.Getenv("RAMPART_BUDGET_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	limits := []Limit{{1000, time.Hour}, {64 << 10, time.Hour}, {10, 7 * time.Second}, {500, time.Minute + 7*time.Nanosecond}, {1, 59 * time.Nanosecond}}
	for round := 0; round < 300; round++ {
		m := &Meter{}
		refs := map[string]*reference{}
		subjects := []string{"alice", "bob", "k8s:prod/ml/trainer"}
		lim := map[string]Limit{}
		for _, s := range subjects {
			lim[s] = limits[rng.IntN(len(limits))]
			refs[s] = &reference{limit: lim[s]}
		}
		clock := time.Unix(1_700_000_000+rng.Int64N(1<<20), rng.Int64N(1e9))
		for op := 0; op < 400; op++ {
			s := subjects[rng.IntN(len(subjects))]
			l, ref := lim[s], refs[s]
			switch rng.IntN(10) {
			case 0, 1, 2: // move the clock: a little, across a bucket, across a window
				switch rng.IntN(3) {
				case 0:
					clock = clock.Add(time.Duration(rng.Int64N(int64(l.width()) + 1)))
				case 1:
					clock = clock.Add(time.Duration(rng.Int64N(int64(l.Window)/3 + 1)))
				default:
					clock = clock.Add(time.Duration(rng.Int64N(2*int64(l.Window) + 1)))
				}
			case 3: // a reading from a clock that is behind
				back := clock.Add(-time.Duration(rng.Int64N(2*int64(l.Window) + 1)))
				n := rng.Int64N(l.Bytes/3 + 2)
				gotOK, gotReport := m.Spend(s, l, n, back)
				wantOK, wantReport := ref.spend(n, back)
				if gotOK != wantOK || gotReport != wantReport {
					t.Fatalf("round %d op %d (RAMPART_BUDGET_SEED=%d): %s spends at an earlier time: meter (%v, %v), reference (%v, %v)",
						round, op, seed, s, gotOK, gotReport, wantOK, wantReport)
				}
			case 4:
				gotEx, gotAt := m.Exhausted(s, l, clock)
				wantEx, wantAt := ref.exhausted(clock)
				if gotEx != wantEx || !gotAt.Equal(wantAt) {
					t.Fatalf("round %d op %d (RAMPART_BUDGET_SEED=%d): %s exhausted at %s: meter (%v, %s), reference (%v, %s)",
						round, op, seed, s, clock, gotEx, gotAt, wantEx, wantAt)
				}
			default:
				n := rng.Int64N(l.Bytes/3 + 2)
				gotOK, gotReport := m.Spend(s, l, n, clock)
				wantOK, wantReport := ref.spend(n, clock)
				if gotOK != wantOK || gotReport != wantReport {
					t.Fatalf("round %d op %d (RAMPART_BUDGET_SEED=%d): %s spends %d at %s (limit %+v): meter (%v, %v), reference (%v, %v)",
						round, op, seed, s, n, clock, l, gotOK, gotReport, wantOK, wantReport)
				}
			}
		}
		for s, ref := range refs {
			checkSafety(t, seed, round, s, ref)
		}
	}
}

func checkSafety(t *testing.T, seed uint64, round int, subject string, ref *reference) {
	t.Helper()
	l := ref.limit
	for i, end := range ref.sends {
		var fitted, all int64
		for _, s := range ref.sends[:i+1] {
			if s.ok && s.at > end.at-int64(l.Window) {
				fitted += s.n
			}
			if s.at > end.at-(Slots+1)*l.width() {
				all += s.n
			}
		}
		if end.ok && fitted > l.Bytes {
			t.Fatalf("round %d (RAMPART_BUDGET_SEED=%d): %s sent %d bytes in the window ending at send %d, over the budget %d",
				round, seed, subject, fitted, i, l.Bytes)
		}
		if !end.ok && all <= l.Bytes {
			t.Fatalf("round %d (RAMPART_BUDGET_SEED=%d): %s refused at send %d although a window one bucket longer holds only %d of %d",
				round, seed, subject, i, all, l.Bytes)
		}
	}
}

// The attack a fixed window allows: the whole budget just before the hour, the whole budget
// again just after it.
func TestBoundaryDoesNotDoubleTheBudget(t *testing.T) {
	m := &Meter{}
	l := Limit{Bytes: 64 << 10, Window: time.Hour}
	hour := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	if ok, _ := m.Spend("alice", l, 64<<10, hour.Add(-time.Second)); !ok {
		t.Fatal("the budget itself was refused")
	}
	ok, report := m.Spend("alice", l, 1, hour.Add(time.Second))
	if ok || !report {
		t.Fatalf("one byte more across the hour: ok=%v report=%v, want refused and reported", ok, report)
	}
	if ex, until := m.Exhausted("alice", l, hour.Add(time.Minute)); !ex || until.Before(hour.Add(59*time.Minute)) || until.After(hour.Add(time.Hour)) {
		t.Fatalf("exhausted %v until %s, want until about 11:59:59 + 1h", ex, until)
	}
	// A window's length after the budget was spent (and the refused byte with it), there is room.
	if ok, _ := m.Spend("alice", l, 64<<10, hour.Add(time.Hour+2*time.Minute)); !ok {
		t.Fatal("refused a window's length later")
	}
	// Another subject has its own budget.
	if ok, _ := m.Spend("bob", l, 64<<10, hour); !ok {
		t.Fatal("bob refused")
	}
}

// A window that changes (a policy reload) keeps what was counted.
func TestWindowChangeKeepsTheCount(t *testing.T) {
	m := &Meter{}
	now := time.Unix(1_700_000_000, 0)
	if ok, _ := m.Spend("alice", Limit{1000, time.Hour}, 900, now); !ok {
		t.Fatal("refused")
	}
	if ok, _ := m.Spend("alice", Limit{1000, 2 * time.Hour}, 200, now.Add(time.Minute)); ok {
		t.Fatal("a reload forgot the bytes already sent")
	}
	// Shortened: what was counted moves into the current bucket and is counted one new window
	// more (a little longer, never shorter).
	if ok, _ := m.Spend("alice", Limit{1000, time.Minute}, 200, now.Add(3*time.Minute)); ok {
		t.Fatal("a shorter window forgot the bytes sent a minute ago at once")
	}
	if ok, _ := m.Spend("alice", Limit{1000, time.Minute}, 200, now.Add(5*time.Minute)); !ok {
		t.Fatal("the shorter window still counts bytes two of its lengths later")
	}
}

func TestPrune(t *testing.T) {
	m := &Meter{}
	now := time.Unix(1_700_000_000, 0)
	l := Limit{100, time.Minute}
	m.Spend("alice", l, 50, now)
	m.Spend("bob", l, 500, now) // refused and reported
	m.Prune(now.Add(30 * time.Second))
	if m.Subjects() != 2 {
		t.Fatalf("%d subjects after an early prune", m.Subjects())
	}
	m.Prune(now.Add(2 * time.Minute))
	if m.Subjects() != 0 {
		t.Fatalf("%d subjects after a window with nothing sent", m.Subjects())
	}
}

// A clock reading from behind (another replica's clock, a step back) counts as the latest time
// seen: it cannot land in a bucket of the ring that holds newer bytes and wipe them.
func TestClockBehindCannotWipeTheWindow(t *testing.T) {
	m := &Meter{}
	l := Limit{1000, time.Hour}
	now := time.Unix(1_700_000_000, 0)
	if ok, _ := m.Spend("alice", l, 900, now); !ok {
		t.Fatal("refused")
	}
	// Exactly Slots+1 buckets back: the same slot of the ring.
	m.Spend("alice", l, 0, now.Add(-time.Duration((Slots+1)*l.width())))
	if ok, _ := m.Spend("alice", l, 200, now); ok {
		t.Fatal("a reading from behind wiped the bytes sent")
	}
}
