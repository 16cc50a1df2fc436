package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
)

// Disabled says what disabling a person ended.
type Disabled struct {
	// Sessions are the ids of the sessions revoked; Tokens how many API tokens were revoked.
	Sessions []string `json:"sessions_revoked"`
	Tokens   int      `json:"tokens_revoked"`
	// Already is set when the person was disabled before (the revocations ran again anyway).
	Already bool `json:"already_disabled,omitempty"`
}

// Disable disables a person (invariant 8): in one transaction with its ledger entry, every
// session of theirs is revoked (with its refresh tokens and the API tokens bound to it) and
// every API token of theirs is revoked — for good: enabling them again revives none of it. They
// cannot sign in until enabled. Disabling someone already disabled runs the revocations again
// (they find nothing unless something was issued since) and records nothing new unless they did.
// Grants, decisions and open connections are the caller's to end (server.Instance.DisableUser).
func (s *Sessions) Disable(ctx context.Context, subject, actor, reason string) (Disabled, error) {
	now := s.Now()
	defer s.forgetSubject(subject)
	if reason == "" {
		reason = "disabled by " + actor
	}
	var out Disabled
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		out = Disabled{}
		u, err := tx.User(ctx, subject)
		if err != nil && !errors.Is(err, ErrSessionNotFound) {
			return err
		}
		out.Already = !u.DisabledAt.IsZero()
		why := fmt.Sprintf("%s was disabled: %s", subject, reason)
		if out.Sessions, err = tx.RevokeSubjectSessions(ctx, subject, now, why); err != nil {
			return err
		}
		if out.Tokens, err = tx.RevokeSubjectTokens(ctx, subject, now, why); err != nil {
			return err
		}
		if out.Already && len(out.Sessions) == 0 && out.Tokens == 0 {
			return nil
		}
		if !out.Already {
			u.DisabledAt, u.DisabledBy = now, actor
		}
		u.Subject, u.UpdatedAt = subject, now
		if _, err := tx.Append(ctx, audit.Event{Code: "user.disable", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: actor, User: subject,
			Message: fmt.Sprintf("%s disabled %s (%s): %d session(s) and %d API token(s) revoked for good", actor, subject, reason, len(out.Sessions), out.Tokens),
			Details: map[string]any{"reason": reason, "sessions_revoked": nonNilStrings(out.Sessions), "tokens_revoked": out.Tokens}}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.PutUser(ctx, u)
	})
	for _, id := range out.Sessions {
		s.forgetSession(id)
	}
	return out, err
}

// RevokeAll revokes every session (with its refresh tokens) and API token of subject, in one
// transaction with a user.sessions_revoke entry, without disabling them: they may sign in again.
// It is what an automatic response (package detect) does for revoke_sessions. Running it again
// finds nothing and records nothing.
func (s *Sessions) RevokeAll(ctx context.Context, subject, actor, reason string) (Disabled, error) {
	now := s.Now()
	defer s.forgetSubject(subject)
	var out Disabled
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		out = Disabled{}
		var err error
		if out.Sessions, err = tx.RevokeSubjectSessions(ctx, subject, now, reason); err != nil {
			return err
		}
		if out.Tokens, err = tx.RevokeSubjectTokens(ctx, subject, now, reason); err != nil {
			return err
		}
		if len(out.Sessions) == 0 && out.Tokens == 0 {
			return nil
		}
		if _, err := tx.Append(ctx, audit.Event{Code: "user.sessions_revoke", Class: audit.ClassAuthentication, Activity: audit.ActivityOther, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: actor, User: subject,
			Message: fmt.Sprintf("%s revoked every session and API token of %s (%s): %d session(s), %d token(s)", actor, subject, reason, len(out.Sessions), out.Tokens),
			Details: map[string]any{"reason": reason, "sessions_revoked": nonNilStrings(out.Sessions), "tokens_revoked": out.Tokens}}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
	for _, id := range out.Sessions {
		s.forgetSession(id)
	}
	return out, err
}

// Enable lets a disabled person sign in again, and nothing more: their sessions and tokens were
// revoked when they were disabled. Any that a store written by an older server left unrevoked
// (disabling used only to refuse them) is revoked now, so that enabling revives nothing.
func (s *Sessions) Enable(ctx context.Context, subject, actor string) error {
	now := s.Now()
	defer s.forgetSubject(subject)
	return s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		u, err := tx.User(ctx, subject)
		if errors.Is(err, ErrSessionNotFound) || (err == nil && u.DisabledAt.IsZero()) {
			return fmt.Errorf("%w: %s is not disabled", ErrSessionNotFound, subject)
		} else if err != nil {
			return err
		}
		why := fmt.Sprintf("issued before %s was disabled at %s", subject, u.DisabledAt.UTC().Format(time.RFC3339))
		ids, err := tx.RevokeSubjectSessions(ctx, subject, now, why)
		if err != nil {
			return err
		}
		n, err := tx.RevokeSubjectTokens(ctx, subject, now, why)
		if err != nil {
			return err
		}
		if _, err := tx.Append(ctx, audit.Event{Code: "user.enable", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityMedium, Time: now, Actor: actor, User: subject,
			Message: fmt.Sprintf("%s enabled %s: they may sign in again; nothing from before is revived", actor, subject),
			Details: map[string]any{"disabled_at": u.DisabledAt.UTC().Format(time.RFC3339), "disabled_by": u.DisabledBy, "sessions_revoked": nonNilStrings(ids), "tokens_revoked": n}}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		u.DisabledAt, u.DisabledBy, u.UpdatedAt = time.Time{}, "", now
		return tx.PutUser(ctx, u)
	})
}

// SetDisabled disables or enables a person: Disable or Enable.
func (s *Sessions) SetDisabled(ctx context.Context, subject, actor string, disabled bool) error {
	if disabled {
		_, err := s.Disable(ctx, subject, actor, "")
		return err
	}
	return s.Enable(ctx, subject, actor)
}

// Unbind forgets which identity-provider account a user is bound to, so that the next sign-in
// binds a new one (after an administrator checked that the account was legitimately replaced).
func (s *Sessions) Unbind(ctx context.Context, subject, actor string) error {
	now := s.Now()
	return s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		u, err := tx.User(ctx, subject)
		if errors.Is(err, ErrSessionNotFound) || (err == nil && u.IdPSubject == "") {
			return fmt.Errorf("%w: %s is not bound to an identity-provider account", ErrSessionNotFound, subject)
		} else if err != nil {
			return err
		}
		if _, err := tx.Append(ctx, audit.Event{Code: "user.unbind", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: actor, User: subject, Details: map[string]any{"idp_subject": u.IdPSubject},
			Message: fmt.Sprintf("%s unbound %s from identity-provider account %s", actor, subject, u.IdPSubject)}); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		u.IdPSubject, u.UpdatedAt = "", now
		return tx.PutUser(ctx, u)
	})
}

// ResetMFA deletes a user's Rampart second factor (a lost phone); they enrol again after their
// next sign-in.
func (s *Sessions) ResetMFA(ctx context.Context, subject, actor string) error {
	now := s.Now()
	return s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		ok, err := tx.DeleteMFAFactor(ctx, subject)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: %s has no second factor enrolled", ErrNoFactor, subject)
		}
		_, err = tx.Append(ctx, audit.Event{Code: "mfa.reset", Class: audit.ClassAuthentication, Activity: audit.ActivityUpdate, ActivityName: "Other",
			Severity: audit.SeverityHigh, Time: now, Actor: actor, User: subject, Message: fmt.Sprintf("%s reset the second factor of %s", actor, subject),
			Details: map[string]any{"notify": notify(subject, "your second factor was reset; if you did not ask for it, tell your security team now")}})
		return err
	})
}
