package access

import (
	"context"
	"encoding/json"
	"time"

	"rampart.dev/rampart/policy"
)

// Invariant 11: nobody can make Rampart write without bound. Each request someone files is a
// ledger entry and a row that approvers must wade through, so one person may have at most
// Settings.MaxPendingRequests requests pending at a time (renewals, and break-glass requests
// awaiting their after-the-fact review, included); and someone whose break-glass was rejected
// in review may not take break-glass again for Settings.BreakGlassCooldown. A refusal changes
// and records nothing: it is checked once before the store's write lock (so a flood of refused
// calls does not queue honest writers behind it) and again inside the transaction (so racing
// calls cannot together pass the bound).

// metaBreakGlassRejected keys the last rejection of a subject's break-glass.
func metaBreakGlassRejected(subject string) string { return "break_glass_rejected:" + subject }

// breakGlassRejection is what is recorded when a break-glass request is rejected in review.
type breakGlassRejection struct {
	At      time.Time `json:"at"`
	Request string    `json:"request"`
}

// checkPending refuses a new request by requester who already has the most pending requests
// pol allows.
func checkPending(ctx context.Context, r Reader, pol *policy.Policy, requester string, now time.Time) error {
	limit := pol.Settings().MaxPendingRequests
	n := 0
	for _, f := range []RequestFilter{{States: []State{Pending}, Requester: requester}, {BreakGlassReview: true, Requester: requester}} {
		rs, err := r.ListRequests(ctx, f)
		if err != nil {
			return err
		}
		for _, q := range rs {
			if q.BreakGlass || now.Before(q.ExpiresAt) { // a lapsed one is about to be swept
				n++
			}
		}
	}
	if n >= limit {
		return errorf(ErrLimited, "%s has %d pending requests, the most one person may have at a time (settings max_pending_requests %d); cancel one you no longer need (`rampart request list --state pending` lists them, `rampart request cancel ID` withdraws one), or wait until one is decided or lapses",
			requester, n, limit)
	}
	return nil
}

// checkCooldown refuses break-glass to requester while the cooldown after their last rejected
// break-glass runs.
func checkCooldown(ctx context.Context, r Reader, pol *policy.Policy, requester string, now time.Time) error {
	v, err := r.Meta(ctx, metaBreakGlassRejected(requester))
	if err != nil || v == "" {
		return err
	}
	var last breakGlassRejection
	if err := json.Unmarshal([]byte(v), &last); err != nil {
		// Unreadable: treat it as a rejection just now rather than as none (fail closed).
		last = breakGlassRejection{At: now, Request: "(unreadable record)"}
	}
	cooldown := pol.Settings().BreakGlassCooldown.Std()
	if until := last.At.Add(cooldown); now.Before(until) {
		return errorf(ErrLimited, "%s may not take break-glass access until %s: the after-the-fact review of break-glass request %s rejected it at %s (settings break_glass_cooldown %s); make a normal request instead, approvers can grant it at once",
			requester, until.UTC().Format(time.RFC3339), last.Request, last.At.UTC().Format(time.RFC3339), policy.FormatDuration(cooldown))
	}
	return nil
}

// recordRejection starts the cooldown of r's requester.
func (t *txn) recordRejection(ctx context.Context, r Request, now time.Time) error {
	b, err := json.Marshal(breakGlassRejection{At: now.UTC(), Request: r.ID})
	if err != nil {
		return err
	}
	return t.SetMeta(ctx, metaBreakGlassRejected(r.Requester), string(b))
}

// checkLimits runs the checks that apply to a new request.
func checkLimits(ctx context.Context, r Reader, pol *policy.Policy, in CreateInput, now time.Time) error {
	if in.BreakGlass {
		if err := checkCooldown(ctx, r, pol, in.Requester, now); err != nil {
			return err
		}
	}
	return checkPending(ctx, r, pol, in.Requester, now)
}

// limited wraps a store failure met while checking a limit outside a transaction.
func limited(err error) error {
	if _, ok := err.(*Error); ok {
		return err
	}
	return unavailable("checking the limits on pending requests and break-glass", err)
}
