package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// MaxTokenTTL bounds every token's life.
const MaxTokenTTL = 90 * 24 * time.Hour

// TokenStepUpFresh is how recent the multi-factor authentication that lets a person mint a
// token outliving their session must be.
const TokenStepUpFresh = 5 * time.Minute

// Errors of minting.
var (
	// ErrMintRefused means the caller may not mint this token (403): not from their own
	// session, or for someone else.
	ErrMintRefused = errors.New("token refused")
	// ErrStepUpNeeded means the token asked for outlives the session that asks for it, which
	// needs a fresh multi-factor authentication first (401 step_up_required).
	ErrStepUpNeeded = errors.New("a fresh multi-factor authentication is needed")
)

// newToken returns a fresh secret and the token record for it.
func newToken(subject, kind, description, issuedBy string, now time.Time, ttl time.Duration) (string, Token, error) {
	raw, idRaw := make([]byte, 32), make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return "", Token{}, err
	}
	if _, err := rand.Read(idRaw); err != nil {
		return "", Token{}, err
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	return secret, Token{ID: "tok_" + hex.EncodeToString(idRaw), Hash: HashToken(secret), Subject: subject, Kind: kind,
		Description: description, CreatedAt: now, ExpiresAt: now.Add(ttl), IssuedBy: issuedBy}, nil
}

// checkKind refuses a token whose kind does not match its subject: service tokens act only for
// service: subjects, user tokens only for people, and workloads use their service-account
// tokens (invariant 8: a machine's credential never speaks for a person, nor the reverse).
func checkKind(subject, kind string) error {
	if err := policy.ValidateSubject(subject); err != nil {
		return fmt.Errorf("%w: subject: %v", ErrInvalidToken, err)
	}
	switch sk := policy.SubjectKind(subject); {
	case kind != KindUser && kind != KindService:
		return fmt.Errorf("%w: token kind must be %q or %q", ErrInvalidToken, KindUser, KindService)
	case sk == policy.KindWorkload:
		return fmt.Errorf("%w: %s is a workload; workloads authenticate with their Kubernetes service-account token, not an API token", ErrInvalidToken, subject)
	case kind == KindService && sk != policy.KindService:
		return fmt.Errorf("%w: a service token acts for a machine, so its subject must be service:<name>, not %q", ErrInvalidToken, subject)
	case kind == KindUser && sk != policy.KindUser:
		return fmt.Errorf("%w: a user token acts for a person; %s is a machine: issue it a service token", ErrInvalidToken, subject)
	}
	return nil
}

func checkTTL(ttl time.Duration, description string) error {
	if ttl <= 0 || ttl > MaxTokenTTL {
		return fmt.Errorf("%w: token lifetime %s must be between 1s and %s", ErrInvalidToken, ttl, MaxTokenTTL)
	}
	if len(description) > 256 {
		return fmt.Errorf("%w: description is over 256 bytes", ErrInvalidToken)
	}
	return nil
}

// MaxPipelineTokenTTL bounds a pipeline token's life.
const MaxPipelineTokenTTL = 15 * time.Minute

// IssuePipeline creates a token for a CI pipeline (a ci: subject), bound to no session and living
// at most MaxPipelineTokenTTL, and records e (the exchange that earned it) in the same
// transaction instead of a token.issue entry. Package ci calls it once the pipeline's rule
// allowed the run; the token never approves (it has no session) and is a machine's.
func (ts *Tokens) IssuePipeline(ctx context.Context, subject string, ttl time.Duration, e audit.Event) (string, Token, error) {
	if err := policy.ValidateSubject(subject); err != nil || policy.SubjectKind(subject) != policy.KindPipeline {
		return "", Token{}, fmt.Errorf("%w: %q is not a pipeline subject (ci:<issuer>/<repository>/<workflow>)", ErrInvalidToken, subject)
	}
	if ttl <= 0 || ttl > MaxPipelineTokenTTL {
		return "", Token{}, fmt.Errorf("%w: a pipeline token lives 1s to %s, not %s", ErrInvalidToken, MaxPipelineTokenTTL, ttl)
	}
	secret, t, err := newToken(subject, KindPipeline, "CI job "+subject, subject, ts.Now(), ttl)
	if err != nil {
		return "", Token{}, err
	}
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details["token_id"], e.Details["expires_at"] = t.ID, t.ExpiresAt.UTC().Format(time.RFC3339)
	if err := ts.Store.IssueToken(ctx, t, e); err != nil {
		return "", Token{}, fmt.Errorf("store token: %w", err)
	}
	return secret, t, nil
}

// Issue creates a token that is bound to no session and returns its secret, shown once: a
// service token for a service: subject (issued by an administrator), or the bootstrap token of
// `rampart admin token`. Such a token never approves (approvals need a person's own session).
// Use Mint for the tokens people make for themselves.
func (ts *Tokens) Issue(ctx context.Context, subject, kind, description, actor string, ttl time.Duration) (string, Token, error) {
	if err := checkKind(subject, kind); err != nil {
		return "", Token{}, err
	}
	if err := checkTTL(ttl, description); err != nil {
		return "", Token{}, err
	}
	secret, t, err := newToken(subject, kind, description, actor, ts.Now(), ttl)
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, ts.store(ctx, t, audit.SeverityLow, actor)
}

func (ts *Tokens) store(ctx context.Context, t Token, sev int, actor string) error {
	details := map[string]any{"token_id": t.ID, "kind": t.Kind, "description": t.Description, "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339)}
	how := ""
	if t.SessionID != "" {
		details["session_id"], details["session_bound"] = t.SessionID, t.SessionBound
		how = ", bound to session " + t.SessionID
		if !t.SessionBound {
			details["step_up_at"] = t.StepUpAt.UTC().Format(time.RFC3339Nano)
			how = fmt.Sprintf(", minted in session %s and allowed to outlive it by a multi-factor authentication at %s", t.SessionID, t.StepUpAt.UTC().Format(time.RFC3339))
		}
	}
	e := audit.Event{Code: "token.issue", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Severity: sev, Time: t.CreatedAt, Actor: actor, User: t.Subject,
		Message: fmt.Sprintf("%s token %s issued to %s by %s, valid until %s%s", t.Kind, t.ID, t.Subject, actor, t.ExpiresAt.UTC().Format(time.RFC3339), how),
		Details: details}
	if err := ts.Store.IssueToken(ctx, t, e); err != nil {
		return fmt.Errorf("store token: %w", err)
	}
	return nil
}

// MintInput is a person's request for an API token of their own.
type MintInput struct {
	// Caller must be the person's signed-in session itself (its access token), not another
	// token.
	Caller Principal
	// TTL is the token's life; zero means until the session ends. Longer than the session's
	// remaining life needs Caller.TrustedMFAAt within TokenStepUpFresh.
	TTL         time.Duration
	Description string
}

// Mint creates a token for the person signed in to Caller's session (invariant 8): nobody mints
// a token for anyone else. The token is bound to the session — it ends with it and is revoked
// with it — unless it is to outlive the session, which needs a multi-factor authentication in
// the last TokenStepUpFresh with a factor that counts for approvals; such a token is recorded as
// a High entry, still acts only for its person, never approves, and is revoked when the person
// is disabled.
func (ts *Tokens) Mint(ctx context.Context, in MintInput) (string, Token, error) {
	c := in.Caller
	if c.Kind != KindUser || c.SessionID == "" || c.TokenID != c.SessionID {
		return "", Token{}, fmt.Errorf("%w: people mint their tokens from their own signed-in session (rampart login), not with another token or a machine's credential", ErrMintRefused)
	}
	if err := checkKind(c.Subject, KindUser); err != nil {
		return "", Token{}, err
	}
	sr, ok := ts.Store.(SessionRecords)
	if !ok {
		return "", Token{}, errors.New("this token store keeps no sessions to bind the token to")
	}
	ses, err := sr.SessionRecord(ctx, c.SessionID)
	if err != nil {
		return "", Token{}, fmt.Errorf("read session %s: %w", c.SessionID, err)
	}
	now := ts.Now()
	if !ses.Active(now) || ses.Subject != c.Subject {
		return "", Token{}, fmt.Errorf("%w: session %s has ended; sign in again", ErrUnauthenticated, ses.ID)
	}
	remaining := ses.ExpiresAt.Sub(now)
	ttl, bound := in.TTL, true
	if ttl == 0 {
		ttl = remaining
	}
	if ttl > remaining {
		age := now.Sub(c.TrustedMFAAt)
		if c.TrustedMFAAt.IsZero() || age > TokenStepUpFresh || age < -time.Minute {
			return "", Token{}, fmt.Errorf("%w: a token for %s outlives your session %s, which ends in %s (%s); that needs a multi-factor authentication in the last %s with a factor that counts for approvals: run `rampart login --step-up` and ask again, or ask for a --ttl of at most %s",
				ErrStepUpNeeded, policy.FormatDuration(ttl), ses.ID, policy.FormatDuration(remaining.Round(time.Second)), ses.ExpiresAt.UTC().Format(time.RFC3339),
				policy.FormatDuration(TokenStepUpFresh), policy.FormatDuration(remaining.Truncate(time.Minute)))
		}
		bound = false
	}
	if err := checkTTL(ttl, in.Description); err != nil {
		return "", Token{}, err
	}
	secret, t, err := newToken(c.Subject, KindUser, in.Description, c.Subject, now, ttl)
	if err != nil {
		return "", Token{}, err
	}
	t.SessionID, t.SessionBound = ses.ID, bound
	sev := audit.SeverityInformational
	if !bound {
		t.StepUpAt, sev = c.TrustedMFAAt, audit.SeverityHigh
	}
	return secret, t, ts.store(ctx, t, sev, c.Subject)
}

// Revoke ends a token now.
func (ts *Tokens) Revoke(ctx context.Context, id, actor, reason string) error {
	return ts.RevokeIf(ctx, id, actor, reason, nil)
}

// RevokeIf is Revoke after check approves the token (its error is returned as is, e.g. to
// hide other people's tokens).
func (ts *Tokens) RevokeIf(ctx context.Context, id, actor, reason string, check func(Token) error) error {
	if check != nil {
		t, err := ts.Store.TokenByID(ctx, id)
		if err != nil {
			return err
		}
		if err := check(t); err != nil {
			return err
		}
	}
	if reason == "" {
		reason = "revoked by " + actor
	}
	now := ts.Now()
	defer ts.forget(id)
	e := audit.Event{Code: "token.revoke", Class: audit.ClassAuthentication, Activity: audit.ActivityRead, ActivityName: "Logoff",
		Time: now, Actor: actor, Message: fmt.Sprintf("token %s revoked by %s: %s", id, actor, reason), Details: map[string]any{"token_id": id, "reason": reason}}
	return ts.Store.RevokeToken(ctx, id, now, reason, e)
}

// List returns a subject's tokens ("" for everyone's), newest first. Secrets are never stored,
// so none is shown.
func (ts *Tokens) List(ctx context.Context, subject string) ([]Token, error) {
	return ts.Store.ListTokens(ctx, subject)
}
