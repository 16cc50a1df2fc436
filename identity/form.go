package identity

import (
	"errors"
	"fmt"
	"strings"
)

// ErrMalformedCredential means a string cannot be a credential Rampart accepts, whatever the
// server's records say: a mistake the person holding it can see and fix without asking anyone.
var ErrMalformedCredential = errors.New("not a Rampart credential")

// maxSecret is the longest credential any verifier in Chain looks at (service-account tokens
// aside, which are JWTs).
const maxSecret = 128

// CheckForm says whether secret has the form of a bearer credential Chain accepts: an API token
// (rpt_…), a session access token (rps_…) or a JWT (a Kubernetes service-account token). It
// looks at nothing but the text, so a well-formed credential may still be unknown, expired or
// revoked; a malformed one is refused by every server. The error wraps ErrMalformedCredential
// and says what the string looks like instead (never the string itself: it may be a secret).
func CheckForm(secret string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrMalformedCredential, fmt.Sprintf(format, args...))
	}
	if secret == "" {
		return bad("it is empty")
	}
	if strings.TrimSpace(secret) != secret {
		return bad("it starts or ends with white space (a line break copied with it?)")
	}
	switch {
	case strings.HasPrefix(secret, RefreshPrefix):
		return bad("it is a refresh token (%s…), which only the sign-in endpoint takes; use the access token (%s…)", RefreshPrefix, AccessPrefix)
	case strings.HasPrefix(secret, TokenPrefix), strings.HasPrefix(secret, AccessPrefix):
		body := secret[len(TokenPrefix):]
		if len(secret) > maxSecret || len(body) < 16 {
			return bad("a %s… token has 16 to %d characters after its prefix, this one %d", secret[:len(TokenPrefix)], maxSecret-len(TokenPrefix), len(body))
		}
		if i := strings.IndexFunc(body, func(r rune) bool { return !isBase64URL(r) }); i >= 0 {
			return bad("character %d is not one a %s… token holds (letters, digits, '-' and '_')", len(TokenPrefix)+i+1, secret[:len(TokenPrefix)])
		}
		return nil
	case strings.HasPrefix(secret, "eyJ"):
		parts := strings.Split(secret, ".")
		if len(parts) != 3 {
			return bad("it starts like a JWT but has %d dot-separated parts, not 3", len(parts))
		}
		for i, p := range parts[:2] {
			if p == "" || strings.IndexFunc(p, func(r rune) bool { return !isBase64URL(r) }) >= 0 {
				return bad("part %d of the JWT is not base64url text", i+1)
			}
		}
		return nil
	}
	return bad("Rampart credentials start with %s (API token), %s (session access token) or eyJ (a service-account token)", TokenPrefix, AccessPrefix)
}

func isBase64URL(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}
