package signin

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/policy"
)

// starts bounds the sign-ins one network may start per window (invariant 11). Starting a
// sign-in needs no credential, stores a flow until it expires (ten minutes for the browser,
// up to thirty for a device), and for a device asks the provider for a code: unbounded, it
// would let anyone fill the store and make Rampart hammer the provider. The window is shared by
// every source and ends for all at once, so the state is one counter per source seen in the
// current window, at most MaxSources of them; sources beyond share one counter.
type starts struct {
	mu    sync.Mutex
	end   time.Time // of the current window
	n     map[netip.Prefix]int
	other int // starts from sources beyond the tracked ones
}

// startLimits are what starts reads from the policy's Settings.refusals.
type startLimits struct {
	window     time.Duration
	perSource  int
	maxSources int
}

// allow counts a start from ip and says whether it is within the limit, and if not, how long
// until the window ends.
func (st *starts) allow(ip netip.Addr, now time.Time, lim startLimits) (bool, time.Duration) {
	src := risk.SourceOf(ip)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.n == nil || !now.Before(st.end) {
		st.n, st.other, st.end = map[netip.Prefix]int{}, 0, now.Add(lim.window)
	}
	if _, tracked := st.n[src]; !tracked && len(st.n) >= lim.maxSources {
		// Untracked sources share one allowance, as large as ten sources'.
		if st.other >= 10*lim.perSource {
			return false, st.end.Sub(now)
		}
		st.other++
		return true, 0
	}
	if st.n[src] >= lim.perSource {
		return false, st.end.Sub(now)
	}
	st.n[src]++
	return true, 0
}

// admitStart applies the limit on starting sign-ins to client c. Over it, the attempt is
// refused, recorded (aggregated, like every refusal) and the caller told how long to wait.
func (s *Service) admitStart(ctx context.Context, c client, method string) (time.Duration, error) {
	r := s.d.Policy().Settings().Refusals
	lim := startLimits{window: r.Window.Std(), perSource: r.SignInStarts, maxSources: r.MaxSources}
	if lim.window <= 0 {
		lim.window = policy.DefaultRefusalWindow
	}
	if lim.perSource <= 0 {
		lim.perSource = policy.DefaultSignInStarts
	}
	if lim.maxSources <= 0 {
		lim.maxSources = policy.DefaultRefusalMaxSources
	}
	ok, wait := s.starts.allow(c.IP, s.d.Now(), lim)
	if ok {
		return 0, nil
	}
	err := fmt.Errorf("%w: more than %d sign-ins were started from your network (%s) in %s; try again in %s",
		ErrDenied, lim.perSource, risk.SourceOf(c.IP), policy.FormatDuration(lim.window), wait.Round(time.Second))
	return wait, s.refuse(ctx, identityClaims{}, c, method, decision{}, err)
}
