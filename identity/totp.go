package identity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TOTP (RFC 6238): HMAC-SHA-1, six digits, 30-second steps, the parameters every authenticator
// app uses.
const (
	TOTPStep   = 30 * time.Second
	totpDigits = 6
	// totpSkew is how many steps either side of now a code is accepted for (clock drift and the
	// time to type it).
	totpSkew = 1
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret returns 20 random bytes, base32 (what authenticator apps expect).
func NewTOTPSecret() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return b32.EncodeToString(b)
}

// DecodeTOTPSecret accepts a base32 secret in any case, with or without padding, spaces or dashes.
func DecodeTOTPSecret(secret string) ([]byte, error) {
	s := strings.ToUpper(strings.NewReplacer(" ", "", "-", "").Replace(secret))
	key, err := b32.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(key) < 10 {
		return nil, errors.New("a TOTP secret is base32 of at least 10 bytes")
	}
	return key, nil
}

// TOTPStepAt is the RFC 6238 time step that contains t.
func TOTPStepAt(t time.Time) int64 { return t.Unix() / int64(TOTPStep/time.Second) }

// TOTPAt is the code for key at step.
func TOTPAt(key []byte, step int64) string {
	m := hmac.New(sha1.New, key)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(step))
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%0*d", totpDigits, v%1_000_000)
}

// MatchTOTP returns the step at which code is valid for key within the allowed skew around now,
// or false. Comparison is in constant time.
func MatchTOTP(key []byte, code string, now time.Time) (int64, bool) {
	code = strings.TrimSpace(code)
	if len(code) != totpDigits {
		return 0, false
	}
	cur := TOTPStepAt(now)
	found, step := 0, int64(0)
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		if subtle.ConstantTimeCompare([]byte(TOTPAt(key, cur+d)), []byte(code)) == 1 {
			found, step = 1, cur+d
		}
	}
	return step, found == 1
}

// TOTPURI is the otpauth:// URI an authenticator app scans.
func TOTPURI(issuer, account, secret string) string {
	v := url.Values{"secret": {secret}, "issuer": {issuer}, "algorithm": {"SHA1"}, "digits": {"6"}, "period": {"30"}}
	return "otpauth://totp/" + url.PathEscape(issuer+":"+account) + "?" + v.Encode()
}

// Sealer encrypts second-factor secrets at rest with AES-256-GCM; the subject is bound as
// additional data, so a sealed secret copied to another user's row does not open.
type Sealer struct{ aead cipher.AEAD }

// NewSealer takes a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the MFA key must be 32 bytes, got %d", len(key))
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts secret for subject.
func (s *Sealer) Seal(subject, secret string) string {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return "v1." + base64.RawStdEncoding.EncodeToString(s.aead.Seal(nonce, nonce, []byte(secret), []byte(subject)))
}

// Open decrypts a sealed secret of subject.
func (s *Sealer) Open(subject, sealed string) (string, error) {
	raw, ok := strings.CutPrefix(sealed, "v1.")
	b, err := base64.RawStdEncoding.DecodeString(raw)
	if !ok || err != nil || len(b) < s.aead.NonceSize() {
		return "", errors.New("the stored second factor is not in a format this server can read")
	}
	pt, err := s.aead.Open(nil, b[:s.aead.NonceSize()], b[s.aead.NonceSize():], []byte(subject))
	if err != nil {
		return "", errors.New("the stored second factor does not open with this server's MFA key (wrong key, or the row was altered)")
	}
	return string(pt), nil
}
