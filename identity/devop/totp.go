package devop

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// totpStep is the RFC 6238 time step.
const totpStep = 30 * time.Second

// TOTPCode returns the RFC 6238 one-time code (HMAC-SHA-1, 6 digits, 30-second step) for the
// base32 secret at time t, as an authenticator app would show it. The secret may be lower case,
// unpadded and grouped with spaces. Tests and the login form use it.
func TOTPCode(secretBase32 string, t time.Time) (string, error) {
	key, err := decodeTOTPSecret(secretBase32)
	if err != nil {
		return "", err
	}
	return totpAt(key, t.Unix()/int64(totpStep/time.Second)), nil
}

func decodeTOTPSecret(secret string) ([]byte, error) {
	s := strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(secret))
	s = strings.TrimRight(s, "=")
	if s == "" {
		return nil, errors.New("devop: TOTP secret is empty")
	}
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("devop: TOTP secret is not base32 (RFC 4648): %w", err)
	}
	return key, nil
}

func totpAt(key []byte, counter int64) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(counter))
	mac := hmac.New(sha1.New, key)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f // dynamic truncation, RFC 4226 section 5.3
	bin := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", bin%1_000_000)
}

// verifyTOTP accepts the code for t and for one step either side, to forgive clock drift and a
// code typed as it changed. It does not remember used codes: a test may sign in twice with the
// same code, and Rampart scores risk itself.
func verifyTOTP(secret, code string, t time.Time) bool {
	key, err := decodeTOTPSecret(secret)
	if err != nil || len(code) != 6 {
		return false
	}
	counter := t.Unix() / int64(totpStep/time.Second)
	ok := 0
	for d := int64(-1); d <= 1; d++ {
		ok |= subtle.ConstantTimeCompare([]byte(totpAt(key, counter+d)), []byte(code))
	}
	return ok == 1
}
