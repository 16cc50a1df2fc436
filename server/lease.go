package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"rampart.dev/rampart/store/sqlstore"
)

// JobsLease names the lease that decides which replica runs the background jobs one replica is
// enough for: the expiry sweep, the identity sweep and checkpoints.
const JobsLease = "background-jobs"

// DefaultJobsLeaseTTL is how long the lease lasts without renewal; it is renewed every third of
// that. A replica that stops leaves the jobs to another within this time (at once when it stops
// cleanly: it gives the lease up).
const DefaultJobsLeaseTTL = 15 * time.Second

// jobLease keeps (or waits for) the jobs lease. Nothing depends on it for correctness: every job
// it guards is idempotent and serialized by the store, so two replicas that both believe they
// hold it (a clock jump, a stalled renewal) only repeat work. What it saves is that work, and
// the noise of every replica trying.
type jobLease struct {
	store  *sqlstore.DB
	holder string
	ttl    time.Duration
	log    *slog.Logger

	mu    sync.Mutex
	until time.Time // local monotonic deadline of the current hold; zero when not held
}

// newJobLease makes the lease keeper. It uses the wall clock, not the instance's (tests move that
// one): the lease is shared with other processes.
func newJobLease(st *sqlstore.DB, ttl time.Duration, log *slog.Logger) *jobLease {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &jobLease{store: st, holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])), ttl: ttl, log: log}
}

// Held reports whether this replica holds the lease now. A hold lapses locally at its deadline
// (measured on the monotonic clock) even if a renewal is late.
func (l *jobLease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.until.IsZero() && time.Now().Before(l.until)
}

// renew takes or renews the lease; on any error this replica stops holding it.
func (l *jobLease) renew(ctx context.Context) {
	start := time.Now()
	ok, err := l.store.AcquireLease(ctx, JobsLease, l.holder, l.ttl, start)
	if err != nil && ctx.Err() == nil {
		l.log.Warn("background jobs: cannot renew the lease; this replica pauses them", "err", err)
	}
	was := l.Held()
	l.mu.Lock()
	if ok && err == nil {
		l.until = start.Add(l.ttl)
	} else {
		l.until = time.Time{}
	}
	l.mu.Unlock()
	switch now := ok && err == nil; {
	case now && !was:
		l.log.Info("background jobs: this replica holds the lease and runs them", "holder", l.holder, "ttl", l.ttl)
	case !now && was:
		l.log.Info("background jobs: this replica no longer holds the lease", "holder", l.holder)
	}
}

// run keeps the lease until ctx ends, then gives it up.
func (l *jobLease) run(ctx context.Context) {
	l.renew(ctx)
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			held := l.Held()
			l.mu.Lock()
			l.until = time.Time{}
			l.mu.Unlock()
			if held {
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				if err := l.store.ReleaseLease(rctx, JobsLease, l.holder); err != nil {
					l.log.Warn("background jobs: cannot give the lease up; another replica takes it when it expires", "err", err)
				}
				cancel()
			}
			return
		case <-t.C:
			l.renew(ctx)
		}
	}
}

// guard wraps a job so that it runs only while this replica holds the lease.
func (l *jobLease) guard(fn func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if !l.Held() {
			return nil
		}
		return fn(ctx)
	}
}
