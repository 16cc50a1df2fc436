package identity

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCheckForm(t *testing.T) {
	apiToken, _, err := newToken("alice", KindUser, "", "alice", time.Unix(0, 0), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, secret string
		ok           bool
		says         string // in the error
	}{
		{"api token as minted", apiToken, true, ""},
		{"session token as minted", secret(AccessPrefix), true, ""},
		{"service-account JWT", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", true, ""},
		{"garbage", "garbage", false, "start with rpt_"},
		{"empty", "", false, "empty"},
		{"trailing newline", apiToken + "\n", false, "white space"},
		{"refresh token", secret(RefreshPrefix), false, "refresh token"},
		{"prefix only", "rpt_", false, "16 to"},
		{"too long", "rpt_" + strings.Repeat("a", 200), false, "16 to"},
		{"bad character", "rps_" + strings.Repeat("a", 20) + "!" + strings.Repeat("a", 20), false, "character 25"},
		{"JWT with two parts", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0", false, "2 dot-separated parts"},
		{"JWT with bad header", "eyJ+.eyJ.x", false, "part 1"},
		{"bearer scheme pasted in", "Bearer " + apiToken, false, "start with"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckForm(tc.secret)
			if tc.ok {
				if err != nil {
					t.Fatalf("CheckForm refused a well-formed credential: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMalformedCredential) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("CheckForm(%q) = %v; want ErrMalformedCredential saying %q", tc.secret, err, tc.says)
			}
			if len(tc.secret) > 8 && strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}

// FuzzCheckForm: any text is answered without a panic; what it accepts has one of the forms a
// verifier of Chain takes, and every secret Rampart mints is accepted.
func FuzzCheckForm(f *testing.F) {
	for _, s := range []string{"", "garbage", "rpt_", "rps_" + strings.Repeat("A", 43), "rpr_x", "eyJ.a.b", "eyJhbGciOiJub25lIn0.e30.", "rpt_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckForm(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedCredential) {
				t.Fatalf("CheckForm(%q) = %v, not ErrMalformedCredential", s, err)
			}
			return
		}
		switch {
		case strings.HasPrefix(s, TokenPrefix), strings.HasPrefix(s, AccessPrefix):
			if len(s) > maxSecret {
				t.Fatalf("CheckForm accepted a %d-character token", len(s))
			}
		case strings.HasPrefix(s, "eyJ"):
			if strings.Count(s, ".") != 2 {
				t.Fatalf("CheckForm accepted a JWT without three parts: %q", s)
			}
		default:
			t.Fatalf("CheckForm accepted %q", s)
		}
		if strings.TrimSpace(s) != s {
			t.Fatalf("CheckForm accepted white space around %q", s)
		}
		if m := secret(AccessPrefix); CheckForm(m) != nil {
			t.Fatalf("CheckForm refused a minted session token")
		}
	})
}
