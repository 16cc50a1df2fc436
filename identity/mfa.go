package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
)

// Limits of second-factor enrolment.
const (
	// MFAEnrolWindow is how long an administrator's allowance to enrol a factor lasts.
	MFAEnrolWindow = time.Hour
	// MFAPendingTTL is how long an enrolment waits for its first code.
	MFAPendingTTL = 15 * time.Minute
)

// ErrEnrolment wraps every reason ConfirmFactor refuses (409: start the enrolment again).
var ErrEnrolment = errors.New("enrolment refused")

// notify marks a ledger entry the person it concerns must be told about: the store writes a
// notification (kind "account", to subject) in the transaction that appends the entry
// (access.HintedNotification), delivered to the sinks whose events include "account".
func notify(subject, why string) map[string]any {
	return map[string]any{"subject": subject, "why": why}
}

// AllowMFAEnrolment lets subject enrol a second factor once, within MFAEnrolWindow, without a
// factor or the provider's multi-factor authentication: the help desk's answer to a lost
// factor (after ResetMFA) and to providers that cannot report their multi-factor
// authentication. The administrator does not get the factor; the person enrols it from their
// own session, and it counts for approvals only after FactorTrustAge. Recorded High.
func (s *Sessions) AllowMFAEnrolment(ctx context.Context, subject, actor string) (time.Time, error) {
	now := s.Now()
	until := now.Add(MFAEnrolWindow)
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		u, err := tx.User(ctx, subject)
		if err != nil && !errors.Is(err, ErrSessionNotFound) {
			return err
		}
		if !u.DisabledAt.IsZero() {
			return fmt.Errorf("%w: %s is disabled; enable them first", ErrUnauthenticated, subject)
		}
		u.Subject, u.UpdatedAt, u.MFAEnrolUntil, u.MFAEnrolBy = subject, now, until, actor
		if _, err := tx.Append(ctx, audit.Event{Code: "mfa.enrol_allowed", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: actor, User: subject,
			Message: fmt.Sprintf("%s allowed %s to enrol a second factor without one until %s", actor, subject, until.UTC().Format(time.RFC3339)),
			Details: map[string]any{"until": until.UTC().Format(time.RFC3339), "notify": notify(subject, "an administrator allowed a new second factor for your account")}}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.PutUser(ctx, u)
	})
	return until, err
}

// ConfirmFactor makes subject's pending factor — started by sessionID, sealed as secretEnc, its
// first code (at TOTP step) already checked by the caller — their factor, in one transaction with
// its High ledger entry (mfa.enrolled, or mfa.replaced when it replaces a confirmed one), so that
// a factor the ledger does not know about never becomes usable. An administrator's allowance
// the enrolment relied on is used up.
func (s *Sessions) ConfirmFactor(ctx context.Context, subject, sessionID, secretEnc string, step int64) (MFAFactor, error) {
	now := s.Now()
	var out MFAFactor
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		f, err := tx.MFAFactor(ctx, subject)
		if err != nil && !errors.Is(err, ErrNoFactor) {
			return err
		}
		p := f.Pending
		switch {
		case p == nil || p.SecretEnc != secretEnc:
			return fmt.Errorf("%w: there is no enrolment waiting for this code; start one with POST /v1/mfa/totp", ErrEnrolment)
		case p.SessionID != sessionID:
			return fmt.Errorf("%w: confirm the enrolment from the session that started it (%s)", ErrEnrolment, p.SessionID)
		case now.Sub(p.At) > MFAPendingTTL:
			return fmt.Errorf("%w: the enrolment started at %s has lapsed (%s); start again", ErrEnrolment, p.At.UTC().Format(time.RFC3339), MFAPendingTTL)
		}
		if p.Via == MFAViaAdmin {
			u, err := tx.User(ctx, subject)
			if err != nil || !now.Before(u.MFAEnrolUntil) {
				return fmt.Errorf("%w: the administrator's allowance this enrolment relied on is used or has lapsed; ask again", ErrEnrolment)
			}
			u.MFAEnrolUntil, u.MFAEnrolBy, u.UpdatedAt = time.Time{}, "", now
			if err := tx.PutUser(ctx, u); err != nil {
				return err
			}
		}
		code, verb := "mfa.enrolled", "enrolled"
		details := map[string]any{"session_id": sessionID, "via": p.Via,
			"notify": notify(subject, "a second factor was enrolled for your account; if it was not you, tell your security team now")}
		if !f.ConfirmedAt.IsZero() {
			code, verb = "mfa.replaced", "replaced their"
			details["previous_confirmed_at"] = f.ConfirmedAt.UTC().Format(time.RFC3339)
		}
		trusted := "at once (enrolled under the identity provider's multi-factor authentication)"
		if p.Via != MFAViaIdP {
			trusted = fmt.Sprintf("from %s (after %s)", now.Add(FactorTrustAge).UTC().Format(time.RFC3339), FactorTrustAge)
		}
		details["counts_for_approvals"] = trusted
		if _, err := tx.Append(ctx, audit.Event{Code: code, Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: subject, User: subject,
			Message: fmt.Sprintf("%s %s TOTP second factor (proved by %s); it counts for approvals %s", subject, verb, p.Via, trusted),
			Details: details}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		out = MFAFactor{Subject: subject, SecretEnc: p.SecretEnc, CreatedAt: p.At, ConfirmedAt: now, LastStep: step, EnrolledVia: p.Via}
		return tx.PutMFAFactor(ctx, out)
	})
	return out, err
}
