package signin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
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

// The provider's error text on /callback (which anyone can send a browser to, with the state of
// a sign-in they started) reaches the ledger and the page bounded and with its control and
// bidirectional characters escaped.
func TestProviderErrorTextEscaped(t *testing.T) {
	e, _ := newHostileEnv(t, envOptions{})
	b := e.browser("").noRedirects()
	st := e.startLogin(b, nil)
	hostile := "user \u202edeifirev\u202c\x1b[2K" + strings.Repeat("x", 10000)
	r := b.fetch(e.srv.URL + "/callback?" + url.Values{"error": {"access_denied\u2066"}, "error_description": {hostile}, "state": {st.state}}.Encode())
	if r.status != http.StatusForbidden || strings.ContainsAny(r.body, "\u202e\u202c\u2066\x1b") || !strings.Contains(r.body, `user \u202edeifirev\u202c\x1b[2K`) {
		t.Fatalf("page: %d %q", r.status, r.body)
	}
	entries, err := e.store.Entries(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, en := range entries {
		var ev struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(en.Data, &ev)
		if strings.Contains(ev.Message, "answered access_denied") {
			found = true
			if strings.ContainsAny(ev.Message, "\u202e\u202c\u2066\x1b") || len(ev.Message) > 1024 {
				t.Fatalf("ledger message: %q", ev.Message)
			}
		}
	}
	if !found {
		t.Fatal("the refusal was not recorded")
	}
}
