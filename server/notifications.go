package server

import (
	"context"
	"time"

	"rampart.dev/rampart/notify"
)

// startNotifications runs the delivery worker over the store's outbox on every replica (a row
// is claimed by one replica at a time), woken by each local commit that wrote notifications and
// polling for those written by other replicas.
func (in *Instance) startNotifications(ctx context.Context, cfg Config, o Options) {
	router := &notify.Router{Policy: in.Access.Policy, DataDir: cfg.DataDir}
	if err := router.Check(in.Access.Policy()); err != nil {
		in.log.Warn("a notification sink cannot be used; its notifications will be retried, then recorded as failed", "err", err)
	}
	timeout := cfg.Notifications.Timeout.Std()
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	w := &notify.Worker{Outbox: in.Store, Sinks: router.Sinks, Now: o.Now, MaxAttempts: cfg.Notifications.MaxAttempts,
		BaseBackoff: cfg.Notifications.Backoff.Std(), Lease: 2 * timeout, Log: in.log}
	wake := make(chan struct{}, 1)
	in.Access.OnNotification(func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	poll := cfg.Notifications.PollInterval.Std()
	if poll <= 0 {
		poll = time.Second
	}
	in.every(ctx, "notifications", 0, func(ctx context.Context) error { w.Run(ctx, poll, wake); return nil })
	in.every(ctx, "notification reminders", o.SweepInterval, in.jobs.guard(func(ctx context.Context) error {
		return in.remindAndPrune(ctx, cfg, o)
	}))
}

// remindAndPrune writes the reminders due now (each once: access.Service.Remind) and deletes
// the sent and failed notifications older than the retention. It runs on the jobs-lease holder;
// both halves are idempotent, so two replicas that both believe they hold it only repeat work.
func (in *Instance) remindAndPrune(ctx context.Context, cfg Config, o Options) error {
	n, err := in.Access.Remind(ctx)
	if n > 0 {
		in.log.Info("reminders written", "count", n)
	}
	if err != nil {
		return err
	}
	keep := cfg.Notifications.Retention.Std()
	if keep <= 0 {
		keep = DefaultNotificationRetention
	}
	// A reminder's row must outlive the item it reminded of, or a later sweep would write it
	// again: keep rows at least as long as the longest lead a reminder can have (a request's is
	// at most its lifetime).
	pol := in.Access.Policy()
	keep = max(keep, pol.Notifications().RemindBefore.Std(), pol.Notifications().RequestRemindBefore.Std())
	for _, ap := range pol.ApprovalPolicies() {
		keep = max(keep, ap.RequestTTL.Std())
	}
	pruned, err := in.Store.PruneNotifications(ctx, o.Now().Add(-keep))
	if pruned > 0 {
		in.log.Info("old notifications deleted from the outbox", "count", pruned, "retention", keep)
	}
	return err
}
