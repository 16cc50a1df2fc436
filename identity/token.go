// Package identity says who is calling: Rampart API tokens (random secrets with the prefix
// "rpt_", stored only as SHA-256 hashes), sessions of people signed in through the identity
// provider ("rps_" access tokens, "rpr_" refresh tokens), and, through Chain, workload
// identities. Issuing, revoking and disabling are ledger entries written in the same transaction
// as the change (invariant 4).
//
// It upholds invariant 8 (no one acts as another person): a token a person mints is theirs and
// is bound to the session that minted it — refused once that session is revoked or ends, never
// longer-lived than it unless a fresh multi-factor authentication allowed it; service tokens act
// only for service: subjects; disabling a person revokes every session and token of theirs, for
// good. It fails closed: a credential whose session, person or token record cannot be read is
// refused (the error is not ErrUnauthenticated, and callers answer 503).
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// TokenPrefix starts every Rampart API token, so secret scanners can find leaked ones.
const TokenPrefix = "rpt_"

// Token kinds.
const (
	// KindUser tokens act for a person.
	KindUser = "user"
	// KindService tokens act for a machine client (a gateway, a webhook, CI), always a
	// service: subject; they may call check for any subject, and never approve.
	KindService = "service"
	// KindWorkload is a Kubernetes workload authenticated by its service-account token.
	KindWorkload = "workload"
	// KindPipeline tokens act for a CI pipeline (ci:<issuer>/<repository>/<workflow>), issued
	// in exchange for its CI system's ID token (package ci), for at most 15 minutes.
	KindPipeline = "pipeline"
)

// Token is a stored API token. The secret itself is never stored.
type Token struct {
	ID          string    `json:"id"`
	Hash        string    `json:"-"`
	Subject     string    `json:"subject"`
	Kind        string    `json:"kind"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
	// RevokedReason says why: revoked by someone, its session ended, its person was disabled.
	RevokedReason string `json:"revoked_reason,omitempty"`
	// IssuedBy is who issued it: the person themselves, an administrator (service tokens), or
	// "operator" (rampart admin token, straight into the store).
	IssuedBy string `json:"issued_by,omitempty"`
	// SessionID is the sign-in session of the person who minted the token ("" when none did).
	SessionID string `json:"session_id,omitempty"`
	// SessionBound means the token speaks for SessionID: it never outlives the session, it is
	// refused once the session is revoked or has ended, and, like the session, it may approve.
	SessionBound bool `json:"session_bound,omitempty"`
	// StepUpAt is the multi-factor authentication that let a token outlive its session (zero
	// for every other token).
	StepUpAt time.Time `json:"step_up_at,omitzero"`
}

// TokenStore persists tokens. Issue and Revoke append the given ledger entry in the same
// transaction as the change.
type TokenStore interface {
	// IssueToken stores a new token and its ledger entry in one transaction. A user token is
	// refused with ErrTooManyTokens when its person already holds MaxActiveTokens unrevoked,
	// unexpired ones (checked in the same transaction, so racing mints cannot pass it).
	IssueToken(ctx context.Context, t Token, e audit.Event) error
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// TokenByID returns a token by its id (ErrTokenNotFound if there is none).
	TokenByID(ctx context.Context, id string) (Token, error)
	// RevokeToken revokes an unrevoked token (ErrTokenNotFound if there is none).
	RevokeToken(ctx context.Context, id string, at time.Time, reason string, e audit.Event) error
	// ListTokens lists a subject's tokens ("" for everyone's), newest first.
	ListTokens(ctx context.Context, subject string) ([]Token, error)
}

// SessionRecords is what a TokenStore that also keeps sessions offers: session-bound tokens
// are checked against their session. A store without it refuses every session-bound token.
type SessionRecords interface {
	SessionRecord(ctx context.Context, id string) (Session, error)
}

// ErrInvalidToken wraps every reason Issue refuses its input (as opposed to a store failure).
var ErrInvalidToken = errors.New("invalid token request")

// MaxActiveTokens is how many unrevoked, unexpired API tokens one person may hold at once
// (invariant 11: each is a row and a ledger entry, and minting one needs only a session).
const MaxActiveTokens = 20

// ErrTooManyTokens refuses a token to a person who holds MaxActiveTokens already (429).
var ErrTooManyTokens = errors.New("too many API tokens")

// ErrTokenNotFound is returned by stores for an unknown token.
var ErrTokenNotFound = errors.New("token not found")

// HashToken returns the stored form of a token secret.
func HashToken(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// Principal is an authenticated caller.
type Principal struct {
	Subject string
	Kind    string
	// TokenID identifies the credential: the session id for a session access token, the
	// token id for an API token, empty for a workload.
	TokenID string
	// SessionID is the person's own sign-in session the credential speaks for: set for
	// session access tokens and session-bound API tokens, empty for every other credential.
	// Approvals need it (invariant 8).
	SessionID string
	// AuthTime is the last authentication at the identity provider, MFAAt the last
	// multi-factor one (zero if none); step-up checks use them.
	AuthTime time.Time
	MFAAt    time.Time
	// TrustedMFAAt is the last multi-factor authentication with a factor that counts for
	// approvals: the identity provider's, or a Rampart factor held for a day (or enrolled
	// under the provider's multi-factor authentication). Zero if none.
	TrustedMFAAt time.Time
	// IdPMFAAt is the last multi-factor authentication the identity provider reported.
	IdPMFAAt time.Time
	// Groups are the policy groups the identity provider's groups mapped to at sign-in.
	Groups []string
	// IP is the address the request came from (through trusted proxies), set by the API for
	// each request; enforcement points record it (and its network) with what a workload reads.
	IP string
	// Risk is the risk level the session was signed in at (none, low, medium, high), for
	// session credentials; empty for every other credential. Approvals record it (detection
	// watches approvals made from risky sessions).
	Risk string
}

// Authenticator identifies the caller of an HTTP request.
type Authenticator interface {
	// Authenticate returns the caller, ErrUnauthenticated (with a reason) when the request
	// carries no valid credential, or another error when identity could not be established
	// (the store is down), which callers must treat as a refusal (invariant 6).
	Authenticate(r *http.Request) (Principal, error)
}

// ErrUnauthenticated means the request carries no valid credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Tokens issues, verifies and revokes API tokens.
//
// Verified tokens are remembered for CacheTTL so that the hot path (a check per request) does
// not query the store every time. A revocation through this Tokens takes effect at once; one
// made on another replica within CacheTTL. Unknown tokens are never cached.
type Tokens struct {
	Store TokenStore
	Now   func() time.Time
	// Users, if set, refuses tokens of users an administrator disabled.
	Users interface {
		UserRecord(ctx context.Context, subject string) (User, error)
	}
	// CacheTTL is how long a verified token is trusted without asking the store again;
	// DefaultCacheTTL if zero, no caching if negative.
	CacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]cachedToken // by hash
}

// DefaultCacheTTL bounds how stale a token verification may be on another replica.
const DefaultCacheTTL = time.Second

// maxCached bounds the cache; when full it is emptied rather than tracked.
const maxCached = 10000

type cachedToken struct {
	t       Token
	u       User
	ses     Session // the token's session, when it is session-bound
	fetched time.Time
}

func (ts *Tokens) ttl() time.Duration {
	if ts.CacheTTL == 0 {
		return DefaultCacheTTL
	}
	return ts.CacheTTL
}

// lookup returns the token for hash, its user and (if bound) its session, from the cache or
// the store.
func (ts *Tokens) lookup(ctx context.Context, hash string, now time.Time) (cachedToken, error) {
	ttl := ts.ttl()
	if ttl > 0 {
		ts.mu.Lock()
		c, ok := ts.cache[hash]
		ts.mu.Unlock()
		if ok && now.Sub(c.fetched) < ttl && !now.Before(c.fetched) {
			return c, nil
		}
	}
	t, err := ts.Store.TokenByHash(ctx, hash)
	if err != nil {
		return cachedToken{}, err
	}
	c := cachedToken{t: t, fetched: now}
	if ts.Users != nil {
		if c.u, err = ts.Users.UserRecord(ctx, t.Subject); err != nil {
			return c, fmt.Errorf("user lookup failed: %w", err)
		}
	}
	if t.SessionBound {
		sr, ok := ts.Store.(SessionRecords)
		if !ok {
			return c, fmt.Errorf("token %s is bound to session %s, and this token store keeps no sessions to check it against", t.ID, t.SessionID)
		}
		c.ses, err = sr.SessionRecord(ctx, t.SessionID)
		if err != nil && !errors.Is(err, ErrSessionNotFound) {
			return c, fmt.Errorf("session lookup failed: %w", err)
		}
	}
	if ttl <= 0 {
		return c, nil
	}
	ts.mu.Lock()
	if ts.cache == nil || len(ts.cache) >= maxCached {
		ts.cache = map[string]cachedToken{}
	}
	ts.cache[hash] = c
	ts.mu.Unlock()
	return c, nil
}

// ForgetSubject drops a subject's cached tokens (after disabling the user).
func (ts *Tokens) ForgetSubject(subject string) {
	ts.forgetIf(func(c cachedToken) bool { return c.t.Subject == subject })
}

// ForgetSession drops the cached tokens bound to a session (after revoking it).
func (ts *Tokens) ForgetSession(id string) {
	ts.forgetIf(func(c cachedToken) bool { return c.t.SessionID == id })
}

// forget drops a token from the cache.
func (ts *Tokens) forget(id string) {
	ts.forgetIf(func(c cachedToken) bool { return c.t.ID == id })
}

func (ts *Tokens) forgetIf(match func(cachedToken) bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for h, c := range ts.cache {
		if match(c) {
			delete(ts.cache, h)
		}
	}
}

// Verify checks a presented secret.
func (ts *Tokens) Verify(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 128 {
		return Principal{}, fmt.Errorf("%w: the token is not a Rampart API token (they start with %s)", ErrUnauthenticated, TokenPrefix)
	}
	now := ts.Now()
	c, err := ts.lookup(ctx, HashToken(secret), now)
	if errors.Is(err, ErrTokenNotFound) {
		return Principal{}, fmt.Errorf("%w: unknown token; log in again (rampart login)", ErrUnauthenticated)
	} else if err != nil {
		return Principal{}, fmt.Errorf("token lookup failed: %w", err)
	}
	t, ses := c.t, c.ses
	switch {
	case !t.RevokedAt.IsZero():
		return Principal{}, fmt.Errorf("%w: token %s was revoked at %s (%s); log in again", ErrUnauthenticated, t.ID, t.RevokedAt.UTC().Format(time.RFC3339), orDash(t.RevokedReason))
	case !now.Before(t.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: token %s expired at %s; log in again", ErrUnauthenticated, t.ID, t.ExpiresAt.UTC().Format(time.RFC3339))
	case !c.u.DisabledAt.IsZero():
		return Principal{}, fmt.Errorf("%w: %s is disabled", ErrUnauthenticated, t.Subject)
	case (t.Kind == KindPipeline) != (policy.SubjectKind(t.Subject) == policy.KindPipeline):
		return Principal{}, fmt.Errorf("%w: token %s is a %s token for %s; pipeline tokens act only for ci: subjects", ErrUnauthenticated, t.ID, t.Kind, t.Subject)
	case (t.Kind == KindService) != (policy.SubjectKind(t.Subject) == policy.KindService):
		// Tokens issued before service tokens were tied to service: subjects; one that acts
		// for a person with a machine's kind (or the reverse) is not honoured.
		return Principal{}, fmt.Errorf("%w: token %s is a %s token for %s; service tokens act only for service: subjects and user tokens only for people: revoke it and issue a proper one", ErrUnauthenticated, t.ID, t.Kind, t.Subject)
	}
	p := Principal{Subject: t.Subject, Kind: t.Kind, TokenID: t.ID}
	if !t.SessionBound {
		return p, nil
	}
	switch {
	case ses.ID == "":
		return Principal{}, fmt.Errorf("%w: token %s was minted by session %s, which no longer exists; sign in again and mint a new one", ErrUnauthenticated, t.ID, t.SessionID)
	case ses.Subject != t.Subject:
		return Principal{}, fmt.Errorf("%w: token %s is bound to a session of another person", ErrUnauthenticated, t.ID)
	case !ses.RevokedAt.IsZero():
		return Principal{}, fmt.Errorf("%w: token %s was minted by session %s, which was revoked (%s); sign in again and mint a new one", ErrUnauthenticated, t.ID, ses.ID, orDash(ses.RevokedReason))
	case !now.Before(ses.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: token %s ended with its session %s at %s; sign in again", ErrUnauthenticated, t.ID, ses.ID, ses.ExpiresAt.UTC().Format(time.RFC3339))
	}
	p.SessionID, p.AuthTime, p.MFAAt, p.TrustedMFAAt, p.IdPMFAAt, p.Groups, p.Risk = ses.ID, ses.AuthTime, ses.MFAAt, ses.TrustedMFAAt, ses.IdPMFAAt, ses.Groups, ses.Risk
	return p, nil
}

func orDash(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// Authenticate reads "Authorization: Bearer rpt_…".
func (ts *Tokens) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, fmt.Errorf("%w: no Authorization header; log in with `rampart login` or set RAMPART_TOKEN", ErrUnauthenticated)
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	return ts.Verify(r.Context(), strings.TrimSpace(secret))
}
