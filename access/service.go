package access

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Limits on free text, so a request cannot carry a megabyte of "reason".
const (
	MaxReasonLen  = 1024
	MaxCommentLen = 1024
)

// GrantListener is told about grants changed by a committed transaction, in commit order.
type GrantListener func(grants []Grant)

// Service runs the workflow. It is safe for concurrent use.
type Service struct {
	store Store
	pol   atomic.Pointer[policy.Policy]
	now   func() time.Time
	log   *slog.Logger

	mu        sync.RWMutex
	listeners []GrantListener
	outboxed  []func()

	// reminded remembers the reminders this process found written (id → the end of what they
	// are about), so that a sweep every second does not open a write transaction per item in
	// its window; the outbox, not this, is what makes a reminder exactly once.
	remindMu sync.Mutex
	reminded map[string]time.Time
}

// Options configure a Service.
type Options struct {
	// Now is the clock; time.Now if nil. Tests inject one so expiry never needs a sleep.
	Now    func() time.Time
	Logger *slog.Logger
}

// New returns a Service over store, governed by pol.
func New(store Store, pol *policy.Policy, o Options) *Service {
	s := &Service{store: store, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.pol.Store(pol)
	return s
}

// Policy returns the policy in force.
func (s *Service) Policy() *policy.Policy { return s.pol.Load() }

// Now returns the service clock's time.
func (s *Service) Now() time.Time { return s.now() }

// OnGrantChange registers a listener called after every commit that changed grants.
func (s *Service) OnGrantChange(l GrantListener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, l)
}

// OnNotification registers a function called after every commit that wrote notifications to
// the outbox (the delivery worker wakes on it instead of waiting for its next poll).
func (s *Service) OnNotification(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outboxed = append(s.outboxed, f)
}

func (s *Service) notify(grants []Grant) {
	if len(grants) == 0 {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, l := range s.listeners {
		l(grants)
	}
}

// txn runs fn in a store transaction and, after commit, notifies listeners of changed grants.
// Errors from fn that are not *Error are store or ledger failures: nothing was changed.
func (s *Service) txn(ctx context.Context, what string, fn func(t *txn) error) error {
	t := &txn{svc: s}
	err := s.store.Update(ctx, func(tx Tx) error {
		t.Tx, t.changed, t.notifications = tx, nil, 0
		return fn(t)
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		var su *StepUpRequired
		if errors.As(err, &su) {
			return su
		}
		return unavailable(what, err)
	}
	s.notify(t.changed)
	if t.notifications > 0 {
		s.mu.RLock()
		for _, f := range s.outboxed {
			f()
		}
		s.mu.RUnlock()
	}
	return nil
}

// txn wraps a store transaction with the helpers every workflow step uses.
type txn struct {
	Tx
	svc     *Service
	changed []Grant
	seq     int64
	// notifications counts the rows written to the outbox.
	notifications int
}

// record appends a ledger entry; its sequence number becomes the version of what it describes.
// The notification the entry causes, if any, is written to the outbox in the same transaction.
func (t *txn) record(ctx context.Context, e audit.Event) error {
	if e.Time.IsZero() {
		e.Time = t.svc.now()
	}
	seq, err := t.Append(ctx, e)
	if err != nil {
		return fmt.Errorf("append to ledger: %w", err)
	}
	t.seq = seq
	return t.outbox(ctx, seq, e)
}

func (t *txn) saveGrant(ctx context.Context, g Grant, insert bool) error {
	g.Version = t.seq
	var err error
	if insert {
		err = t.InsertGrant(ctx, g)
	} else {
		err = t.UpdateGrant(ctx, g)
	}
	if err == nil {
		t.changed = append(t.changed, g)
	}
	return err
}

func (t *txn) saveRequest(ctx context.Context, r Request, insert bool) error {
	r.Version = t.seq
	if insert {
		return t.InsertRequest(ctx, r)
	}
	return t.UpdateRequest(ctx, r)
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns prefix_ followed by 80 random bits in lowercase base32.
func NewID(prefix string) string {
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return prefix + "_" + idEncoding.EncodeToString(b)
}
