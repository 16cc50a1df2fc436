// Package identity says who is calling. For now that is Rampart API tokens: random secrets with
// the prefix "rpt_", stored only as SHA-256 hashes, issued to a subject for a limited time,
// revocable at once. Issuing and revoking a token are ledger entries written in the same
// transaction (invariant 4).
//
// Authentication sits behind the Authenticator interface so that OIDC sessions and workload
// identities can be added beside tokens without touching the API handlers.
package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
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
	// KindService tokens act for a machine client (a gateway, a webhook, CI); they may call
	// check for any subject.
	KindService = "service"
	// KindWorkload is a Kubernetes workload authenticated by its service-account token.
	KindWorkload = "workload"
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
}

// TokenStore persists tokens. Issue and Revoke append the given ledger entry in the same
// transaction as the change.
type TokenStore interface {
	IssueToken(ctx context.Context, t Token, e audit.Event) error
	TokenByHash(ctx context.Context, hash string) (Token, error)
	RevokeToken(ctx context.Context, id string, at time.Time, e audit.Event) error
}

// ErrInvalidToken wraps every reason Issue refuses its input (as opposed to a store failure).
var ErrInvalidToken = errors.New("invalid token request")

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
	TokenID string
	// SessionID is set for people signed in through the identity provider.
	SessionID string
	// AuthTime is the last authentication at the identity provider, MFAAt the last
	// multi-factor one (zero if none); step-up checks use them.
	AuthTime time.Time
	MFAAt    time.Time
	// Groups are the policy groups the identity provider's groups mapped to at sign-in.
	Groups []string
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
	fetched time.Time
}

func (ts *Tokens) ttl() time.Duration {
	if ts.CacheTTL == 0 {
		return DefaultCacheTTL
	}
	return ts.CacheTTL
}

// lookup returns the token for hash, and its user, from the cache or the store.
func (ts *Tokens) lookup(ctx context.Context, hash string, now time.Time) (Token, User, error) {
	ttl := ts.ttl()
	if ttl > 0 {
		ts.mu.Lock()
		c, ok := ts.cache[hash]
		ts.mu.Unlock()
		if ok && now.Sub(c.fetched) < ttl && !now.Before(c.fetched) {
			return c.t, c.u, nil
		}
	}
	t, err := ts.Store.TokenByHash(ctx, hash)
	if err != nil {
		return t, User{}, err
	}
	var u User
	if ts.Users != nil {
		if u, err = ts.Users.UserRecord(ctx, t.Subject); err != nil {
			return t, u, fmt.Errorf("user lookup failed: %w", err)
		}
	}
	if ttl <= 0 {
		return t, u, nil
	}
	ts.mu.Lock()
	if ts.cache == nil || len(ts.cache) >= maxCached {
		ts.cache = map[string]cachedToken{}
	}
	ts.cache[hash] = cachedToken{t: t, u: u, fetched: now}
	ts.mu.Unlock()
	return t, u, nil
}

// ForgetSubject drops a subject's cached tokens (after disabling the user).
func (ts *Tokens) ForgetSubject(subject string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for h, c := range ts.cache {
		if c.t.Subject == subject {
			delete(ts.cache, h)
		}
	}
}

// forget drops a token from the cache.
func (ts *Tokens) forget(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for h, c := range ts.cache {
		if c.t.ID == id {
			delete(ts.cache, h)
		}
	}
}

// MaxTokenTTL bounds every token's life.
const MaxTokenTTL = 90 * 24 * time.Hour

// Issue creates a token for subject and returns its secret, shown once.
func (ts *Tokens) Issue(ctx context.Context, subject, kind, description, actor string, ttl time.Duration) (string, Token, error) {
	if err := policy.ValidateSubject(subject); err != nil {
		return "", Token{}, fmt.Errorf("%w: subject: %v", ErrInvalidToken, err)
	}
	if kind != KindUser && kind != KindService {
		return "", Token{}, fmt.Errorf("%w: token kind must be %q or %q", ErrInvalidToken, KindUser, KindService)
	}
	if ttl <= 0 || ttl > MaxTokenTTL {
		return "", Token{}, fmt.Errorf("%w: token lifetime %s must be between 1s and %s", ErrInvalidToken, ttl, MaxTokenTTL)
	}
	if len(description) > 256 {
		return "", Token{}, fmt.Errorf("%w: description is over 256 bytes", ErrInvalidToken)
	}
	raw, idRaw := make([]byte, 32), make([]byte, 8)
	if _, err := rand.Read(raw); err != nil {
		return "", Token{}, err
	}
	if _, err := rand.Read(idRaw); err != nil {
		return "", Token{}, err
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	now := ts.Now()
	t := Token{ID: "tok_" + hex.EncodeToString(idRaw), Hash: HashToken(secret), Subject: subject, Kind: kind,
		Description: description, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	e := audit.Event{Code: "token.issue", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Time: now, Actor: actor, User: subject,
		Message: fmt.Sprintf("%s token %s issued to %s by %s, valid until %s", kind, t.ID, subject, actor, t.ExpiresAt.UTC().Format(time.RFC3339)),
		Details: map[string]any{"token_id": t.ID, "kind": kind, "description": description, "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339)}}
	if err := ts.Store.IssueToken(ctx, t, e); err != nil {
		return "", Token{}, fmt.Errorf("store token: %w", err)
	}
	return secret, t, nil
}

// Revoke ends a token now.
func (ts *Tokens) Revoke(ctx context.Context, id, actor string) error {
	now := ts.Now()
	defer ts.forget(id)
	e := audit.Event{Code: "token.revoke", Class: audit.ClassAuthentication, Activity: audit.ActivityRead, ActivityName: "Logoff",
		Time: now, Actor: actor, Message: fmt.Sprintf("token %s revoked by %s", id, actor), Details: map[string]any{"token_id": id}}
	return ts.Store.RevokeToken(ctx, id, now, e)
}

// Verify checks a presented secret.
func (ts *Tokens) Verify(ctx context.Context, secret string) (Principal, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 128 {
		return Principal{}, fmt.Errorf("%w: the token is not a Rampart API token (they start with %s)", ErrUnauthenticated, TokenPrefix)
	}
	now := ts.Now()
	t, u, err := ts.lookup(ctx, HashToken(secret), now)
	if errors.Is(err, ErrTokenNotFound) {
		return Principal{}, fmt.Errorf("%w: unknown token; log in again (rampart login)", ErrUnauthenticated)
	} else if err != nil {
		return Principal{}, fmt.Errorf("token lookup failed: %w", err)
	}
	switch {
	case !t.RevokedAt.IsZero():
		return Principal{}, fmt.Errorf("%w: token %s was revoked at %s; log in again", ErrUnauthenticated, t.ID, t.RevokedAt.UTC().Format(time.RFC3339))
	case !now.Before(t.ExpiresAt):
		return Principal{}, fmt.Errorf("%w: token %s expired at %s; log in again", ErrUnauthenticated, t.ID, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if !u.DisabledAt.IsZero() {
		return Principal{}, fmt.Errorf("%w: %s is disabled", ErrUnauthenticated, t.Subject)
	}
	return Principal{Subject: t.Subject, Kind: t.Kind, TokenID: t.ID}, nil
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
