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
}
