package signin_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
)

func contains(list []string, s string) bool { return slices.Contains(list, s) }

// The browser flow over HTTP against the in-process provider: a session cookie comes back,
// the provider's groups are mapped to policy groups, the ledger has the sign-in, and replaying
// the callback does nothing.
func TestBrowserSignIn(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser("")
	p := b.get(e.srv.URL + "/login")
	var callback *url.URL
	b.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/callback" {
			callback = req.URL
		}
		return nil
	}
	done := b.signInAtProvider(p, "frank", "frank-pw", "")
	if done.status != 200 || !strings.Contains(done.body, "Signed in to Rampart as frank") {
		t.Fatalf("after the provider: %d %s\n%s", done.status, done.url, done.body)
	}
	tok := b.sessionCookie()
	pr, err := e.auth.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Subject != "frank" || !slices.Equal(pr.Groups, []string{"researchers"}) || pr.SessionID == "" || !pr.MFAAt.IsZero() {
		t.Fatalf("principal: %+v", pr)
	}
	if codes := e.codes(); !contains(codes, "signin.success") {
		t.Fatalf("ledger: %v", codes)
	}
	u, _ := e.store.UserRecord(context.Background(), "frank")
	if !strings.HasPrefix(u.IdPSubject, e.issuer+"|") {
		t.Fatalf("frank is not bound to the provider's account: %+v", u)
	}

	// The same callback again (a replayed code and state) is refused and opens nothing.
	if callback == nil {
		t.Fatal("no callback seen")
	}
	before, _ := e.store.ListSessions(context.Background(), "frank")
	again := b.get(callback.String())
	if again.status != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d %s", again.status, again.body)
	}
	after, _ := e.store.ListSessions(context.Background(), "frank")
	if len(after) != len(before) {
		t.Fatal("a replayed callback opened a session")
	}
}

// A callback whose state this browser did not start is refused before any code is exchanged
// (login CSRF), and so is a forged state.
func TestCallbackStateBoundToBrowser(t *testing.T) {
	e := newEnv(t, envOptions{})
	victim, attacker := e.browser(""), e.browser("")
	// The attacker starts a sign-in, signs in as herself, and stops before the callback.
	p := attacker.get(e.srv.URL + "/login")
	var stolen *url.URL
	attacker.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/callback" {
			stolen = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	attacker.signInAtProvider(p, "frank", "frank-pw", "")
	if stolen == nil {
		t.Fatal("no callback URL")
	}
	// She makes the victim's browser load it.
	got := victim.get(stolen.String())
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, "not started in this browser") {
		t.Fatalf("cross-browser callback: %d %s", got.status, got.body)
	}
	if victim.sessionCookie() != "" {
		t.Fatal("the victim was signed in as the attacker")
	}
	forged := attacker.get(e.srv.URL + "/callback?code=x&state=forged")
	if forged.status != http.StatusBadRequest {
		t.Fatalf("forged state: %d", forged.status)
	}
	if n := strings.Count(strings.Join(e.codes(), " "), "signin.refused"); n < 2 {
		t.Fatalf("refusals not recorded: %v", e.codes())
	}
}

func challenge(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// The CLI's loopback flow: the browser ends at the CLI's listener with a one-time code that only
// the CLI's PKCE verifier redeems, once.
func TestCLILoopback(t *testing.T) {
	e := newEnv(t, envOptions{})
	run := func(verifier string) url.Values {
		t.Helper()
		l := newLoopback(t)
		b := e.browser("")
		q := url.Values{"redirect_uri": {l.redirectURI()}, "state": {"cli-state"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
		p := b.get(e.srv.URL + "/login?" + q.Encode())
		done := b.signInAtProvider(p, "alice", "alice-pw", "")
		if done.status != 200 || l.query().Get("state") != "cli-state" || l.query().Get("code") == "" {
			t.Fatalf("loopback got %v (%d %s)", l.query(), done.status, done.body)
		}
		return url.Values{"grant_type": {"authorization_code"}, "code": {l.query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {l.redirectURI()}}
	}
	verifier := strings.Repeat("v", 43)

	// A wrong verifier burns the code.
	form := run(verifier)
	wrong := url.Values{}
	for k, v := range form {
		wrong[k] = v
	}
	wrong.Set("code_verifier", strings.Repeat("w", 43))
	if st, out := e.tokenCall("", wrong); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("wrong verifier: %d %v", st, out)
	}
	if st, out := e.tokenCall("", form); st != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("code after a wrong verifier: %d %v", st, out)
	}

	// The right verifier, once.
	form = run(verifier)
	st, out := e.tokenCall("", form)
	if st != 200 || !strings.HasPrefix(out["access_token"].(string), identity.AccessPrefix) || !strings.HasPrefix(out["refresh_token"].(string), identity.RefreshPrefix) {
		t.Fatalf("redeem: %d %v", st, out)
	}
	if ttl := out["expires_in"].(float64); ttl > 15*60 || ttl < 60 {
		t.Fatalf("access token lives %vs", ttl)
	}
	if st, _ := e.tokenCall("", form); st != 400 {
		t.Fatalf("second redemption: %d", st)
	}

	// Redirect URI must be the one the sign-in started with.
	form = run(verifier)
	form.Set("redirect_uri", "http://127.0.0.1:1/other")
	if st, _ := e.tokenCall("", form); st != 400 {
		t.Fatalf("other redirect_uri: %d", st)
	}

	// Bad CLI parameters never reach the provider.
	b := e.browser("")
	for _, q := range []url.Values{
		{"redirect_uri": {"http://evil.example:8080/cb"}, "state": {"s"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}},
		{"redirect_uri": {"http://127.0.0.1:9/cb"}, "state": {"s"}, "code_challenge": {verifier}, "code_challenge_method": {"plain"}},
		{"redirect_uri": {"http://127.0.0.1:9/cb"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}},
		{"return_to": {"https://evil.example/"}},
		{"return_to": {"//evil.example/"}},
	} {
		if p := b.get(e.srv.URL + "/login?" + q.Encode()); p.status != 400 {
			t.Errorf("%v: %d", q, p.status)
		}
	}
}

// The device flow for a headless CLI: pending, slow_down when polled too fast, tokens after the
// person approves at the provider, and the device code is spent.
func TestDeviceFlow(t *testing.T) {
	e := newEnv(t, envOptions{})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/device", nil)
	st, dev := e.do(req)
	if st != 200 || dev["user_code"] == "" || dev["device_code"] == "" {
		t.Fatalf("device start: %d %v", st, dev)
	}
	poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dev["device_code"].(string)}}
	if st, out := e.tokenCall("", poll); st != 400 || out["error"] != "authorization_pending" {
		t.Fatalf("first poll: %d %v", st, out)
	}
	if st, out := e.tokenCall("", poll); st != 400 || out["error"] != "slow_down" {
		t.Fatalf("fast poll: %d %v", st, out)
	}
	// The person approves on another machine.
	b := e.browser("")
	p := b.get(dev["verification_uri"].(string))
	m, _ := url.Parse(dev["verification_uri"].(string))
	form := url.Values{"user_code": {dev["user_code"].(string)}, "username": {"frank"}, "password": {"frank-pw"}, "action": {"approve"}}
	req, _ = http.NewRequest(http.MethodPost, m.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("device approval: %v %v (%s)", resp, err, p.body)
	}
	resp.Body.Close()
	var out map[string]any
	interval := time.Duration(dev["interval"].(float64)+5) * time.Second // +5: we were told to slow down
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(interval)
		st, out = e.tokenCall("", poll)
		if out["error"] == "slow_down" {
			interval += 5 * time.Second
		}
		if st == 200 || time.Now().After(deadline) || (out["error"] != "authorization_pending" && out["error"] != "slow_down") {
			break
		}
	}
	if st != 200 || out["session"].(map[string]any)["subject"] != "frank" || out["session"].(map[string]any)["method"] != "oidc-device" {
		t.Fatalf("device tokens: %d %v", st, out)
	}
	if st, out := e.tokenCall("", poll); st != 400 || out["error"] != "expired_token" {
		t.Fatalf("spent device code: %d %v", st, out)
	}
}

// A person the provider names like a machine ("service:ci") is refused.
func TestMachineLikeUsernameRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	b := e.browser("")
	done := b.signInAtProvider(b.get(e.srv.URL+"/login"), "Service:CI", "ci-pw", "")
	if done.status != http.StatusForbidden || !strings.Contains(done.body, "cannot name a person") {
		t.Fatalf("%d %s", done.status, done.body)
	}
	if sessions, _ := e.store.ListSessions(context.Background(), ""); len(sessions) != 0 {
		t.Fatalf("sessions: %v", sessions)
	}
}

// Configuration mistakes are refused at start, naming the field.
func TestConfigRefused(t *testing.T) {
	ok := signin.Config{Issuer: "https://idp.example.com", ClientID: "rampart", ExternalURL: "https://rampart.example.com"}
	if _, err := signin.New(ok, signin.Deps{}); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for field, mutate := range map[string]func(*signin.Config){
		"oidc.issuer":                func(c *signin.Config) { c.Issuer = "http://idp.example.com" }, // plain http off loopback
		"oidc.client_id":             func(c *signin.Config) { c.ClientID = "" },
		"oidc.external_url":          func(c *signin.Config) { c.ExternalURL = "rampart.example.com" },
		"oidc.scopes":                func(c *signin.Config) { c.Scopes = []string{"profile"} },
		"oidc.step_up":               func(c *signin.Config) { c.StepUp = "sms" },
		"oidc.client_auth":           func(c *signin.Config) { c.ClientAuth = "private_key_jwt" },
		"oidc.cli_client_secret_env": func(c *signin.Config) { c.CLIClientSecret = "not-secret" }, // without cli_client_id
	} {
		c := ok
		mutate(&c)
		if _, err := signin.New(c, signin.Deps{}); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}
