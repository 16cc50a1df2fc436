package signin_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
)

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// A sign-in from an anonymising service is medium risk: Rampart sends the person back to the
// provider with max_age=0 and acr_values=mfa, and admits them only when the new ID token reports
// a fresh multi-factor authentication.
func TestRiskyBrowserSignInStepsUpAtProvider(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(anonymousIP)
	var authorize []*url.URL
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasSuffix(req.URL.Path, "/authorize") {
			authorize = append(authorize, req.URL)
		}
		return nil
	}
	first := b.signInAtProvider(b.get(e.srv.URL+"/login"), "alice", "alice-pw", "")
	if len(authorize) != 2 {
		t.Fatalf("want a second trip to the provider, saw %d authorize requests; page %d %s", len(authorize), first.status, first.body)
	}
	q := authorize[1].Query()
	if q.Get("max_age") != "0" || q.Get("acr_values") != "mfa" || q.Get("prompt") != "login" {
		t.Fatalf("step-up request: %v", q)
	}
	if b.sessionCookie() != "" {
		t.Fatal("a session was opened before the second factor")
	}
	done := b.signInAtProvider(first, "alice", "alice-pw", totp(t, time.Now()))
	if done.status != 200 || !strings.Contains(done.body, "Signed in to Rampart as alice") {
		t.Fatalf("after step-up: %d %s", done.status, done.body)
	}
	p, err := e.auth.Verify(context.Background(), b.sessionCookie())
	if err != nil || p.MFAAt.IsZero() {
		t.Fatalf("session after step-up: %+v %v", p, err)
	}
	codes := e.codes()
	if countOf(codes, "signin.step_up_required") != 1 || countOf(codes, "signin.success") != 1 {
		t.Fatalf("ledger: %v", codes)
	}
}

// A sign-in from a known-bad address is high risk: refused, nothing opened, a High entry.
func TestHighRiskSignInBlocked(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser(badIP)
	done := b.signInAtProvider(b.get(e.srv.URL+"/login"), "alice", "alice-pw", totp(t, time.Now()))
	if done.status != http.StatusForbidden || !strings.Contains(done.body, "too risky") {
		t.Fatalf("%d %s", done.status, done.body)
	}
	if b.sessionCookie() != "" {
		t.Fatal("session cookie set")
	}
	if s, _ := e.store.ListSessions(context.Background(), "alice"); len(s) != 0 {
		t.Fatalf("sessions: %v", s)
	}
	entries, _ := e.store.Entries(context.Background(), 0, 100)
	last := string(entries[len(entries)-1].Data)
	for _, want := range []string{`"event_code":"signin.refused"`, `"severity":"High"`, `"status":"Failure"`, `"bad_ip"`, badIP} {
		if !strings.Contains(last, want) {
			t.Errorf("refusal entry lacks %s:\n%s", want, last)
		}
	}
}

// Rampart's own TOTP factor: enrolment needs a fresh session, a risky sign-in asks for a code,
// and a code works once.
func TestTOTPStepUp(t *testing.T) {
	e := newEnv(t, envOptions{stepUp: "totp"})
	b := e.browser("")
	b.signInAtProvider(b.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	tok := b.sessionCookie()
	call := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		return e.do(req)
	}
	// frank's provider session was password-only: an administrator allows the enrolment.
	if _, err := e.sessions.AllowMFAEnrolment(context.Background(), "frank", "erin"); err != nil {
		t.Fatal(err)
	}
	st, enr := call("/v1/mfa/totp", "")
	if st != 200 || !strings.HasPrefix(enr["otpauth_uri"].(string), "otpauth://totp/") {
		t.Fatalf("enrol: %d %v", st, enr)
	}
	key, err := identity.DecodeTOTPSecret(enr["secret"].(string))
	if err != nil {
		t.Fatal(err)
	}
	code := func(at time.Time) string { return identity.TOTPAt(key, identity.TOTPStepAt(at)) }
	if st, out := call("/v1/mfa/totp/confirm", `{"otp":"000000"}`); st != 400 {
		t.Fatalf("wrong confirmation code: %d %v", st, out)
	}
	if st, out := call("/v1/mfa/totp/confirm", `{"otp":"`+code(time.Now())+`"}`); st != 200 {
		t.Fatalf("confirm: %d %v", st, out)
	}
	if st, _ := call("/v1/mfa/totp", ""); st != http.StatusForbidden {
		t.Fatalf("a second enrolment without a code of the confirmed factor: %d", st)
	}

	// From an anonymising service frank gets Rampart's form, not a session.
	risky := e.browser(anonymousIP)
	form := risky.signInAtProvider(risky.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	flow := hiddenFlow.FindStringSubmatch(form.body)
	if flow == nil || risky.sessionCookie() != "" {
		t.Fatalf("want the second-factor form: %d %s", form.status, form.body)
	}
	// The code used to confirm is spent; the next one works once.
	if p := risky.postForm("/login/mfa", url.Values{"flow": {flow[1]}, "otp": {code(time.Now())}}); p.status != http.StatusForbidden || !strings.Contains(p.body, "already used") {
		t.Fatalf("reused code: %d %s", p.status, p.body)
	}
	// The flow was spent by the failed attempt: start again (the provider remembers frank).
	form = risky.get(e.srv.URL + "/login")
	flow = hiddenFlow.FindStringSubmatch(form.body)
	next := code(time.Now().Add(identity.TOTPStep))
	if p := risky.postForm("/login/mfa", url.Values{"flow": {flow[1]}, "otp": {next}}); p.status != 200 || !strings.Contains(p.body, "Signed in") {
		t.Fatalf("good code: %d %s", p.status, p.body)
	}
	p, err := e.auth.Verify(context.Background(), risky.sessionCookie())
	if err != nil || p.MFAAt.IsZero() {
		t.Fatalf("session: %+v %v", p, err)
	}
	// A cross-site post of the form is refused.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/login/mfa", strings.NewReader("flow=x&otp=1"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site post: %v %v", resp, err)
	}

	// Stepping up an existing session with a code.
	if st, out := call("/v1/auth/step-up", `{"otp":"`+next+`"}`); st != http.StatusForbidden {
		t.Fatalf("step-up with a spent code: %d %v", st, out)
	}
	if st, out := call("/v1/auth/step-up", `{"otp":"`+code(time.Now().Add(-identity.TOTPStep))+`"}`); st != http.StatusForbidden {
		t.Fatalf("step-up with an older code: %d %v", st, out)
	}
}

// cliSignIn signs frank in through the loopback flow and returns the token response.
func cliSignIn(t *testing.T, e *env) map[string]any {
	t.Helper()
	l := newLoopback(t)
	verifier := strings.Repeat("z", 43)
	b := e.browser("")
	q := url.Values{"redirect_uri": {l.redirectURI()}, "state": {"s"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
	b.signInAtProvider(b.get(e.srv.URL+"/login?"+q.Encode()), "frank", "frank-pw", "")
	st, out := e.tokenCall("", url.Values{"grant_type": {"authorization_code"}, "code": {l.query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {l.redirectURI()}})
	if st != 200 {
		t.Fatalf("sign-in: %d %v", st, out)
	}
	return out
}

// Refresh rotates; a spent refresh token revokes the session; a refresh from another device and
// network is a token replay: refused and the session ended.
func TestRefreshRotationAndReplay(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	out := cliSignIn(t, e)
	first := out["refresh_token"].(string)
	st, out2 := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}})
	if st != 200 || out2["refresh_token"] == first {
		t.Fatalf("refresh: %d %v", st, out2)
	}
	if st, out := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first}}); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %v", st, out)
	}
	if _, err := e.auth.Verify(ctx, out2["access_token"].(string)); err == nil {
		t.Fatal("the session survived a refresh-token replay")
	}

	// A stolen refresh token used from elsewhere.
	out = cliSignIn(t, e)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out["refresh_token"].(string)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "curl/8")
	req.Header.Set(signin.DeviceHeader, "attacker-box")
	req.Header.Set("X-Forwarded-For", "192.0.2.200")
	st, res := e.do(req)
	if st != http.StatusForbidden || !strings.Contains(res["error_description"].(string), "token_replay") {
		t.Fatalf("replayed refresh from elsewhere: %d %v", st, res)
	}
	if _, err := e.auth.Verify(ctx, out["access_token"].(string)); err == nil {
		t.Fatal("the session survived a high-risk refresh")
	}
}

// A disabled person cannot sign in, and their open session stops working at once.
func TestDisabledUserRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	out := cliSignIn(t, e)
	tok := out["access_token"].(string)
	if _, err := e.auth.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := e.sessions.SetDisabled(ctx, "frank", "erin", true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.auth.Verify(ctx, tok); err == nil {
		t.Fatal("a disabled user's session still works")
	}
	b := e.browser("")
	done := b.signInAtProvider(b.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	if done.status != http.StatusForbidden || !strings.Contains(done.body, "disabled") {
		t.Fatalf("disabled sign-in: %d %s", done.status, done.body)
	}
}
