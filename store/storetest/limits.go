package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
)

// withSettings returns the demo policy with extra lines in its Settings spec.
func withSettings(t *testing.T, lines string) func(name, text string) string {
	return func(name, text string) string {
		if name != "settings.yaml" {
			return text
		}
		const anchor = "  admin_group: admins\n"
		if !strings.Contains(text, anchor) {
			t.Fatalf("the demo settings have no line %q", anchor)
		}
		return strings.Replace(text, anchor, anchor+lines, 1)
	}
}

// testLimits: nobody can make Rampart write without bound (issue 11, item 13; invariant 11).
func testLimits(t *testing.T, h Harness) {
	dataset := access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "nightly evals"}

	t.Run("PendingRequestsCapped", func(t *testing.T) {
		e := envWith(t, h, demoWith(t, withSettings(t, "  max_pending_requests: 3\n"), ""))
		var ids []string
		for i := 0; i < 3; i++ {
			ids = append(ids, e.create(dataset).ID)
		}
		e.refused(access.ErrLimited, "alice has 3 pending requests, the most one person may have at a time (settings max_pending_requests 3); cancel one you no longer need",
			func() error { _, err := e.svc.Create(e.ctx, dataset); return err })
		// Someone else is not affected.
		e.create(access.CreateInput{Requester: "dave", Role: "dataset-reader-eval-suite-v3", Reason: "audit"})
		// Cancelling one makes room; a decided one does too.
		if _, err := e.svc.Cancel(e.ctx, ids[0], "alice"); err != nil {
			t.Fatal(err)
		}
		ids[0] = e.create(dataset).ID
		e.mustReview(ids[1], "carol", access.Approve)
		e.create(dataset)
		// Renewals count: alice is at the cap again.
		r, _ := e.store.Request(e.ctx, ids[1])
		e.refused(access.ErrLimited, "alice has 3 pending requests", func() error {
			_, err := e.svc.Renew(e.ctx, r.GrantID, "alice", time.Hour, "more")
			return err
		})
		// Requests that lapsed unapproved no longer count, swept or not.
		e.clock.Advance(49 * time.Hour)
		e.create(dataset)
	})

	t.Run("PendingCapHoldsUnderRacingCalls", func(t *testing.T) {
		e := envWith(t, h, demoWith(t, withSettings(t, "  max_pending_requests: 3\n"), ""))
		var mu sync.Mutex
		created, limited := 0, 0
		var wg sync.WaitGroup
		for i := 0; i < 12; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.svc.Create(e.ctx, dataset)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case errors.Is(err, access.ErrLimited):
					limited++
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if created != 3 || limited != 9 {
			t.Fatalf("12 racing requests with a cap of 3: %d created, %d refused", created, limited)
		}
		if n := count(e.codes(), "request.create"); n != 3 {
			t.Fatalf("%d request.create entries", n)
		}
	})

	t.Run("BreakGlassCooldownAfterRejection", func(t *testing.T) {
		e := envWith(t, h, demoWith(t, withSettings(t, "  break_glass_cooldown: 2h\n"), ""))
		bg := dataset
		bg.BreakGlass, bg.Reason = true, "incident 99: eval pipeline down"
		c, err := e.svc.Create(e.ctx, bg)
		if err != nil {
			t.Fatal(err)
		}
		rejectedAt := e.clock.Now().Add(5 * time.Minute)
		e.clock.Advance(5 * time.Minute)
		if r := e.mustReview(c.Request.ID, "carol", access.Deny); r.PostReview != access.PostReviewRejected {
			t.Fatalf("post review %s", r.PostReview)
		}
		until := rejectedAt.Add(2 * time.Hour).UTC().Format(time.RFC3339)
		e.refused(access.ErrLimited, "alice may not take break-glass access until "+until+": the after-the-fact review of break-glass request "+c.Request.ID+" rejected it",
			func() error { _, err := e.svc.Create(e.ctx, bg); return err })
		// A normal request is still possible, and the cooldown survives a restart.
		e.create(dataset)
		e.svc = access.New(e.store, e.pol, access.Options{Now: e.clock.Now})
		e.clock.Advance(2*time.Hour - time.Second)
		e.refused(access.ErrLimited, "until "+until, func() error { _, err := e.svc.Create(e.ctx, bg); return err })
		e.clock.Advance(time.Second)
		if _, err := e.svc.Create(e.ctx, bg); err != nil {
			t.Fatalf("break-glass after the cooldown: %v", err)
		}
		// An accepted break-glass starts no cooldown.
		e2 := envWith(t, h, e.pol)
		c2, err := e2.svc.Create(e2.ctx, bg)
		if err != nil {
			t.Fatal(err)
		}
		e2.mustReview(c2.Request.ID, "carol", access.Approve)
		if _, err := e2.svc.Create(e2.ctx, bg); err != nil {
			t.Fatalf("break-glass after an accepted one: %v", err)
		}
	})
}
