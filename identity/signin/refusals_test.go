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
