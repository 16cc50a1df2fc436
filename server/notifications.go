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
}
