package signin_test

import (
	"net/http"
	"strings"
	"testing"
)

// The sign-in endpoints that read JSON refuse what encoding/json would accept by picking or
// rewriting (invariant 7), as the API's decoder does: a duplicate "otp" (which copy counts
// depends on the parser), a bidirectional control, invalid UTF-8.
func TestOTPBodiesAreStrict(t *testing.T) {
	e := newEnv(t, envOptions{stepUp: "totp"})
	b := e.browser("")
	b.signInAtProvider(b.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	tok := b.sessionCookie()
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/mfa/totp/confirm", `{"otp":"123456","otp":"654321"}`, `field "otp" appears twice`},
		{"/v1/auth/step-up", `{"otp":"123456","otp":"654321"}`, `field "otp" appears twice`},
		{"/v1/auth/step-up", `{"otp":"\u202e654321"}`, `field "otp" contains U+202E`},
		{"/v1/auth/step-up", "{\"otp\":\"12345\xff\"}", `field "otp" is not valid UTF-8`},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer "+tok)
		st, out := e.do(req)
		if desc, _ := out["error_description"].(string); st != http.StatusBadRequest || out["error"] != "invalid_request" || !strings.Contains(desc, tc.want) {
			t.Errorf("POST %s %s: %d %v, want 400 invalid_request saying %q", tc.path, tc.body, st, out, tc.want)
		}
	}
}
