package access

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/policy"
)

// checkStepUp at and around its edges: exactly MaxAge old counts, a nanosecond more does not;
// a time a little ahead of the clock counts, far ahead does not; no time never counts.
func TestCheckStepUp(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	req := &policy.Requirement{StepUp: 10 * time.Minute, StepUpPolicy: "weights-step-up"}
	cases := []struct {
		name  string
		mfaAt time.Time
		ok    bool
	}{
		{"just now", now, true},
		{"9m59s ago", now.Add(-10*time.Minute + time.Second), true},
		{"exactly 10m ago", now.Add(-10 * time.Minute), true},
		{"10m and 1ns ago", now.Add(-10*time.Minute - time.Nanosecond), false},
		{"an hour ago", now.Add(-time.Hour), false},
		{"none (API token or no second factor)", time.Time{}, false},
		{"a little ahead (replica clocks)", now.Add(maxStepUpSkew), true},
		{"far ahead (runaway clock)", now.Add(maxStepUpSkew + time.Nanosecond), false},
		{"a year ahead", now.AddDate(1, 0, 0), false},
		{"the distant past", time.Unix(0, 0), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkStepUp(req, "req_x", c.mfaAt, now)
			if c.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var su *StepUpRequired
			if !errors.As(err, &su) {
				t.Fatalf("got %v, want a *StepUpRequired", err)
			}
			if su.MaxAge != 10*time.Minute || su.Policy != "weights-step-up" || su.RequestID != "req_x" || !su.MFAAt.Equal(c.mfaAt) || !su.At.Equal(now) {
				t.Fatalf("evidence %+v", su)
			}
			if !errors.Is(err, ErrStepUpRequired) || !errors.Is(err, ErrForbidden) {
				t.Fatal("a step-up refusal must match ErrStepUpRequired and ErrForbidden")
			}
			for _, kind := range []error{ErrInvalid, ErrMissing, ErrConflict, ErrUnavailable} {
				if errors.Is(err, kind) {
					t.Fatalf("a step-up refusal matches %v", kind)
				}
			}
		})
	}
	if err := checkStepUp(&policy.Requirement{}, "req_x", time.Time{}, now); err != nil {
		t.Fatalf("no require_step_up, yet refused: %v", err)
	}
}

// The message says what is needed, what was presented, and what to do.
func TestStepUpRequiredMessage(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	base := StepUpRequired{RequestID: "req_x", Policy: "weights-step-up", MaxAge: 10 * time.Minute, At: now}
	cases := []struct {
		mfaAt time.Time
		want  string
	}{
		{time.Time{}, "this sign-in has none (API tokens never do)"},
		{now.Add(-25 * time.Minute), "yours was 25m ago (2026-11-26T08:35:00Z)"},
		{now.Add(2 * time.Hour), "2h ahead of the server's clock"},
	}
	for _, c := range cases {
		e := base
		e.MFAAt = c.mfaAt
		msg := e.Error()
		for _, want := range []string{c.want, "request req_x", "in the last 10m", `"weights-step-up"`, "rampart login --step-up", "rampart mfa step-up"} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not say %q", msg, want)
			}
		}
	}
}

// The transaction wrapper must hand a step-up refusal back as itself, not as a store failure.
func TestTxnPassesStepUpThrough(t *testing.T) {
	s := New(bareStore{}, nil, Options{})
	want := &StepUpRequired{RequestID: "req_x", MaxAge: time.Minute}
	err := s.txn(t.Context(), "testing", func(*txn) error { return want })
	var su *StepUpRequired
	if !errors.As(err, &su) || su != want || errors.Is(err, ErrUnavailable) {
		t.Fatalf("txn returned %v", err)
	}
}

// bareStore runs Update's function without a transaction; nothing else is called.
type bareStore struct{ Store }

func (bareStore) Update(_ context.Context, fn func(Tx) error) error { return fn(nil) }
