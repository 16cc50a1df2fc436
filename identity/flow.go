package identity

import (
	"context"
	"errors"
	"time"
)

// Flow is a sign-in in progress: a browser redirect waiting for its callback, a device
// authorization being polled, a one-time code waiting for the CLI, a second factor being asked
// for. Its ID is the SHA-256 of the secret handle the client holds (HashToken), so a copy of the
// store cannot finish anyone's sign-in.
type Flow struct {
	ID        string
	Kind      string
	Data      []byte // JSON, owned by the kind
	CreatedAt time.Time
	ExpiresAt time.Time
}

// ErrFlowNotFound means there is no such flow: never started, already finished, or expired.
var ErrFlowNotFound = errors.New("sign-in flow not found")

// FlowStore keeps flows. Taking a flow deletes it in the same statement that reads it, so a
// handle (an OAuth state, a one-time code) is redeemed at most once even under concurrency.
type FlowStore interface {
	PutFlow(ctx context.Context, f Flow) error
	// TakeFlow deletes and returns the flow (ErrFlowNotFound if missing, of another kind, or
	// expired at now).
	TakeFlow(ctx context.Context, id, kind string, now time.Time) (Flow, error)
	// GetFlow returns the flow without deleting it.
	GetFlow(ctx context.Context, id, kind string, now time.Time) (Flow, error)
	// ReplaceFlowData replaces an existing flow's data (ErrFlowNotFound if it was taken).
	ReplaceFlowData(ctx context.Context, id string, data []byte) error
	// DeleteExpiredFlows removes flows that expired before now.
	DeleteExpiredFlows(ctx context.Context, now time.Time) (int, error)
}

// MFAFactor is a person's Rampart-held second factor (a TOTP secret, encrypted).
type MFAFactor struct {
	Subject     string
	SecretEnc   string // sealed with the server's MFA key
	CreatedAt   time.Time
	ConfirmedAt time.Time // zero until a first code proved the enrolment
	LastStep    int64     // the last TOTP time step accepted: a code is good once
	// EnrolledVia is what proved the person when the factor was enrolled: MFAViaIdP,
	// MFAViaFactor, MFAViaAdmin, or "" for a factor enrolled before it was recorded.
	EnrolledVia string
	// Pending is an enrolment started and not confirmed yet; the confirmed factor, if any,
	// stays the one in use until it is.
	Pending *PendingFactor
}

// PendingFactor is a new factor waiting for its first code.
type PendingFactor struct {
	SecretEnc string
	At        time.Time
	Via       string
	// SessionID is the session that started the enrolment: only it may confirm it.
	SessionID string
}

// How a factor's enrolment was authorized (invariant 8: enrolling or replacing a second factor
// needs a factor the person already has, so a stolen password-only session cannot add its own).
const (
	// MFAViaIdP: a fresh multi-factor authentication at the identity provider.
	MFAViaIdP = "idp-mfa"
	// MFAViaFactor: a code of the factor the new one replaces.
	MFAViaFactor = "factor"
	// MFAViaAdmin: an administrator's one-time allowance (a help-desk reset, or a provider
	// that cannot tell Rampart about its multi-factor authentication).
	MFAViaAdmin = "admin"
)

// FactorTrustAge is how long a factor must have been held before a step-up with it counts for
// approvals (unless it was enrolled under the provider's multi-factor authentication): a factor
// an attacker managed to enrol does not approve anything for a day, while its High ledger entry
// tells the person.
const FactorTrustAge = 24 * time.Hour

// Trusted reports whether a step-up with the factor at now counts for approvals.
func (f MFAFactor) Trusted(now time.Time) bool {
	return !f.ConfirmedAt.IsZero() && (f.EnrolledVia == MFAViaIdP || now.Sub(f.ConfirmedAt) >= FactorTrustAge)
}

// ErrNoFactor means the person has no second factor enrolled.
var ErrNoFactor = errors.New("no second factor enrolled")

// MFAStore keeps second factors.
type MFAStore interface {
	MFAFactor(ctx context.Context, subject string) (MFAFactor, error)
	PutMFAFactor(ctx context.Context, f MFAFactor) error
	// UseMFAStep records step as used if it is later than the stored one; false if it is not
	// (the code was already used, or an older one).
	UseMFAStep(ctx context.Context, subject string, step int64) (bool, error)
	DeleteMFAFactor(ctx context.Context, subject string) error
	// AttemptMFA counts one attempt at a code of subject's factor, made at now, in the window
	// that began with the first attempt less than window ago (or a new window that begins now),
	// and returns how many attempts that window holds with this one, and when it ends. Racing
	// attempts are counted one by one, so no burst gets past a limit on n.
	AttemptMFA(ctx context.Context, subject string, now time.Time, window time.Duration) (n int, ends time.Time, err error)
	// ClearMFAAttempts forgets subject's attempts (after a right code).
	ClearMFAAttempts(ctx context.Context, subject string) error
}

// Limits on guessing a one-time code (invariant 8): a six-digit code and the one step either
// side accepted make a guess right once in about 333,000, so at most MaxMFAAttempts attempts
// at a person's codes are checked per MFAAttemptWindow, whoever makes them (a stolen session
// stepping up, a sign-in, an enrolment); after that every code, even a right one, is refused
// until the window ends.
const (
	MaxMFAAttempts   = 5
	MFAAttemptWindow = 15 * time.Minute
)
