package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"rampart.dev/rampart/access"
)

// reminders returns the outbox's reminders, oldest first.
func (e *env) reminders() []access.Notification {
	e.t.Helper()
	var out []access.Notification
	for _, n := range e.notifications() {
		if n.Kind == access.NotifyExpiring || n.Kind == access.NotifyLapsing {
			out = append(out, n)
		}
	}
	return out
}

func (e *env) remind(svc *access.Service, want int) {
	e.t.Helper()
	n, err := svc.Remind(e.ctx)
	if err != nil || n != want {
		e.t.Fatalf("Remind at %s = %d, %v; want %d written", e.clock.Now().Format(time.RFC3339), n, err, want)
	}
}

// Issue 15: a grant about to expire reminds its holder, a request about to lapse reminds the
// approvers who may still approve it, each exactly once per item (per grant end: a renewed grant
// is reminded again), never an item decided or ended first, and never twice across a restart.
func testReminders(t *testing.T, h Harness) {
	t.Run("GrantExpiring", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest()) // 2h
		e.mustReview(req.ID, "bob", access.Approve)
		g := e.mustReview(req.ID, "dave", access.Approve)
		e.remind(e.svc, 0)
		e.clock.Advance(time.Hour - time.Second)
		e.remind(e.svc, 0) // 1h01s left; remind_before is 1h
		e.clock.Advance(2 * time.Second)
		e.remind(e.svc, 1)
		e.remind(e.svc, 0) // once
		rs := e.reminders()
		if len(rs) != 1 || rs[0].Kind != access.NotifyExpiring || rs[0].GrantID != g.GrantID || !reflect.DeepEqual(rs[0].Recipients, []string{"alice"}) || rs[0].Event != access.EventGrantExpiring {
			t.Fatalf("reminders %+v", rs)
		}

		// Renewed, it ends later and is reminded again before its new end, once.
		ren, err := e.svc.Renew(e.ctx, g.GrantID, "alice", 2*time.Hour, "eval continues")
		if err != nil {
			t.Fatal(err)
		}
		e.mustReview(ren.ID, "bob", access.Approve)
		e.mustReview(ren.ID, "dave", access.Approve)
		e.remind(e.svc, 0)
		gr, err := e.store.Grant(e.ctx, g.GrantID)
		if err != nil || !gr.ExpiresAt.After(e.clock.Now().Add(time.Hour)) {
			t.Fatalf("renewed grant %+v, %v", gr, err)
		}
		e.clock.Advance(gr.ExpiresAt.Add(-30 * time.Minute).Sub(e.clock.Now()))
		e.remind(e.svc, 1)
		e.remind(e.svc, 0)
		if rs := e.reminders(); len(rs) != 2 || rs[1].ID == rs[0].ID {
			t.Fatalf("after the renewal: %+v", rs)
		}

		// A grant revoked before its reminder is not reminded.
		req2 := e.create(access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "eval", Duration: 2 * time.Hour})
		r2 := e.mustReview(req2.ID, "carol", access.Approve) // the data steward
		if _, err := e.svc.Revoke(e.ctx, r2.GrantID, "erin", "done"); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(90 * time.Minute)
		e.remind(e.svc, 0)
	})
	t.Run("RequestLapsing", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest()) // lapses in 24h (request_ttl); reminded a quarter before
		e.mustReview(req.ID, "bob", access.Approve)
		denied := e.create(access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "second", Duration: time.Hour})
		e.mustReview(denied.ID, "dave", access.Deny)
		e.clock.Advance(req.ExpiresAt.Add(-6*time.Hour - time.Second).Sub(e.clock.Now()))
		e.remind(e.svc, 0)
		e.clock.Advance(2 * time.Second)
		e.remind(e.svc, 1) // the denied request is not reminded
		e.remind(e.svc, 0)
		rs := e.reminders()
		// bob approved already: carol and dave are reminded.
		if len(rs) != 1 || rs[0].Kind != access.NotifyLapsing || rs[0].RequestID != req.ID || !reflect.DeepEqual(rs[0].Recipients, []string{"carol", "dave"}) {
			t.Fatalf("reminders %+v", rs)
		}
	})
	t.Run("NotTwiceAcrossRestart", func(t *testing.T) {
		if h.Shared == nil {
			t.Fatal("the harness has no Shared")
		}
		open := h.Shared(t)
		e := newEnv(t, h)
		first := open(t)
		svc := access.New(first, e.pol, access.Options{Now: e.clock.Now})
		c, err := svc.Create(context.Background(), weightsRequest())
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(c.Request.ExpiresAt.Add(-time.Hour).Sub(e.clock.Now()))
		if n, err := svc.Remind(e.ctx); err != nil || n != 1 {
			t.Fatalf("first server: %d, %v", n, err)
		}
		first.Close()
		// The restarted server (a new connection, a new service) finds it reminded.
		second := open(t)
		svc2 := access.New(second, e.pol, access.Options{Now: e.clock.Now})
		if n, err := svc2.Remind(e.ctx); err != nil || n != 0 {
			t.Fatalf("after a restart: %d, %v; want 0", n, err)
		}
		ns, err := second.ListNotifications(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		lapsing := 0
		for _, n := range ns {
			if n.Kind == access.NotifyLapsing {
				lapsing++
			}
		}
		if lapsing != 1 {
			t.Fatalf("%d lapsing reminders after a restart, want 1", lapsing)
		}
	})
}
