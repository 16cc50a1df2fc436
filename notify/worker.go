// Package notify delivers the notifications the access workflow writes to the store's outbox
// (access.Notification) to sinks: a generic signed webhook, and the chat and mail sinks built on
// the same Sink interface. Detection's alerts (a detect.alert ledger entry writes one,
// access.AlertNotification) go the same way, and also to the policy's detection webhook; a
// receiver verifies a webhook with VerifyRequest (HMAC-SHA256 over "<t>.<body>", the key named
// by KeyIDHeader, DefaultReplayWindow).
//
// Delivery is at least once: a row is written in the transaction of the ledger entry that caused
// it (invariant 4), so it exists if and only if the change committed; the Worker claims due rows
// for a lease (several replicas never send the same row at once, and a replica that dies
// mid-delivery leaves the row to be claimed again when its lease lapses), tries every sink the
// notification is routed to and remembers which took it (a retry goes only to the others, so one
// failing sink neither stops nor repeats the rest), retries with exponential backoff, and after
// MaxAttempts marks the row failed and records in the ledger one notification.failed entry per
// sink that never took it. A receiver may still see a notification more than once (a replica
// that dies between a sink's answer and recording it) and should deduplicate on its id. Notifications carry no secret and no link that acts:
// they link to the server's page of the request, where a person signs in to review it.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
)

// Outbox is the store's notification outbox (store/sqlstore implements it).
type Outbox interface {
	ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]access.Notification, error)
	NotificationSent(ctx context.Context, id string, at time.Time) error
	NotificationRetry(ctx context.Context, id string, next time.Time, lastErr string, delivered []string) error
	NotificationFailed(ctx context.Context, id, lastErr string, at time.Time, delivered []string, es []audit.Event) error
}

// Sink sends one notification somewhere. An error means it was not delivered and will be tried
// again.
type Sink interface {
	// Name identifies the sink in logs, in the ledger's notification.failed entry, and in the
	// outbox's record of the sinks that took a notification: it must be stable and unique
	// among the sinks (the Router's are "<type> <name in the policy>").
	Name() string
	Send(ctx context.Context, n access.Notification) error
}

// Defaults of a Worker.
const (
	DefaultMaxAttempts = 8
	DefaultBaseBackoff = 2 * time.Second
	DefaultMaxBackoff  = 5 * time.Minute
	DefaultLease       = time.Minute
	DefaultBatch       = 32
)

// Worker delivers the outbox's due notifications to its sinks.
type Worker struct {
	Outbox Outbox
	// Sinks returns the sinks a notification goes to (Static, or a Router over the policy in
	// force); it is delivered when each of them took it once. A retry sends it only to the sinks
	// that have not (by Name).
	Sinks func(access.Notification) ([]Sink, error)
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// MaxAttempts is the retry budget (DefaultMaxAttempts if 0).
	MaxAttempts int
	// BaseBackoff doubles after each failed attempt, up to MaxBackoff.
	BaseBackoff, MaxBackoff time.Duration
	// Lease is how long a claimed row is this worker's; it must exceed a delivery's timeout.
	Lease time.Duration
	Log   *slog.Logger
}

func (w *Worker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// Backoff returns how long to wait after the attempt-th failed attempt (1-based):
// BaseBackoff·2^(attempt-1), at most MaxBackoff.
func (w *Worker) Backoff(attempt int) time.Duration {
	base, max := w.BaseBackoff, w.MaxBackoff
	if base <= 0 {
		base = DefaultBaseBackoff
	}
	if max <= 0 {
		max = DefaultMaxBackoff
	}
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// RunOnce claims the due notifications and tries each once; it returns how many it delivered.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	lease := w.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	maxAttempts := w.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ns, err := w.Outbox.ClaimNotifications(ctx, w.now(), lease, DefaultBatch)
	if err != nil {
		return 0, err
	}
	sent := 0
	for _, n := range ns {
		sendCtx, cancel := context.WithTimeout(ctx, lease/2)
		delivered, failures, err := w.send(sendCtx, n)
		cancel()
		if err == nil && len(failures) == 0 {
			if err := w.Outbox.NotificationSent(ctx, n.ID, w.now()); err != nil {
				return sent, err
			}
			sent++
			continue
		}
		if err == nil {
			err = failures[0].err
		}
		if n.Attempts >= maxAttempts {
			log.Error("notification failed after its retry budget", "id", n.ID, "event", n.Event, "attempts", n.Attempts, "err", err)
			var es []audit.Event
			if len(failures) == 0 { // the sinks themselves could not be resolved
				failures = []sinkFailure{{err: err}}
			}
			for _, f := range failures {
				es = append(es, failedEvent(n, f.sink, f.err, w.now()))
			}
			if err2 := w.Outbox.NotificationFailed(ctx, n.ID, err.Error(), w.now(), delivered, es); err2 != nil {
				return sent, err2
			}
			continue
		}
		log.Warn("notification not delivered; will retry", "id", n.ID, "attempt", n.Attempts, "err", err)
		if err2 := w.Outbox.NotificationRetry(ctx, n.ID, w.now().Add(w.Backoff(n.Attempts)), err.Error(), delivered); err2 != nil {
			return sent, err2
		}
	}
	return sent, nil
}

// sinkFailure is one sink's failure to take a notification.
type sinkFailure struct {
	sink string
	err  error
}

// send tries every sink n is routed to that has not taken it yet, each independently, and
// returns the sinks that have taken it (before or now) and those that failed. err is set when
// the sinks cannot be resolved at all.
func (w *Worker) send(ctx context.Context, n access.Notification) (delivered []string, failures []sinkFailure, err error) {
	delivered = append([]string(nil), n.Delivered...)
	sinks, err := w.Sinks(n)
	if err != nil {
		return delivered, nil, err
	}
	for _, s := range sinks {
		if slices.Contains(delivered, s.Name()) {
			continue
		}
		if err := s.Send(ctx, n); err != nil {
			failures = append(failures, sinkFailure{s.Name(), fmt.Errorf("%s: %w", s.Name(), err)})
			continue
		}
		delivered = append(delivered, s.Name())
	}
	return delivered, failures, nil
}

// Run calls RunOnce every interval, and at once whenever wake receives, until ctx ends.
func (w *Worker) Run(ctx context.Context, interval time.Duration, wake <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := w.RunOnce(ctx)
		if err != nil && ctx.Err() == nil && w.Log != nil {
			w.Log.Warn("notification delivery", "err", err)
		}
		if err == nil && n == DefaultBatch && ctx.Err() == nil {
			continue // a full batch: more may be due now
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
	}
}

// Static returns a Sinks function that sends every notification to sinks.
func Static(sinks ...Sink) func(access.Notification) ([]Sink, error) {
	return func(access.Notification) ([]Sink, error) { return sinks, nil }
}

// failedEvent is the ledger entry that records a notification given up on for one sink (empty
// when no sink could be resolved).
func failedEvent(n access.Notification, sink string, err error, now time.Time) audit.Event {
	to := "sink " + sink
	if sink == "" {
		to = "its sinks"
	}
	return audit.Event{Code: "notification.failed", Time: now, Class: audit.ClassAPIActivity, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Actor: audit.SystemActor,
		Message: fmt.Sprintf("notification %s (%s about %s) was not delivered to %s after %d attempts: %v", n.ID, n.Event, subjectOf(n), to, n.Attempts, err),
		Details: map[string]any{"notification_id": n.ID, "event": n.Event, "seq": n.Seq, "request_id": n.RequestID, "grant_id": n.GrantID,
			"sink": sink, "attempts": n.Attempts, "error": err.Error(), "recipients": n.Recipients}}
}

// subjectOf names what n is about, for messages.
func subjectOf(n access.Notification) string {
	if n.RequestID == "" && n.GrantID != "" {
		return "grant " + n.GrantID
	}
	return "request " + n.RequestID
}
