package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
)

// Session token prefixes: access tokens are short-lived bearer credentials, refresh tokens are
// exchanged (and rotated) for new access tokens.
const (
	AccessPrefix  = "rps_"
	RefreshPrefix = "rpr_"
)

// Limits of sessions.
const (
	// MaxAccessTTL caps an access token's life.
	MaxAccessTTL = 15 * time.Minute
	// DefaultAccessTTL is an access token's life unless configured shorter.
	DefaultAccessTTL = 10 * time.Minute
	// DefaultSessionTTL is a session's absolute life: refreshes cannot extend it.
	DefaultSessionTTL = 12 * time.Hour
)

// Session is a person's signed-in session.
type Session struct {
	ID         string    `json:"id"`
	Subject    string    `json:"subject"`
	Method     string    `json:"method"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	// AuthTime is when the identity provider last authenticated the person.
	AuthTime time.Time `json:"auth_time"`
	// MFAAt is the last multi-factor authentication in this session (zero if none).
	MFAAt time.Time `json:"mfa_at,omitzero"`
	// TrustedMFAAt is the last one with a factor that counts for approvals (the identity
	// provider's, or a Rampart factor held for a day or enrolled under the provider's
	// multi-factor authentication); zero if none.
	TrustedMFAAt time.Time `json:"trusted_mfa_at,omitzero"`
	// IdPMFAAt is the last multi-factor authentication the identity provider reported (amr,
	// acr); zero if none. Enrolling a Rampart factor may rely on it.
	IdPMFAAt      time.Time `json:"idp_mfa_at,omitzero"`
	AMR           []string  `json:"amr"`
	IP            string    `json:"ip"`
	Fingerprint   string    `json:"fingerprint"`
	Groups        []string  `json:"groups"`
	Risk          string    `json:"risk"`
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	RevokedReason string    `json:"revoked_reason,omitempty"`
}

// Active reports whether the session may be used at t.
func (s Session) Active(t time.Time) bool { return s.RevokedAt.IsZero() && t.Before(s.ExpiresAt) }

// SessionToken is a stored access or refresh token (only its hash).
type SessionToken struct {
	Hash      string
	SessionID string
	Kind      string // "access" or "refresh"
	IssuedAt  time.Time
	ExpiresAt time.Time
	// UsedAt is when a refresh token was exchanged; a second use is a replay.
	UsedAt time.Time
}

// User is what Rampart keeps about a person beyond the policy: the groups their last sign-in
// mapped them to, and whether an administrator disabled them.
type User struct {
	Subject string   `json:"subject"`
	Groups  []string `json:"groups"`
	// GroupsAt is when the identity provider last confirmed Groups (a sign-in); the rights they
	// carry expire after the server's groups_max_age unless confirmed again.
	GroupsAt   time.Time `json:"groups_at,omitzero"`
	DisabledAt time.Time `json:"disabled_at,omitzero"`
	DisabledBy string    `json:"disabled_by,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
	// IdPSubject is the identity provider's "sub" (with its issuer) this user first signed in
	// with. A later sign-in with the same username but another sub is refused: a recycled or
	// renamed account at the provider does not inherit someone else's grants.
	IdPSubject string `json:"idp_subject,omitempty"`
	// MFAEnrolUntil is the end of an administrator's allowance to enrol a second factor
	// without one (MFAEnrolBy gave it); zero if none.
	MFAEnrolUntil time.Time `json:"mfa_enrol_until,omitzero"`
	MFAEnrolBy    string    `json:"mfa_enrol_by,omitempty"`
}

// SessionTx is a read-write transaction over sessions; ledger entries appended through it
// commit with it.
type SessionTx interface {
	audit.Appender
	Session(ctx context.Context, id string) (Session, error)
	InsertSession(ctx context.Context, s Session) error
	UpdateSession(ctx context.Context, s Session) error
	SessionToken(ctx context.Context, hash string) (SessionToken, error)
	InsertSessionToken(ctx context.Context, t SessionToken) error
	MarkSessionTokenUsed(ctx context.Context, hash string, at time.Time) error
	// RevokeSessionTokens revokes the unrevoked API tokens bound to a session, with reason, and
	// returns how many.
	RevokeSessionTokens(ctx context.Context, sessionID string, at time.Time, reason string) (int, error)
	// RevokeSubjectSessions revokes every unrevoked session of a subject (their refresh tokens
	// die with them) and returns their ids.
	RevokeSubjectSessions(ctx context.Context, subject string, at time.Time, reason string) ([]string, error)
	// RevokeSubjectTokens revokes every unrevoked API token of a subject and returns how many.
	RevokeSubjectTokens(ctx context.Context, subject string, at time.Time, reason string) (int, error)
	// MFAFactor and PutMFAFactor read and replace a person's second factor (ErrNoFactor if none).
	MFAFactor(ctx context.Context, subject string) (MFAFactor, error)
	PutMFAFactor(ctx context.Context, f MFAFactor) error
	User(ctx context.Context, subject string) (User, error)
	PutUser(ctx context.Context, u User) error
	DeleteMFAFactor(ctx context.Context, subject string) (bool, error)
}

// SessionStore persists sessions.
type SessionStore interface {
	UpdateSessions(ctx context.Context, fn func(SessionTx) error) error
	// SessionByToken returns a token, its session and the session's person (a zero User with
	// the subject if none is stored; ErrSessionNotFound if the token or session is missing).
	SessionByToken(ctx context.Context, hash string) (Session, SessionToken, User, error)
	ListSessions(ctx context.Context, subject string) ([]Session, error)
	// UserRecord returns a user (a zero User with the subject if none is stored).
	UserRecord(ctx context.Context, subject string) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
}

// Errors of sessions.
var (
	ErrSessionNotFound = errors.New("session not found")
	// ErrRefreshReused means a refresh token was presented a second time: the session is
	// revoked, since either the client or an attacker holds a copy.
	ErrRefreshReused = errors.New("refresh token reused")
	// ErrSubjectMismatch means a username arrived with another provider account than the one
	// it is bound to.
	ErrSubjectMismatch = errors.New("identity-provider account mismatch")
)

// Sessions issues, verifies, refreshes and revokes sessions.
type Sessions struct {
	Store SessionStore
	Now   func() time.Time
	// AccessTTL is an access token's life (DefaultAccessTTL if zero; at most MaxAccessTTL).
	AccessTTL time.Duration
	// SessionTTL is a session's absolute life (DefaultSessionTTL if zero).
	SessionTTL time.Duration
	// CacheTTL bounds how long a verified access token is trusted without the store (1 s if
	// zero, no cache if negative). Revocations through this Sessions clear it at once.
	CacheTTL time.Duration
	// Tokens, if set, is told about revocations, so that the API tokens bound to a revoked
	// session are refused at once on this replica too (other replicas: within its cache TTL).
	Tokens *Tokens

	mu    sync.Mutex
	cache map[string]cachedSession
}

type cachedSession struct {
	s       Session
	t       SessionToken
	u       User
	fetched time.Time
}

// Issued are new tokens for a session. The secrets are shown once.
type Issued struct {
	AccessToken     string    `json:"access_token"`
	RefreshToken    string    `json:"refresh_token"`
	AccessExpiresAt time.Time `json:"access_expires_at"`
	Session         Session   `json:"session"`
}

// NewSession describes an authenticated person.
type NewSession struct {
	Subject  string
	Method   string
	AuthTime time.Time
	AMR      []string
	MFA      bool
	// TrustedMFA says the multi-factor authentication counts for approvals (Session.TrustedMFAAt);
	// IdPMFA that the identity provider reported it (Session.IdPMFAAt).
	TrustedMFA  bool
	IdPMFA      bool
	IP          string
	Fingerprint string
	Groups      []string
	// NoGroups says the sign-in brings no groups from an identity provider (the development
	// login): the person's directory groups are left as they were.
	NoGroups bool
	Risk     string
	// IdPSubject binds the user to the provider's account ("" for sign-ins without one).
	IdPSubject string
	// Event is the sign-in ledger entry, written with the session.
	Event audit.Event
}

func (s *Sessions) accessTTL() time.Duration {
	if s.AccessTTL <= 0 {
		return DefaultAccessTTL
	}
	return min(s.AccessTTL, MaxAccessTTL)
}

func (s *Sessions) sessionTTL() time.Duration {
	if s.SessionTTL <= 0 {
		return DefaultSessionTTL
	}
	return s.SessionTTL
}

func secret(prefix string) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func newSessionID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "ses_" + base64.RawURLEncoding.EncodeToString(b)
}

// issue stores a fresh access and refresh token for a session.
func (s *Sessions) issue(ctx context.Context, tx SessionTx, ses Session, now time.Time) (Issued, error) {
	access, refresh := secret(AccessPrefix), secret(RefreshPrefix)
	accessExp := now.Add(s.accessTTL())
	if accessExp.After(ses.ExpiresAt) {
		accessExp = ses.ExpiresAt
	}
	for _, t := range []SessionToken{
		{Hash: HashToken(access), SessionID: ses.ID, Kind: "access", IssuedAt: now, ExpiresAt: accessExp},
		{Hash: HashToken(refresh), SessionID: ses.ID, Kind: "refresh", IssuedAt: now, ExpiresAt: ses.ExpiresAt},
	} {
		if err := tx.InsertSessionToken(ctx, t); err != nil {
			return Issued{}, err
		}
	}
	return Issued{AccessToken: access, RefreshToken: refresh, AccessExpiresAt: accessExp, Session: ses}, nil
}

// Create opens a session for an authenticated person, records the sign-in in the ledger and
// remembers the groups the identity provider mapped them to — all in one transaction.
func (s *Sessions) Create(ctx context.Context, ns NewSession) (Issued, error) {
	now := s.Now()
	ses := Session{ID: newSessionID(), Subject: ns.Subject, Method: ns.Method, CreatedAt: now, ExpiresAt: now.Add(s.sessionTTL()),
		LastSeenAt: now, AuthTime: ns.AuthTime, AMR: nonNilStrings(ns.AMR), IP: ns.IP, Fingerprint: ns.Fingerprint,
		Groups: nonNilStrings(ns.Groups), Risk: ns.Risk}
	if ns.MFA {
		ses.MFAAt = ns.AuthTime
		if ns.TrustedMFA {
			ses.TrustedMFAAt = ns.AuthTime
		}
		if ns.IdPMFA {
			ses.IdPMFAAt = ns.AuthTime
		}
	}
	var out Issued
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		u, err := tx.User(ctx, ns.Subject)
		if err != nil && !errors.Is(err, ErrSessionNotFound) {
			return err
		}
		if !u.DisabledAt.IsZero() {
			return fmt.Errorf("%w: %s was disabled by %s at %s", ErrUnauthenticated, ns.Subject, u.DisabledBy, u.DisabledAt.UTC().Format(time.RFC3339))
		}
		if u.IdPSubject != "" && ns.IdPSubject != "" && u.IdPSubject != ns.IdPSubject {
			return fmt.Errorf("%w: %w: %s is bound to identity-provider account %s, not %s; an administrator must unbind it (rampart user unbind %s) if the account was legitimately replaced",
				ErrUnauthenticated, ErrSubjectMismatch, ns.Subject, u.IdPSubject, ns.IdPSubject, ns.Subject)
		}
		if u.IdPSubject == "" {
			u.IdPSubject = ns.IdPSubject
		}
		ev := ns.Event
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["session_id"] = ses.ID
		if _, err := tx.Append(ctx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		if err := tx.InsertSession(ctx, ses); err != nil {
			return err
		}
		u.Subject, u.UpdatedAt = ns.Subject, now
		if !ns.NoGroups {
			u.Groups, u.GroupsAt = nonNilStrings(ns.Groups), now
		}
		u.Groups = nonNilStrings(u.Groups)
		if err := tx.PutUser(ctx, u); err != nil {
			return err
		}
		out, err = s.issue(ctx, tx, ses, now)
		return err
	})
	return out, err
}

// RefreshCheck may refuse a refresh (for example when the risk engine sees a replay from
// elsewhere); it gets the session being refreshed.
type RefreshCheck func(Session) error

// Refresh exchanges a refresh token for new tokens, rotating the refresh token. Presenting a
// refresh token that was already exchanged revokes the whole session and records a detection.
func (s *Sessions) Refresh(ctx context.Context, refreshToken, ip, fingerprint string, check RefreshCheck) (Issued, error) {
	if !strings.HasPrefix(refreshToken, RefreshPrefix) || len(refreshToken) > 128 {
		return Issued{}, fmt.Errorf("%w: not a Rampart refresh token (they start with %s)", ErrUnauthenticated, RefreshPrefix)
	}
	now := s.Now()
	hash := HashToken(refreshToken)
	var out Issued
	var reused error
	var reusedID string
	err := s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		tok, err := tx.SessionToken(ctx, hash)
		if errors.Is(err, ErrSessionNotFound) || (err == nil && tok.Kind != "refresh") {
			return fmt.Errorf("%w: unknown refresh token; sign in again", ErrUnauthenticated)
		} else if err != nil {
			return err
		}
		ses, err := tx.Session(ctx, tok.SessionID)
		if err != nil {
			return err
		}
		if !ses.RevokedAt.IsZero() {
			return fmt.Errorf("%w: session %s was revoked (%s); sign in again", ErrUnauthenticated, ses.ID, ses.RevokedReason)
		}
		if !tok.UsedAt.IsZero() {
			// Replay: revoke the session family and record it, in this transaction; the
			// caller still gets an error.
			reused, reusedID = fmt.Errorf("%w: this refresh token was already used at %s; session %s is revoked", ErrRefreshReused, tok.UsedAt.UTC().Format(time.RFC3339), ses.ID), ses.ID
			return s.revokeTx(ctx, tx, ses, "rampart", "refresh token reused", now, audit.Event{
				Code: "session.refresh_reused", Class: audit.ClassAuthentication, Activity: audit.ActivityRead, ActivityName: "Logoff",
				Severity: audit.SeverityHigh, Time: now, Actor: audit.SystemActor, User: ses.Subject,
				Message: fmt.Sprintf("refresh token of session %s (%s) was presented again from %s; the session is revoked", ses.ID, ses.Subject, ip),
				Details: map[string]any{"session_id": ses.ID, "ip": ip, "fingerprint": fingerprint, "first_used_at": tok.UsedAt.UTC().Format(time.RFC3339)}})
		}
		if !ses.Active(now) {
			return fmt.Errorf("%w: session %s has ended; sign in again", ErrUnauthenticated, ses.ID)
		}
		if !now.Before(tok.ExpiresAt) {
			return fmt.Errorf("%w: refresh token expired; sign in again", ErrUnauthenticated)
		}
		if u, err := tx.User(ctx, ses.Subject); err == nil && !u.DisabledAt.IsZero() {
			return fmt.Errorf("%w: %s is disabled", ErrUnauthenticated, ses.Subject)
		}
		if check != nil {
			if err := check(ses); err != nil {
				return err
			}
		}
		if err := tx.MarkSessionTokenUsed(ctx, hash, now); err != nil {
			return err
		}
		// The session is now used from here: the next refresh is compared with this one.
		ses.LastSeenAt, ses.IP = now, ip
		if err := tx.UpdateSession(ctx, ses); err != nil {
			return err
		}
		out, err = s.issue(ctx, tx, ses, now)
		return err
	})
	if err == nil && reused != nil {
		s.forgetSession(reusedID)
		return Issued{}, reused
	}
	return out, err
}

// Verify checks an access token. A revoked session, a disabled user or an expired token is
// refused at once.
func (s *Sessions) Verify(ctx context.Context, accessToken string) (Principal, error) {
	if !strings.HasPrefix(accessToken, AccessPrefix) || len(accessToken) > 128 {
		return Principal{}, fmt.Errorf("%w: not a Rampart session token", ErrUnauthenticated)
	}
	now := s.Now()
	hash := HashToken(accessToken)
	c, err := s.lookup(ctx, hash, now)
	if err != nil {
		return Principal{}, err
	}
	switch {
	case c.t.Kind != "access":
		return Principal{}, fmt.Errorf("%w: a refresh token is not an access token", ErrUnauthenticated)
	case !c.s.RevokedAt.IsZero():
		return Principal{}, fmt.Errorf("%w: session %s was revoked (%s); sign in again", ErrUnauthenticated, c.s.ID, c.s.RevokedReason)
	case !now.Before(c.t.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: access token expired at %s; refresh it or sign in again", ErrUnauthenticated, c.t.ExpiresAt.UTC().Format(time.RFC3339))
	case !now.Before(c.s.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: session %s ended at %s; sign in again", ErrUnauthenticated, c.s.ID, c.s.ExpiresAt.UTC().Format(time.RFC3339))
	case !c.u.DisabledAt.IsZero():
		return Principal{}, fmt.Errorf("%w: %s is disabled", ErrUnauthenticated, c.s.Subject)
	}
	return Principal{Subject: c.s.Subject, Kind: KindUser, TokenID: c.s.ID, SessionID: c.s.ID, AuthTime: c.s.AuthTime,
		MFAAt: c.s.MFAAt, TrustedMFAAt: c.s.TrustedMFAAt, IdPMFAAt: c.s.IdPMFAAt, Groups: c.s.Groups, Risk: c.s.Risk}, nil
}

func (s *Sessions) lookup(ctx context.Context, hash string, now time.Time) (cachedSession, error) {
	ttl := s.CacheTTL
	if ttl == 0 {
		ttl = time.Second
	}
	if ttl > 0 {
		s.mu.Lock()
		c, ok := s.cache[hash]
		s.mu.Unlock()
		if ok && now.Sub(c.fetched) < ttl && !now.Before(c.fetched) {
			return c, nil
		}
	}
	ses, tok, u, err := s.Store.SessionByToken(ctx, hash)
	if errors.Is(err, ErrSessionNotFound) {
		return cachedSession{}, fmt.Errorf("%w: unknown session token; sign in again", ErrUnauthenticated)
	} else if err != nil {
		return cachedSession{}, fmt.Errorf("session lookup failed: %w", err)
	}
	c := cachedSession{s: ses, t: tok, u: u, fetched: now}
	if ttl > 0 {
		s.mu.Lock()
		if s.cache == nil || len(s.cache) >= maxCached {
			s.cache = map[string]cachedSession{}
		}
		s.cache[hash] = c
		s.mu.Unlock()
	}
	return c, nil
}

func (s *Sessions) forgetSession(id string) {
	s.mu.Lock()
	for h, c := range s.cache {
		if c.s.ID == id {
			delete(s.cache, h)
		}
	}
	s.mu.Unlock()
	if s.Tokens != nil {
		s.Tokens.ForgetSession(id)
	}
}

func (s *Sessions) forgetSubject(subject string) {
	s.mu.Lock()
	for h, c := range s.cache {
		if c.s.Subject == subject {
			delete(s.cache, h)
		}
	}
	s.mu.Unlock()
	if s.Tokens != nil {
		s.Tokens.ForgetSubject(subject)
	}
}

// revokeTx revokes a session and the API tokens bound to it (invariant 8: a token a stolen
// session minted dies with it), recording ev with how many tokens went.
func (s *Sessions) revokeTx(ctx context.Context, tx SessionTx, ses Session, actor, reason string, now time.Time, ev audit.Event) error {
	ses.RevokedAt, ses.RevokedReason = now, reason
	n, err := tx.RevokeSessionTokens(ctx, ses.ID, now, fmt.Sprintf("its session %s was revoked: %s", ses.ID, reason))
	if err != nil {
		return err
	}
	if ev.Details == nil {
		ev.Details = map[string]any{}
	}
	ev.Details["tokens_revoked"] = n
	if _, err := tx.Append(ctx, ev); err != nil {
		return fmt.Errorf("append to ledger: %w", err)
	}
	// The tokens stay (they are refused by the session's revocation), so a later use is told
	// that the session was revoked and why, not that the token is unknown.
	return tx.UpdateSession(ctx, ses)
}

// Revoke ends a session now: its access and refresh tokens stop working at once.
func (s *Sessions) Revoke(ctx context.Context, id, actor, reason string) error {
	return s.RevokeIf(ctx, id, actor, reason, nil)
}

// RevokeIf is Revoke after check approves the session (check sees it inside the transaction;
// its error is returned as is, e.g. to hide other people's sessions).
func (s *Sessions) RevokeIf(ctx context.Context, id, actor, reason string, check func(Session) error) error {
	now := s.Now()
	defer s.forgetSession(id)
	return s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		ses, err := tx.Session(ctx, id)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(ses); err != nil {
				return err
			}
		}
		if !ses.RevokedAt.IsZero() {
			return nil
		}
		return s.revokeTx(ctx, tx, ses, actor, reason, now, audit.Event{Code: "session.revoke", Class: audit.ClassAuthentication,
			Activity: audit.ActivityRead, ActivityName: "Logoff", Time: now, Actor: actor, User: ses.Subject,
			Message: fmt.Sprintf("%s revoked session %s of %s: %s", actor, id, ses.Subject, reason), Details: map[string]any{"session_id": id, "reason": reason}})
	})
}

// StepUp records a multi-factor authentication in the session now; trusted says it counts
// for approvals (Session.TrustedMFAAt).
func (s *Sessions) StepUp(ctx context.Context, id string, amr []string, trusted bool, ev audit.Event) error {
	now := s.Now()
	defer s.forgetSession(id)
	return s.Store.UpdateSessions(ctx, func(tx SessionTx) error {
		ses, err := tx.Session(ctx, id)
		if err != nil {
			return err
		}
		if !ses.Active(now) {
			return fmt.Errorf("%w: session %s has ended", ErrUnauthenticated, id)
		}
		ses.MFAAt, ses.AuthTime = now, now
		if trusted {
			ses.TrustedMFAAt = now
		}
		ses.AMR = mergeAMR(ses.AMR, amr)
		if _, err := tx.Append(ctx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.UpdateSession(ctx, ses)
	})
}

func mergeAMR(have, add []string) []string {
	out := append([]string(nil), have...)
	for _, a := range add {
		found := false
		for _, h := range out {
			found = found || h == a
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
