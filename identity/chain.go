package identity

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Verifier checks one kind of credential.
type Verifier interface {
	Verify(ctx context.Context, secret string) (Principal, error)
}

// SessionCookie carries a browser's session access token (for GET requests only: changes need
// a bearer token, so a cross-site form cannot act with the cookie).
const SessionCookie = "rampart_session"

// Chain authenticates every credential Rampart accepts, chosen by its form: API tokens (rpt_),
// session access tokens (rps_) and, when configured, Kubernetes service-account tokens (JWTs).
type Chain struct {
	Tokens    *Tokens
	Sessions  *Sessions
	Workloads Verifier
}

// Verify checks a bearer credential.
func (c *Chain) Verify(ctx context.Context, secret string) (Principal, error) {
	switch {
	case strings.HasPrefix(secret, TokenPrefix) && c.Tokens != nil:
		return c.Tokens.Verify(ctx, secret)
	case strings.HasPrefix(secret, AccessPrefix) && c.Sessions != nil:
		return c.Sessions.Verify(ctx, secret)
	case strings.HasPrefix(secret, "eyJ") && c.Workloads != nil:
		return c.Workloads.Verify(ctx, secret)
	case strings.HasPrefix(secret, RefreshPrefix):
		return Principal{}, fmt.Errorf("%w: a refresh token cannot authenticate a request; exchange it at /v1/auth/token", ErrUnauthenticated)
	}
	return Principal{}, fmt.Errorf("%w: the credential is not one Rampart accepts (API token rpt_…, session token rps_…, or a service-account token)", ErrUnauthenticated)
}

// Authenticate reads "Authorization: Bearer …", or, for GET and HEAD requests, the session cookie.
func (c *Chain) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if ck, err := r.Cookie(SessionCookie); err == nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			return c.Verify(r.Context(), ck.Value)
		}
		return Principal{}, fmt.Errorf("%w: no Authorization header; log in with `rampart login` or set RAMPART_TOKEN", ErrUnauthenticated)
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	return c.Verify(r.Context(), strings.TrimSpace(secret))
}
