package devop

import (
	"fmt"
	"time"

	"rampart.dev/rampart/identity"
)

// TOTPCode returns the RFC 6238 one-time code (HMAC-SHA-1, 6 digits, 30-second step) for the
// base32 secret at time t, as an authenticator app would show it. The secret may be lower case,
// unpadded and grouped with spaces. Tests and the login form use it.
func TOTPCode(secretBase32 string, t time.Time) (string, error) {
	key, err := decodeTOTPSecret(secretBase32)
	if err != nil {
		return "", err
	}
	return identity.TOTPAt(key, identity.TOTPStepAt(t)), nil
}

func decodeTOTPSecret(secret string) ([]byte, error) {
	key, err := identity.DecodeTOTPSecret(secret)
	if err != nil {
		return nil, fmt.Errorf("devop: TOTP secret: %w", err)
	}
	return key, nil
}

// verifyTOTP accepts the code for t and for one step either side, to forgive clock drift and a
// code typed as it changed. It does not remember used codes: a test may sign in twice with the
// same code, and Rampart scores risk itself.
func verifyTOTP(secret, code string, t time.Time) bool {
	key, err := decodeTOTPSecret(secret)
	if err != nil {
		return false
	}
	_, ok := identity.MatchTOTP(key, code, t)
	return ok
}
