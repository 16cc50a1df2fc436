package identity

import (
	"strings"
	"testing"
	"time"
)

// RFC 6238 appendix B, SHA-1 (the test vectors are 8 digits; we compare the low 6).
func TestTOTPVectors(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, c := range []struct {
		unix int64
		want string
	}{{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"}, {1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"}} {
		got := TOTPAt(key, c.unix/30)
		if got != c.want[2:] {
			t.Errorf("t=%d: %s, want %s", c.unix, got, c.want[2:])
		}
	}
}

func TestMatchTOTPSkew(t *testing.T) {
	key, err := DecodeTOTPSecret(NewTOTPSecret())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_015, 0)
	cur := TOTPStepAt(now)
	for d, ok := range map[int64]bool{-2: false, -1: true, 0: true, 1: true, 2: false} {
		step, got := MatchTOTP(key, TOTPAt(key, cur+d), now)
		if got != ok || (ok && step != cur+d) {
			t.Errorf("offset %d: match %v step %d", d, got, step)
		}
	}
	for _, bad := range []string{"", "12345", "1234567", "abcdef"} {
		if _, ok := MatchTOTP(key, bad, now); ok {
			t.Errorf("%q matched", bad)
		}
	}
}

func TestSealer(t *testing.T) {
	s, err := NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	sealed := s.Seal("alice", "SECRET")
	if strings.Contains(sealed, "SECRET") {
		t.Fatal("secret in the clear")
	}
	if got, err := s.Open("alice", sealed); err != nil || got != "SECRET" {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.Open("mallory", sealed); err == nil {
		t.Fatal("alice's secret opened as mallory's")
	}
	other, _ := NewSealer([]byte(strings.Repeat("k", 32)))
	if _, err := other.Open("alice", sealed); err == nil {
		t.Fatal("opened with another key")
	}
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte key was accepted")
	}
	if _, err := DecodeTOTPSecret("short"); err == nil {
		t.Fatal("a short secret was accepted")
	}
}
