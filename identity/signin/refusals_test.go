package signin_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/identity/risk"
)

// Anyone can send a browser to /callback with a forged state, as often as they like (invariant
// 11). With the server's aggregation, 1,000 such calls from one address write one signin.refused
// entry at once and one summary with the other 999 when the window is flushed, and keep only
// the first risk_history of them in the sign-in history; the page still says why.
func TestForgedCallbacksAggregated(t *testing.T) {
	var e *env
	rec := refusals.New(refusals.Options{Limits: func() refusals.Limits { return refusals.Limits{Window: time.Hour, RiskHistory: 7} },
		Record: func(ctx context.Context, ev audit.Event) error {
			return e.store.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
		}})
	e, _ = newHostileEnv(t, envOptions{refused: rec.Record})
	b := e.browser("").noRedirects()
	for i := range 1000 {
		r := e.callback(b, "x", "forged-state")
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "not started in this browser") {
			t.Fatalf("call %d: %d %s", i, r.status, r.body)
		}
	}
	if n := len(e.entriesOf("signin.refused")); n != 1 {
		t.Fatalf("%d signin.refused entries before the flush, want 1", n)
	}
	failures, _, err := e.store.FailuresBySource(context.Background(), risk.SourceOf(netip.MustParseAddr("127.0.0.1")), time.Now().Add(-time.Hour))
	if err != nil || failures != 7 {
		t.Fatalf("the sign-in history holds %d failures (%v), want risk_history = 7", failures, err)
	}
	if err := rec.FlushAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := e.entriesOf("signin.refused")
	if len(got) != 2 || !strings.Contains(got[1].message, "999 more signin.refused refusals from address 127.0.0.1/32") || !strings.Contains(got[1].raw, `"count":999`) {
		t.Fatalf("entries after the flush: %+v", got)
	}
}

// Anyone may start a sign-in, and each start stores a flow until it expires (invariant 11): one
// network may start refusals.sign_in_starts (30 by default) per window; the rest are refused
// with 429 and Retry-After, store nothing, and are recorded as refusals (aggregated).
func TestSignInStartsLimited(t *testing.T) {
	var e *env
	rec := refusals.New(refusals.Options{Record: func(ctx context.Context, ev audit.Event) error {
		return e.store.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
	}})
	e, _ = newHostileEnv(t, envOptions{refused: rec.Record})
	b := e.browser("").noRedirects()
	started, limited := 0, 0
	for range 100 {
		r := b.fetch(e.srv.URL + "/login")
		switch r.status {
		case http.StatusFound:
			started++
		case http.StatusTooManyRequests:
			limited++
			if r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "more than 30 sign-ins were started from your network (127.0.0.1/32)") {
				t.Fatalf("429 without Retry-After or reason: %v %s", r.header, r.body)
			}
		default:
			t.Fatalf("GET /login: %d %s", r.status, r.body)
		}
	}
	if started != 30 || limited != 70 {
		t.Fatalf("%d sign-ins started, %d limited; want 30 and 70", started, limited)
	}
	if n := len(e.entriesOf("signin.refused")); n != 1 {
		t.Fatalf("%d refusal entries for 70 limited starts, want 1 (the rest counted)", n)
	}
	// The device flow shares the allowance.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/device", nil)
	if st, out := e.do(req); st != http.StatusTooManyRequests || out["error"] != "temporarily_unavailable" {
		t.Fatalf("device start over the limit: %d %v", st, out)
	}
}
