package identity

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Verifier checks one kind of credential.
type Verifier interface {
	Verify(ctx context.Context, secret string) (Principal, error)
}

// SessionCookie carries a browser's session access token to the web console, and
// RefreshCookie its refresh token (package console). They are never credentials for the API
// (Chain reads only the Authorization header): the console reads them and calls the API with a
// bearer token, so a tool's route (weights, secrets, checks) is never authorised by a cookie a
// browser sends by itself. Over https both are named with the __Host- prefix (CookieName).
const (
	SessionCookie = "rampart_session"
	RefreshCookie = "rampart_refresh"
)

// CookieName is the name a console cookie has: with the __Host- prefix when it is Secure, so
// that no other host (a sibling subdomain) can set or shadow it.
func CookieName(base string, secure bool) string {
	if secure {
		return "__Host-" + base
	}
	return base
}

// SessionCookies are the cookies that carry a signed-in session to the web console: HttpOnly,
// SameSite=Strict, Secure over https, host-only, for the whole site, living as long as the
// session (the access token inside expires sooner; the console refreshes it).
func SessionCookies(iss Issued, secure bool, now time.Time) []*http.Cookie {
	age := int(iss.Session.ExpiresAt.Sub(now) / time.Second)
	if age < 1 {
		age = 1
	}
	mk := func(base, value string) *http.Cookie {
		return &http.Cookie{Name: CookieName(base, secure), Value: value, Path: "/", MaxAge: age, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode}
	}
	return []*http.Cookie{mk(SessionCookie, iss.AccessToken), mk(RefreshCookie, iss.RefreshToken)}
}

// ClearSessionCookies are the cookies that remove SessionCookies from a browser.
func ClearSessionCookies(secure bool) []*http.Cookie {
	var out []*http.Cookie
	for _, base := range []string{SessionCookie, RefreshCookie} {
		out = append(out, &http.Cookie{Name: CookieName(base, secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	}
	return out
}

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

// Authenticate reads "Authorization: Bearer …". Cookies are not read: the console's session
// cookie is a credential for the console's pages only.
func (c *Chain) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Principal{}, fmt.Errorf("%w: no Authorization header; log in with `rampart login` or set RAMPART_TOKEN", ErrUnauthenticated)
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	return c.Verify(r.Context(), strings.TrimSpace(secret))
}
