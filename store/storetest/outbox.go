package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/notify"
	"rampart.dev/rampart/store/sqlstore"
)

// notifications returns the outbox in ledger order.
func (e *env) notifications() []access.Notification {
	e.t.Helper()
	ns, err := e.store.ListNotifications(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

// flakySink fails its first fails deliveries, then records what it is sent.
type flakySink struct {
	name  string
	mu    sync.Mutex
	fails int
	got   []access.Notification
}

func (s *flakySink) Name() string {
	if s.name == "" {
		return "flaky"
	}
	return s.name
}

func (s *flakySink) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

func (s *flakySink) Send(_ context.Context, n access.Notification) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fails > 0 {
		s.fails--
		return errors.New("receiver refused")
	}
	s.got = append(s.got, n)
	return nil
}

// Issue 15: a notification is written in the transaction of the ledger entry that causes it
// (it exists iff the change committed), to the people the policy names at that moment; the
// worker claims each row once, retries with backoff, and records a give-up in the ledger.
func testOutbox(t *testing.T, h Harness) {
	t.Run("WrittenWithTheLedgerEntry", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		ns := e.notifications()
		if len(ns) != 1 {
			t.Fatalf("after a request: %d notifications, want 1: %+v", len(ns), ns)
		}
		n := ns[0]
		// alice asked; bob and carol (weights owners) and dave (security) may approve.
		if n.Kind != access.NotifyReview || n.Event != "request.create" || n.RequestID != req.ID || !reflect.DeepEqual(n.Recipients, []string{"bob", "carol", "dave"}) {
			t.Fatalf("review notification %+v", n)
		}
		if n.Seq != req.Version {
			t.Fatalf("notification points at ledger entry %d, the request's is %d", n.Seq, req.Version)
		}
		e.mustReview(req.ID, "bob", access.Approve)
		if got := len(e.notifications()); got != 1 {
			t.Fatalf("a partial approval told someone: %d notifications", got)
		}
		e.mustReview(req.ID, "dave", access.Approve)
		ns = e.notifications()
		if len(ns) != 2 || ns[1].Kind != access.NotifyDecided || ns[1].Outcome != "granted" || !reflect.DeepEqual(ns[1].Recipients, []string{"alice"}) || ns[1].GrantID == "" {
			t.Fatalf("after the grant: %+v", ns)
		}

		// A change that does not commit writes no notification.
		h.InjectLedgerFailure(t, e.store)
		if _, err := e.svc.Create(e.ctx, weightsRequest()); !errors.Is(err, access.ErrUnavailable) {
			t.Fatalf("create with a failing ledger: %v", err)
		}
		if got := len(e.notifications()); got != 2 {
			t.Fatalf("a rolled-back request left a notification: %d rows", got)
		}
	})
	t.Run("RecipientsAreEligible", func(t *testing.T) {
		e := newEnv(t, h)
		// bob asks: he, and carol who shares his group (requester_groups), are not asked.
		in := weightsRequest()
		in.Requester = "bob"
		e.create(in)
		if ns := e.notifications(); len(ns) != 1 || !reflect.DeepEqual(ns[0].Recipients, []string{"dave"}) {
			t.Fatalf("bob's request notified %+v, want only dave", ns)
		}
	})
	t.Run("DenialTellsRequester", func(t *testing.T) {
		e := newEnv(t, h)
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "dave", access.Deny)
		ns := e.notifications()
		if len(ns) != 2 || ns[1].Outcome != "denied" || !reflect.DeepEqual(ns[1].Recipients, []string{"alice"}) {
			t.Fatalf("after a denial: %+v", ns)
		}
	})
	t.Run("BreakGlassPagesAdmins", func(t *testing.T) {
		e := newEnv(t, h)
		if _, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "incident 99", BreakGlass: true}); err != nil {
			t.Fatal(err)
		}
		ns := e.notifications()
		if len(ns) != 1 || ns[0].Kind != access.NotifyBreakGlass || !reflect.DeepEqual(ns[0].Recipients, []string{"erin"}) {
			t.Fatalf("break-glass notified %+v, want one page to the admins (erin)", ns)
		}
	})
	t.Run("DeliveryRetriesThenFails", func(t *testing.T) {
		e := newEnv(t, h)
		e.create(weightsRequest())
		sink := &flakySink{fails: 2}
		w := &notify.Worker{Outbox: e.store, Sinks: notify.Static(sink), Now: e.clock.Now, MaxAttempts: 3, BaseBackoff: time.Second, Lease: time.Minute}
		run := func(want int) {
			t.Helper()
			n, err := w.RunOnce(e.ctx)
			if err != nil || n != want {
				t.Fatalf("RunOnce = %d, %v; want %d delivered", n, err, want)
			}
		}
		run(0) // attempt 1 fails; next try in 1 s
		run(0) // not due yet
		e.clock.Advance(time.Second)
		run(0) // attempt 2 fails; next in 2 s
		e.clock.Advance(time.Second)
		run(0) // not due: the backoff doubled
		e.clock.Advance(time.Second)
		run(1)
		if len(sink.got) != 1 {
			t.Fatalf("delivered %d times", len(sink.got))
		}
		run(0) // sent rows are never sent again

		// A receiver that never answers: after the budget the row fails, and the ledger says so.
		e.create(access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "eval"})
		sink.fails = 100
		for range 3 {
			run(0)
			e.clock.Advance(time.Hour)
		}
		ns := e.notifications()
		last := ns[len(ns)-1]
		state, attempts, lastErr, err := e.store.NotificationState(e.ctx, last.ID)
		if err != nil || state != sqlstore.NotificationFailed || attempts != 3 || lastErr == "" {
			t.Fatalf("after the budget: state %q, %d attempts, %q, %v", state, attempts, lastErr, err)
		}
		if c := count(e.codes(), "notification.failed"); c != 1 {
			t.Fatalf("%d notification.failed ledger entries, want 1", c)
		}
		run(0)
		if c := count(e.codes(), "notification.failed"); c != 1 {
			t.Fatalf("failed row retried: %d notification.failed entries", c)
		}
	})
	t.Run("ClaimedOnceAcrossReplicas", func(t *testing.T) {
		if h.Shared == nil {
			t.Fatal("the harness has no Shared")
		}
		open := h.Shared(t)
		a, b := open(t), open(t)
		pol := newEnv(t, h).pol
		now := Epoch
		svc := access.New(a, pol, access.Options{Now: func() time.Time { return now }})
		for i := range 6 {
			if _, err := svc.Create(context.Background(), access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: fmt.Sprint("eval ", i)}); err != nil {
				t.Fatal(err)
			}
		}
		seen := map[string]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, s := range []*sqlstore.DB{a, b, a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns, err := s.ClaimNotifications(context.Background(), now, time.Minute, 2)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, n := range ns {
					seen[n.ID]++
				}
			}()
		}
		wg.Wait()
		if len(seen) != 6 {
			t.Fatalf("4 claims of 2 from 6 due rows claimed %d distinct rows: %v", len(seen), seen)
		}
		for id, c := range seen {
			if c != 1 {
				t.Fatalf("row %s claimed %d times", id, c)
			}
		}
		// A claim that lapsed (the replica died mid-delivery) is claimed again.
		ns, err := b.ClaimNotifications(context.Background(), now.Add(time.Minute), time.Minute, 10)
		if err != nil || len(ns) != 6 {
			t.Fatalf("after the lease lapsed: %d rows, %v; want all 6 again", len(ns), err)
		}
	})
	t.Run("DeliveredOncePerSink", func(t *testing.T) {
		e := newEnv(t, h)
		e.create(weightsRequest())
		// The failing sink comes first: before per-sink state, its error stopped the delivery
		// before the good sink, and every retry would resend to sinks that had taken it.
		down, up, late := &flakySink{name: "down", fails: 100}, &flakySink{name: "up"}, &flakySink{name: "late", fails: 1}
		w := &notify.Worker{Outbox: e.store, Sinks: notify.Static(down, up, late), Now: e.clock.Now, MaxAttempts: 3, BaseBackoff: time.Second, Lease: time.Minute}
		for range 3 {
			if n, err := w.RunOnce(e.ctx); err != nil || n != 0 {
				t.Fatalf("RunOnce = %d, %v; want nothing fully delivered", n, err)
			}
			e.clock.Advance(time.Hour)
		}
		if up.received() != 1 || late.received() != 1 {
			t.Fatalf("the working sinks received %d and %d deliveries, want exactly 1 each despite the failing one", up.received(), late.received())
		}
		id := e.notifications()[0].ID
		if state, attempts, _, err := e.store.NotificationState(e.ctx, id); err != nil || state != sqlstore.NotificationFailed || attempts != 3 {
			t.Fatalf("after the budget: %q, %d attempts, %v", state, attempts, err)
		}
		if got := e.notifications()[0].Delivered; !reflect.DeepEqual(got, []string{"up", "late"}) {
			t.Fatalf("delivered to %v, want [up late]", got)
		}
		// The ledger names the one sink that never took it.
		recs, err := e.store.Entries(e.ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		var failed []string
		for _, r := range recs {
			if strings.Contains(string(r.Data), `"notification.failed"`) {
				failed = append(failed, string(r.Data))
			}
		}
		if len(failed) != 1 || !strings.Contains(failed[0], `"sink":"down"`) || strings.Contains(failed[0], `"sink":"up"`) {
			t.Fatalf("notification.failed entries %v, want one naming sink down", failed)
		}
	})
	t.Run("Retention", func(t *testing.T) {
		e := newEnv(t, h)
		e.create(weightsRequest())
		e.create(access.CreateInput{Requester: "alice", Role: "dataset-reader-eval-suite-v3", Reason: "eval"})
		ns := e.notifications()
		sink := &flakySink{}
		w := &notify.Worker{Outbox: e.store, Sinks: func(n access.Notification) ([]notify.Sink, error) {
			if n.ID == ns[1].ID {
				return nil, errors.New("no sink for this one")
			}
			return []notify.Sink{sink}, nil
		}, Now: e.clock.Now, MaxAttempts: 100, Lease: time.Minute}
		if n, err := w.RunOnce(e.ctx); err != nil || n != 1 {
			t.Fatalf("RunOnce = %d, %v", n, err)
		}
		sentAt := e.clock.Now()
		e.clock.Advance(30 * 24 * time.Hour)
		if n, err := e.store.PruneNotifications(e.ctx, sentAt); err != nil || n != 0 {
			t.Fatalf("prune before the row was sent: %d, %v", n, err)
		}
		if n, err := e.store.PruneNotifications(e.ctx, sentAt.Add(time.Nanosecond)); err != nil || n != 1 {
			t.Fatalf("prune after the row was sent: %d, %v; want 1", n, err)
		}
		// The pending row (a month old, never delivered) stays.
		if left := e.notifications(); len(left) != 1 || left[0].ID != ns[1].ID {
			t.Fatalf("after pruning: %+v, want only the pending row", left)
		}
		if n, err := e.store.PruneNotifications(e.ctx, e.clock.Now()); err != nil || n != 0 {
			t.Fatalf("a pending row was pruned: %d, %v", n, err)
		}
	})
}
