package access

import (
	"errors"
	"fmt"
)

// Error kinds. Every error the Service returns wraps exactly one of them, so transports can map
// them to status codes with errors.Is.
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
