package secrets

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckNameRefusesPathTricks(t *testing.T) {
	for _, c := range []struct{ name, why string }{
		{"", "empty"},
		{"../etc/passwd", `".." segment`},
		{"ci/../prod/key", `".." segment`},
		{"ci/./key", `"." segment`},
		{"ci//key", "empty segment"},
		{"/ci/key", "starts with '/'"},
		{"ci/key/", "ends with '/'"},
		{`ci\key`, "backslash"},
		{"ci/key\x00", "control character"},
		{"ci/key\n", "control character"},
		{"ci/k\x7fey", "control character"},
		{"ci/Deploy", "uppercase"},
		{"ci/dеploy", "non-ASCII"}, // Cyrillic е
		{"ci/deploy\u200b", "non-ASCII"},
		{"ci/\xffkey", "not valid UTF-8"},
		{"ci/-key", "segment"},
		{"ci/key name", "segment"},
		{strings.Repeat("a", MaxNameLen+1), "limit"},
	} {
		err := CheckName(c.name)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.why) {
			t.Errorf("CheckName(%q) = %v; want ErrInvalid saying %q", c.name, err, c.why)
		}
	}
	for _, ok := range []string{"a", "ci/deploy-key", "research/wandb_key.v2", "team:ml/hf-token"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
}

// FuzzCheckName: whatever the input, an accepted name is one resource segment path with no
// trick in it, and the parser never panics.
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"ci/deploy-key", "../x", "a//b", "/a", "a\x00", "а", "a/./b", "A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckName(s) != nil {
			return
		}
		if strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") || strings.Contains(s, `\`) {
			t.Fatalf("accepted %q", s)
		}
		for _, seg := range strings.Split(s, "/") {
			if seg == "." || seg == ".." || seg == "" {
				t.Fatalf("accepted %q", s)
			}
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x21 || c >= 0x7f || (c >= 'A' && c <= 'Z') {
				t.Fatalf("accepted %q with byte %#x", s, c)
			}
		}
	})
}

// FuzzCheckLeaseID: an accepted lease id is sl_ and 16 base32 characters, nothing else.
func FuzzCheckLeaseID(f *testing.F) {
	for _, s := range []string{"sl_abcdefghijklmnop", "sl_", "sl_ABCDEFGHIJKLMNOP", "sl_abcdefghijklmno1", "../sl_x"} {
		f.Add(s)
	}
	f.Add(newLeaseID())
	f.Fuzz(func(t *testing.T, s string) {
		if CheckLeaseID(s) != nil {
			return
		}
		if len(s) != 19 || !strings.HasPrefix(s, LeasePrefix) || strings.Trim(s[3:], "abcdefghijklmnopqrstuvwxyz234567") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestNewLeaseIDChecks(t *testing.T) {
	for range 100 {
		if id := newLeaseID(); CheckLeaseID(id) != nil {
			t.Fatalf("a minted lease id is refused: %q", id)
		}
	}
}
