package access

import (
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/policy"
)

// Error kinds. Every error the Service returns wraps exactly one of them, so transports can map
// them to status codes with errors.Is. The one refinement: ErrStepUpRequired also matches
// ErrForbidden, so a transport that does not know it still refuses (403); one that does checks
// it first.
var (
	// ErrInvalid: the input is malformed or outside what the policy allows (400/422).
	ErrInvalid = errors.New("invalid")
	// ErrForbidden: the caller may not do this (403).
	ErrForbidden = errors.New("forbidden")
	// ErrMissing: no such request or grant, or not visible to the caller (404).
	ErrMissing = errors.New("missing")
	// ErrConflict: the object is not in a state that allows this (409).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the store or the ledger failed; nothing was changed (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrLimited: the caller reached a bound on what one person may make Rampart write
	// (invariant 11: pending requests, break-glass after a rejected review); nothing was changed
	// or recorded (429).
	ErrLimited = errors.New("limited")
	// ErrStepUpRequired: the caller must prove a recent multi-factor authentication, then try
	// again (401 with a step-up challenge). The error is a *StepUpRequired.
	ErrStepUpRequired = errors.New("step-up required")
)

// Error is a workflow error with a message written for the person who caused it.
type Error struct {
	Kind error
	Msg  string
	// Cause is the underlying error, if any (a store failure, a policy error).
	Cause error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind and the cause, so errors.Is works for both.
func (e *Error) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Kind, e.Cause}
	}
	return []error{e.Kind}
}

func errorf(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// unavailable wraps a store or ledger failure. The message says the change was not made, which
// is what invariant 4 guarantees.
func unavailable(what string, err error) *Error {
	return &Error{Kind: ErrUnavailable, Msg: fmt.Sprintf("%s failed and nothing was changed: %v; retry when the store is healthy", what, err), Cause: err}
}

// stepUpHint says how a person gets a fresh multi-factor authentication; it ends the message of
// every StepUpRequired.
const stepUpHint = "step up with `rampart login --step-up` (or `rampart mfa step-up CODE` with Rampart's own second factor), then approve again"

// StepUpRequired refuses an approval whose approver did not present a multi-factor
// authentication recent enough for the approval policy's require_step_up. Nothing was changed
// or recorded. It matches ErrStepUpRequired and ErrForbidden with errors.Is.
type StepUpRequired struct {
	// RequestID is the request the approval was for.
	RequestID string
	// Policy is the approval policy whose require_step_up applies: the shortest among the
	// policies matching the request's role (policy.Requirement.StepUpPolicy).
	Policy string
	// MaxAge is how old the multi-factor authentication may be.
	MaxAge time.Duration
	// MFAAt is the approver's last multi-factor authentication as presented; zero if none.
	MFAAt time.Time
	// At is the service clock's time of the refusal, against which MFAAt was measured.
	At time.Time
}

func (e *StepUpRequired) Error() string {
	var had string
	switch age := e.At.Sub(e.MFAAt); {
	case e.MFAAt.IsZero():
		had = "this sign-in has none (API tokens never do)"
	case age < 0:
		had = fmt.Sprintf("yours is dated %s, %s ahead of the server's clock", e.MFAAt.UTC().Format(time.RFC3339), policy.FormatDuration((-age).Round(time.Second)))
	default:
		had = fmt.Sprintf("yours was %s ago (%s)", policy.FormatDuration(age.Round(time.Second)), e.MFAAt.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("approving request %s needs a multi-factor authentication in the last %s (approval policy %q, require_step_up); %s; %s",
		e.RequestID, policy.FormatDuration(e.MaxAge), e.Policy, had, stepUpHint)
}

// Unwrap lets errors.Is match ErrStepUpRequired and, for transports that do not know it,
// ErrForbidden.
func (e *StepUpRequired) Unwrap() []error { return []error{ErrStepUpRequired, ErrForbidden} }

// maxStepUpSkew is how far ahead of the service's clock a multi-factor authentication time
// may lie and still count: replicas' clocks differ by a little. A time further ahead counts as
// none, so a replica with a runaway clock cannot mint step-ups that stay fresh for hours.
const maxStepUpSkew = time.Minute

// checkStepUp refuses an approval of request id under req unless mfaAt, the approver's last
// multi-factor authentication, is at most req.StepUp before now (exactly StepUp old still
// counts) and at most maxStepUpSkew after it.
func checkStepUp(req *policy.Requirement, id string, mfaAt, now time.Time) error {
	if req.StepUp <= 0 {
		return nil
	}
	if age := now.Sub(mfaAt); !mfaAt.IsZero() && age <= req.StepUp && age >= -maxStepUpSkew {
		return nil
	}
	return &StepUpRequired{RequestID: id, Policy: req.StepUpPolicy, MaxAge: req.StepUp, MFAAt: mfaAt, At: now}
}
