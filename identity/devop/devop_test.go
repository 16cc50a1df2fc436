package devop_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"

	"rampart.dev/rampart/identity/devop"
	"rampart.dev/rampart/internal/clocktest"
)

const (
	aliceTOTP = "JBSWY3DPEHPK3PXP"
	// The CLI client registers a loopback redirect without a port; requests use any port.
	cliRedirectRegistered = "http://127.0.0.1/callback"
	cliRedirect           = "http://127.0.0.1:53682/callback"
	webRedirect           = "https://rampart.example/oidc/callback"
	webSecret             = "web-secret"
)

// env is a provider served over real HTTP at a path below the server's root, as Rampart mounts it.
type env struct {
	t       *testing.T
	p       *devop.Provider
	issuer  string
	clock   *clocktest.Clock
	srv     *httptest.Server
	browser *browser
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	issuer := "http://" + srv.Listener.Addr().String() + "/dev-idp"
	clock := clocktest.New(time.Now().Truncate(time.Second))
	p, err := devop.New(devop.Config{
		Issuer: issuer,
		Users: []devop.User{
			{Name: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"ml-research", "admins"}, TOTPSecret: aliceTOTP},
			{Name: "bob", Password: "bob-pw", Email: "bob@example.com"},
			{Name: "carol", Password: "carol-pw", Disabled: true},
		},
		Clients: []devop.Client{
			{ID: "rampart-cli", RedirectURIs: []string{cliRedirectRegistered}},
			{ID: "rampart-web", Secret: webSecret, RedirectURIs: []string{webRedirect}},
		},
		Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/dev-idp/", p.Handler())
	srv.Start()
	t.Cleanup(srv.Close)
	e := &env{t: t, p: p, issuer: issuer, clock: clock, srv: srv}
	e.browser = e.newBrowser()
	return e
}

// newRP is a relying party of the zitadel rp package, as Rampart's sign-in code uses it.
func (e *env) newRP(clientID, secret, redirect, nonce string) rp.RelyingParty {
	e.t.Helper()
	opts := []rp.Option{rp.WithHTTPClient(e.srv.Client())}
	if nonce != "" {
		opts = append(opts, rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return nonce })))
	}
	relyingParty, err := rp.NewRelyingPartyOIDC(context.Background(), e.issuer, clientID, secret, redirect, []string{"openid", "profile", "email"}, opts...)
	if err != nil {
		e.t.Fatalf("rp.NewRelyingPartyOIDC: %v", err)
	}
	return relyingParty
}

// browser is a user agent with a cookie jar that follows redirects within the provider and stops
// at the first redirect that leaves it (to a client's redirect URI).
type browser struct {
	t      *testing.T
	issuer string
	c      *http.Client
}

func (e *env) newBrowser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	b := &browser{t: e.t, issuer: e.issuer}
	b.c = &http.Client{
		Jar:       jar,
		Transport: e.srv.Client().Transport,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			if !strings.HasPrefix(req.URL.String(), e.issuer+"/") {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	return b
}

// response is a finished HTTP exchange.
type response struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return response{status: resp.StatusCode, location: resp.Header.Get("Location"), body: string(body), header: resp.Header}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

// submit fills the page's form with fields, keeping its hidden inputs, and posts it.
func (b *browser) submit(page response, fields map[string]string) response {
	b.t.Helper()
	action, values := parseForm(b.t, page.body)
	for k, v := range fields {
		values.Set(k, v)
	}
	target, err := url.Parse(b.issuer)
	if err != nil {
		b.t.Fatal(err)
	}
	target, err = target.Parse(action)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(values.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// parseForm returns the action of the page's form and the values of its hidden inputs.
func parseForm(t *testing.T, page string) (action string, values url.Values) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	values = url.Values{}
	found := false
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
			}
			switch {
			case n.Data == "form":
				found, action = true, attrs["action"]
			case n.Data == "input" && attrs["type"] == "hidden":
				values.Set(attrs["name"], attrs["value"])
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !found {
		t.Fatalf("no form on the page:\n%s", page)
	}
	return action, values
}

// redirectParams returns the query of a redirect to a client's redirect URI.
func redirectParams(t *testing.T, r response, redirect string) url.Values {
	t.Helper()
	if r.status != http.StatusFound && r.status != http.StatusSeeOther {
		t.Fatalf("want a redirect to %s, got %d:\n%s", redirect, r.status, r.body)
	}
	u, err := url.Parse(r.location)
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != redirect {
		t.Fatalf("redirect to %s, want %s", got, redirect)
	}
	return u.Query()
}

// authorization is one run of the authorization code flow with PKCE.
type authorization struct {
	rp       rp.RelyingParty
	verifier string
	state    string
	nonce    string
	url      string
}

func (e *env) newAuthorization(extra map[string]string) *authorization {
	a := &authorization{verifier: oauth2.GenerateVerifier(), state: "state-" + rand.Text(), nonce: "nonce-" + rand.Text()}
	a.rp = e.newRP("rampart-cli", "", cliRedirect, a.nonce)
	opts := []rp.AuthURLOpt{
		rp.WithCodeChallenge(oauth2.S256ChallengeFromVerifier(a.verifier)),
		rp.AuthURLOpt(rp.WithURLParam("nonce", a.nonce)),
	}
	for k, v := range extra {
		opts = append(opts, rp.AuthURLOpt(rp.WithURLParam(k, v)))
	}
	a.url = rp.AuthURL(a.state, a.rp, opts...)
	return a
}

// code returns the authorization code from a redirect to the CLI client, checking the state.
func (a *authorization) code(t *testing.T, r response) string {
	t.Helper()
	q := redirectParams(t, r, cliRedirect)
	if q.Get("error") != "" {
		t.Fatalf("authorization failed: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if q.Get("state") != a.state {
		t.Fatalf("state = %q, want %q", q.Get("state"), a.state)
	}
	return q.Get("code")
}

func (a *authorization) exchange(code, verifier string) (*oidc.Tokens[*oidc.IDTokenClaims], error) {
	return rp.CodeExchange[*oidc.IDTokenClaims](context.Background(), code, a.rp, rp.WithCodeVerifier(verifier))
}

// login runs the whole browser part for user and returns the code.
func (e *env) login(a *authorization, user, password string, extra map[string]string) string {
	e.t.Helper()
	form := e.browser.get(a.url)
	if form.status != http.StatusOK {
		e.t.Fatalf("authorize: want the login form, got %d %s:\n%s", form.status, form.location, form.body)
	}
	fields := map[string]string{"username": user, "password": password}
	for k, v := range extra {
		fields[k] = v
	}
	return a.code(e.t, e.browser.submit(form, fields))
}

func groupsOf(t *testing.T, claims map[string]any) []string {
	t.Helper()
	raw, ok := claims["groups"].([]any)
	if !ok {
		t.Fatalf("groups claim missing or not an array: %#v", claims["groups"])
	}
	var out []string
	for _, g := range raw {
		out = append(out, g.(string))
	}
	return out
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	r := e.browser.get(e.issuer + "/.well-known/openid-configuration")
	if r.status != http.StatusOK {
		t.Fatalf("discovery: %d %s", r.status, r.body)
	}
	var d oidc.DiscoveryConfiguration
	if err := json.Unmarshal([]byte(r.body), &d); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", d.Issuer, e.issuer},
		{"authorization_endpoint", d.AuthorizationEndpoint, e.issuer + "/authorize"},
		{"token_endpoint", d.TokenEndpoint, e.issuer + "/oauth/token"},
		{"userinfo_endpoint", d.UserinfoEndpoint, e.issuer + "/userinfo"},
		{"jwks_uri", d.JwksURI, e.issuer + "/keys"},
		{"device_authorization_endpoint", d.DeviceAuthorizationEndpoint, e.issuer + "/device_authorization"},
		{"code_challenge_methods_supported", d.CodeChallengeMethodsSupported, []oidc.CodeChallengeMethod{"S256"}},
		{"grant_types_supported", d.GrantTypesSupported, []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}},
		{"response_types_supported", d.ResponseTypesSupported, []string{"code"}},
		{"id_token_signing_alg_values_supported", d.IDTokenSigningAlgValuesSupported, []string{"RS256"}},
		{"acr_values_supported", d.ACRValuesSupported, []string{"pwd", "mfa"}},
		{"end_session_endpoint (not served)", d.EndSessionEndpoint, ""},
	}
	for _, c := range checks {
		if !jsonEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !slices.Contains(d.ClaimsSupported, "groups") {
		t.Errorf("claims_supported %v lacks groups", d.ClaimsSupported)
	}
	// Every advertised endpoint is served.
	if r := e.browser.get(d.JwksURI); r.status != http.StatusOK || !strings.Contains(r.body, `"RS256"`) {
		t.Errorf("jwks: %d %s", r.status, r.body)
	}
	// Endpoints of the op package that this provider does not support are not served.
	for _, path := range []string{"/end_session", "/oauth/introspect", "/revoke"} {
		if r := e.browser.get(e.issuer + path); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, r.status)
		}
	}
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestCodeFlowWithPKCE(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	loginTime := e.clock.Now()
	code := e.login(a, "alice", "alice-pw", nil)

	tokens, err := a.exchange(code, a.verifier)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	c := tokens.IDTokenClaims
	if c.Subject != "alice" || c.PreferredUsername != "alice" || c.Email != "alice@example.com" {
		t.Errorf("sub, preferred_username, email = %q, %q, %q", c.Subject, c.PreferredUsername, c.Email)
	}
	if got := groupsOf(t, c.Claims); !slices.Equal(got, []string{"ml-research", "admins"}) {
		t.Errorf("groups = %v", got)
	}
	if !slices.Equal(c.AuthenticationMethodsReferences, []string{"pwd"}) || c.AuthenticationContextClassReference != "pwd" {
		t.Errorf("amr, acr = %v, %q; want [pwd], pwd", c.AuthenticationMethodsReferences, c.AuthenticationContextClassReference)
	}
	if !c.AuthTime.AsTime().Equal(loginTime) {
		t.Errorf("auth_time = %v, want the provider clock's %v", c.AuthTime.AsTime(), loginTime)
	}
	if c.Nonce != a.nonce || !slices.Equal([]string(c.Audience), []string{"rampart-cli"}) || c.Issuer != e.issuer {
		t.Errorf("nonce, aud, iss = %q, %v, %q", c.Nonce, c.Audience, c.Issuer)
	}

	// Userinfo returns the same claims for the access token.
	info, err := rp.Userinfo[*oidc.UserInfo](context.Background(), tokens.AccessToken, "Bearer", "alice", a.rp)
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if info.PreferredUsername != "alice" || info.Email != "alice@example.com" || !slices.Equal(groupsOf(t, info.Claims), []string{"ml-research", "admins"}) {
		t.Errorf("userinfo = %+v", info)
	}

	// The access token expires on the provider's clock.
	e.clock.Advance(5*time.Minute + time.Second)
	if _, err := rp.Userinfo[*oidc.UserInfo](context.Background(), tokens.AccessToken, "Bearer", "alice", a.rp); err == nil {
		t.Error("userinfo accepted an expired access token")
	}
}

func TestConfidentialClient(t *testing.T) {
	e := newEnv(t)
	web := e.newRP("rampart-web", webSecret, webRedirect, "")
	state := "s1"
	form := e.browser.get(rp.AuthURL(state, web)) // no PKCE: a confidential client may omit it
	q := redirectParams(t, e.browser.submit(form, map[string]string{"username": "bob", "password": "bob-pw"}), webRedirect)
	if q.Get("state") != state {
		t.Fatalf("state = %q", q.Get("state"))
	}
	tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](context.Background(), q.Get("code"), web)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	if tokens.IDTokenClaims.Subject != "bob" || len(groupsOf(t, tokens.IDTokenClaims.Claims)) != 0 {
		t.Errorf("claims = %+v", tokens.IDTokenClaims)
	}

	// A wrong secret is refused.
	wrong := e.newRP("rampart-web", "not-the-secret", webRedirect, "")
	form = e.browser.get(rp.AuthURL(state, wrong))
	if form.status != http.StatusFound {
		t.Fatalf("second authorize should reuse the session, got %d", form.status)
	}
	q = redirectParams(t, form, webRedirect)
	if _, err := rp.CodeExchange[*oidc.IDTokenClaims](context.Background(), q.Get("code"), wrong); err == nil {
		t.Error("code exchange with a wrong client secret succeeded")
	}
}

func TestMFALogin(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(map[string]string{"acr_values": "mfa"})
	form := e.browser.get(a.url)
	if !strings.Contains(form.body, "requires a one-time code") {
		t.Fatalf("the form does not say a one-time code is required:\n%s", form.body)
	}
	// A password alone is not enough.
	again := e.browser.submit(form, map[string]string{"username": "alice", "password": "alice-pw"})
	if again.status != http.StatusUnprocessableEntity || !strings.Contains(again.body, "one-time code") {
		t.Fatalf("password only: want the form again with an error, got %d:\n%s", again.status, again.body)
	}
	// A wrong code is refused.
	again = e.browser.submit(again, map[string]string{"username": "alice", "password": "alice-pw", "otp": "000000"})
	if again.status != http.StatusUnprocessableEntity || !strings.Contains(again.body, "Wrong or expired one-time code") {
		t.Fatalf("wrong code: got %d:\n%s", again.status, again.body)
	}
	otp, err := devop.TOTPCode(aliceTOTP, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	code := a.code(t, e.browser.submit(again, map[string]string{"username": "alice", "password": "alice-pw", "otp": otp}))
	tokens, err := a.exchange(code, a.verifier)
	if err != nil {
		t.Fatal(err)
	}
	c := tokens.IDTokenClaims
	if !slices.Equal(c.AuthenticationMethodsReferences, []string{"pwd", "otp", "mfa"}) || c.AuthenticationContextClassReference != "mfa" {
		t.Errorf("amr, acr = %v, %q; want [pwd otp mfa], mfa", c.AuthenticationMethodsReferences, c.AuthenticationContextClassReference)
	}

	// A user without a TOTP secret cannot satisfy acr_values=mfa.
	b := e.newAuthorization(map[string]string{"acr_values": "mfa"})
	e.browser = e.newBrowser()
	form = e.browser.get(b.url)
	r := e.browser.submit(form, map[string]string{"username": "bob", "password": "bob-pw"})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "none set up") {
		t.Errorf("bob with acr_values=mfa: got %d:\n%s", r.status, r.body)
	}
}

func TestSessionAndMaxAge(t *testing.T) {
	e := newEnv(t)
	first := e.clock.Now()
	a := e.newAuthorization(nil)
	if _, err := a.exchange(e.login(a, "alice", "alice-pw", nil), a.verifier); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Second)

	// Without max_age the session skips the form; auth_time stays that of the login.
	b := e.newAuthorization(nil)
	tokens, err := b.exchange(b.code(t, e.browser.get(b.url)), b.verifier)
	if err != nil {
		t.Fatal(err)
	}
	if !tokens.IDTokenClaims.AuthTime.AsTime().Equal(first) {
		t.Errorf("auth_time from the session = %v, want %v", tokens.IDTokenClaims.AuthTime.AsTime(), first)
	}
	// A max_age the session is young enough for skips it too.
	c := e.newAuthorization(map[string]string{"max_age": "3600"})
	c.code(t, e.browser.get(c.url))

	// max_age=0 and prompt=login force the form even right after a login; so does a max_age
	// shorter than the session's age.
	for _, tc := range []struct {
		params  map[string]string
		advance time.Duration
	}{
		{map[string]string{"max_age": "0"}, 0},
		{map[string]string{"prompt": "login"}, 0},
		{map[string]string{"max_age": "5"}, 6 * time.Second},
	} {
		e.clock.Advance(tc.advance)
		d := e.newAuthorization(tc.params)
		form := e.browser.get(d.url)
		if form.status != http.StatusOK || !strings.Contains(form.body, `name="password"`) {
			t.Fatalf("%v: want the login form, got %d %s", tc.params, form.status, form.location)
		}
		now := e.clock.Now()
		tokens, err := d.exchange(d.code(t, e.browser.submit(form, map[string]string{"username": "alice", "password": "alice-pw"})), d.verifier)
		if err != nil {
			t.Fatal(err)
		}
		if !tokens.IDTokenClaims.AuthTime.AsTime().Equal(now) {
			t.Errorf("%v: auth_time = %v, want the fresh login's %v", tc.params, tokens.IDTokenClaims.AuthTime.AsTime(), now)
		}
	}

	// acr_values=mfa is not satisfied by a password-only session.
	m := e.newAuthorization(map[string]string{"acr_values": "mfa"})
	if r := e.browser.get(m.url); r.status != http.StatusOK {
		t.Errorf("acr_values=mfa with a password session: want the form, got %d", r.status)
	}

	// prompt=none without a session answers login_required to the client.
	e.browser = e.newBrowser()
	n := e.newAuthorization(map[string]string{"prompt": "none"})
	q := redirectParams(t, e.browser.get(n.url), cliRedirect)
	if q.Get("error") != "login_required" || q.Get("state") != n.state {
		t.Errorf("prompt=none: error=%q state=%q", q.Get("error"), q.Get("state"))
	}
}

func TestCodeIsSingleUse(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	code := e.login(a, "alice", "alice-pw", nil)
	tokens, err := a.exchange(code, a.verifier)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.exchange(code, a.verifier)
	if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("replayed code: err = %v, want invalid_grant", err)
	}
	// The replay revoked the access token issued for the code.
	if _, err := rp.Userinfo[*oidc.UserInfo](context.Background(), tokens.AccessToken, "Bearer", "alice", a.rp); err == nil {
		t.Error("the access token still works after its code was replayed")
	}
}

func TestCodeExpiresAfter60s(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	code := e.login(a, "alice", "alice-pw", nil)
	e.clock.Advance(61 * time.Second)
	if _, err := a.exchange(code, a.verifier); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("code after 61 s: err = %v, want invalid_grant", err)
	}
}

func TestPKCE(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	code := e.login(a, "alice", "alice-pw", nil)
	if _, err := a.exchange(code, oauth2.GenerateVerifier()); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("wrong verifier: err = %v, want invalid_grant", err)
	}
	if _, err := a.exchange(code, ""); err == nil {
		t.Fatal("no verifier: exchange succeeded")
	}

	// A public client must send an S256 challenge.
	cli := e.newRP("rampart-cli", "", cliRedirect, "")
	for name, opts := range map[string][]rp.AuthURLOpt{
		"no challenge": nil,
		"plain":        {rp.AuthURLOpt(rp.WithURLParam("code_challenge", oauth2.GenerateVerifier())), rp.AuthURLOpt(rp.WithURLParam("code_challenge_method", "plain"))},
	} {
		q := redirectParams(t, e.browser.get(rp.AuthURL("st", cli, opts...)), cliRedirect)
		if q.Get("error") != "invalid_request" {
			t.Errorf("%s: error = %q (%s), want invalid_request", name, q.Get("error"), q.Get("error_description"))
		}
	}
}

func TestRedirectURIMustBeRegistered(t *testing.T) {
	e := newEnv(t)
	for _, redirect := range []string{"http://127.0.0.1:8080/other", "https://evil.example/callback", "http://127.0.0.1:80@evil.example/callback"} {
		a := e.newRP("rampart-cli", "", redirect, "")
		r := e.browser.get(rp.AuthURL("st", a, rp.WithCodeChallenge(oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))))
		if r.status != http.StatusBadRequest || r.location != "" {
			t.Errorf("redirect_uri %s: got %d %s, want 400 and no redirect", redirect, r.status, r.location)
		}
	}
}

func TestDisabledUser(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	form := e.browser.get(a.url)
	r := e.browser.submit(form, map[string]string{"username": "carol", "password": "carol-pw"})
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "disabled") {
		t.Fatalf("disabled carol: got %d:\n%s", r.status, r.body)
	}
	// Wrong credentials re-render the form, and counting nothing, the right ones still work.
	for range 5 {
		r = e.browser.submit(r, map[string]string{"username": "alice", "password": "wrong"})
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "Wrong username or password") {
			t.Fatalf("wrong password: got %d:\n%s", r.status, r.body)
		}
	}
	tokens, err := a.exchange(a.code(t, e.browser.submit(r, map[string]string{"username": "alice", "password": "alice-pw"})), a.verifier)
	if err != nil {
		t.Fatal(err)
	}

	// Disabling alice ends her session and her access token.
	e.p.SetUserDisabled("alice", true)
	if _, err := rp.Userinfo[*oidc.UserInfo](context.Background(), tokens.AccessToken, "Bearer", "alice", a.rp); err == nil {
		t.Error("userinfo works for a disabled user")
	}
	b := e.newAuthorization(nil)
	form = e.browser.get(b.url)
	if form.status != http.StatusOK {
		t.Fatalf("disabled alice's session skipped the form: %d %s", form.status, form.location)
	}
	if r := e.browser.submit(form, map[string]string{"username": "alice", "password": "alice-pw"}); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("disabled alice logged in: %d %s", r.status, r.location)
	}
	e.p.SetUserDisabled("alice", false)
	b.code(t, e.browser.submit(form, map[string]string{"username": "alice", "password": "alice-pw"}))
}

func TestLoginFormRefusesCrossOriginPost(t *testing.T) {
	e := newEnv(t)
	a := e.newAuthorization(nil)
	form := e.browser.get(a.url)
	_, hidden := parseForm(t, form.body)
	hidden.Set("username", "alice")
	hidden.Set("password", "alice-pw")
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/login", strings.NewReader(hidden.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := e.browser.do(req); r.status != http.StatusForbidden {
		t.Errorf("cross-site login post: %d, want 403", r.status)
	}
	// An auth request ID the provider did not issue is refused.
	r := e.browser.submit(form, map[string]string{"id": "made-up", "username": "alice", "password": "alice-pw"})
	if r.status != http.StatusBadRequest {
		t.Errorf("made-up auth request id: %d, want 400", r.status)
	}
}

// tokenEndpoint posts form values to the token endpoint and decodes the JSON answer.
func (e *env) tokenEndpoint(values url.Values) (int, map[string]any) {
	e.t.Helper()
	return e.postJSON(e.issuer+"/oauth/token", values)
}

func (e *env) postJSON(u string, values url.Values) (int, map[string]any) {
	e.t.Helper()
	resp, err := e.srv.Client().PostForm(u, values)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatalf("POST %s: %d, not JSON: %v", u, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

type deviceStart struct {
	deviceCode, userCode, verificationURI, verificationURIComplete string
	interval                                                       float64
}

func (e *env) startDevice() deviceStart {
	e.t.Helper()
	status, out := e.postJSON(e.issuer+"/device_authorization", url.Values{"client_id": {"rampart-cli"}, "scope": {"openid profile"}})
	if status != http.StatusOK {
		e.t.Fatalf("device_authorization: %d %v", status, out)
	}
	s := deviceStart{}
	s.deviceCode, _ = out["device_code"].(string)
	s.userCode, _ = out["user_code"].(string)
	s.verificationURI, _ = out["verification_uri"].(string)
	s.verificationURIComplete, _ = out["verification_uri_complete"].(string)
	s.interval, _ = out["interval"].(float64)
	if s.deviceCode == "" || s.userCode == "" || s.verificationURI != e.issuer+"/device" || s.interval < 1 {
		e.t.Fatalf("device_authorization answer: %v", out)
	}
	return s
}

func (e *env) pollDevice(deviceCode string) (int, map[string]any) {
	e.t.Helper()
	return e.tokenEndpoint(url.Values{
		"grant_type":  {string(oidc.GrantTypeDeviceCode)},
		"device_code": {deviceCode},
		"client_id":   {"rampart-cli"},
	})
}

func wantTokenError(t *testing.T, status int, out map[string]any, want string) {
	t.Helper()
	if status != http.StatusBadRequest || out["error"] != want {
		t.Fatalf("token endpoint: %d %v, want 400 %s", status, out, want)
	}
}

func TestDeviceFlow(t *testing.T) {
	e := newEnv(t)
	start := e.startDevice()
	interval := time.Duration(start.interval) * time.Second

	status, out := e.pollDevice(start.deviceCode)
	wantTokenError(t, status, out, "authorization_pending")
	status, out = e.pollDevice(start.deviceCode) // at once, not waiting the interval
	wantTokenError(t, status, out, "slow_down")
	interval += 5 * time.Second // RFC 8628, section 3.5
	e.clock.Advance(interval)
	status, out = e.pollDevice(start.deviceCode)
	wantTokenError(t, status, out, "authorization_pending")

	// The user opens the verification URI with the code in it, and signs in.
	page := e.browser.get(start.verificationURIComplete)
	if page.status != http.StatusOK || !strings.Contains(page.body, start.userCode) {
		t.Fatalf("device page: %d:\n%s", page.status, page.body)
	}
	wrong := e.browser.submit(page, map[string]string{"user_code": start.userCode, "username": "alice", "password": "nope"})
	if wrong.status != http.StatusUnprocessableEntity {
		t.Fatalf("device page with a wrong password: %d", wrong.status)
	}
	otp, err := devop.TOTPCode(aliceTOTP, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	done := e.browser.submit(page, map[string]string{"user_code": strings.ToLower(start.userCode), "username": "alice", "password": "alice-pw", "otp": otp})
	if done.status != http.StatusOK || !strings.Contains(done.body, "signed in as alice") {
		t.Fatalf("device login: %d:\n%s", done.status, done.body)
	}

	e.clock.Advance(interval)
	status, out = e.pollDevice(start.deviceCode)
	if status != http.StatusOK {
		t.Fatalf("poll after approval: %d %v", status, out)
	}
	idToken, _ := out["id_token"].(string)
	cli := e.newRP("rampart-cli", "", cliRedirect, "")
	claims, err := rp.VerifyIDToken[*oidc.IDTokenClaims](context.Background(), idToken, cli.IDTokenVerifier())
	if err != nil {
		t.Fatalf("verify device ID token: %v", err)
	}
	if claims.Subject != "alice" || claims.AuthenticationContextClassReference != "mfa" || !slices.Contains(claims.AuthenticationMethodsReferences, "mfa") {
		t.Errorf("device ID token: sub %q acr %q amr %v", claims.Subject, claims.AuthenticationContextClassReference, claims.AuthenticationMethodsReferences)
	}
	if got := groupsOf(t, claims.Claims); !slices.Equal(got, []string{"ml-research", "admins"}) {
		t.Errorf("groups = %v", got)
	}
	// The device code is spent.
	e.clock.Advance(interval)
	status, out = e.pollDevice(start.deviceCode)
	if status == http.StatusOK {
		t.Fatalf("device code redeemed twice: %v", out)
	}
}

func TestDeviceFlowDeniedAndExpired(t *testing.T) {
	e := newEnv(t)
	denied := e.startDevice()
	page := e.browser.get(denied.verificationURI)
	r := e.browser.submit(page, map[string]string{"user_code": denied.userCode, "action": "deny"})
	if r.status != http.StatusOK || !strings.Contains(r.body, "denied") {
		t.Fatalf("deny: %d:\n%s", r.status, r.body)
	}
	status, out := e.pollDevice(denied.deviceCode)
	wantTokenError(t, status, out, "access_denied")

	expired := e.startDevice()
	e.clock.Advance(10*time.Minute + time.Second)
	status, out = e.pollDevice(expired.deviceCode)
	wantTokenError(t, status, out, "expired_token")
	if r := e.browser.submit(page, map[string]string{"user_code": expired.userCode, "username": "alice", "password": "alice-pw"}); r.status != http.StatusUnprocessableEntity {
		t.Errorf("approving an expired user code: %d", r.status)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	login := func() (idToken, nonce string) {
		a := e.newAuthorization(map[string]string{"prompt": "login"})
		tokens, err := a.exchange(e.login(a, "bob", "bob-pw", nil), a.verifier)
		if err != nil {
			t.Fatal(err)
		}
		return tokens.IDToken, a.nonce
	}
	kid := func(token string) string {
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}
	// A relying party that has verified a token before the rotation, and so cached the old JWKS.
	var expectNonce string
	verifier := rp.NewIDTokenVerifier(e.issuer, "rampart-cli",
		rp.NewRemoteKeySet(e.srv.Client(), e.issuer+"/keys"),
		rp.WithNonce(func(context.Context) string { return expectNonce }))
	verify := func(token, nonce string) error {
		expectNonce = nonce
		_, err := rp.VerifyIDToken[*oidc.IDTokenClaims](context.Background(), token, verifier)
		return err
	}

	old, oldNonce := login()
	if err := verify(old, oldNonce); err != nil {
		t.Fatalf("verify token before rotation: %v", err)
	}
	if err := e.p.RotateKeys(); err != nil {
		t.Fatal(err)
	}
	fresh, freshNonce := login()
	if kid(old) == kid(fresh) || kid(old) == "" {
		t.Fatalf("kid before and after rotation: %q, %q", kid(old), kid(fresh))
	}

	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(e.browser.get(e.issuer+"/keys").body), &jwks); err != nil {
		t.Fatal(err)
	}
	if len(jwks.Key(kid(old))) != 1 || len(jwks.Key(kid(fresh))) != 1 {
		t.Fatalf("JWKS lacks a key: %+v", jwks)
	}
	// The new token verifies (the verifier fetches the JWKS again for the unknown kid), and so
	// does the old one.
	if err := verify(fresh, freshNonce); err != nil {
		t.Errorf("verify token after rotation: %v", err)
	}
	if err := verify(old, oldNonce); err != nil {
		t.Errorf("verify old token after rotation: %v", err)
	}
}

func TestTOTPCode(t *testing.T) {
	// RFC 6238 appendix B, SHA-1, truncated to 6 digits.
	secret := "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" // "12345678901234567890"
	for _, v := range []struct {
		unix int64
		want string
	}{
		{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"},
		{1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"},
	} {
		got, err := devop.TOTPCode(secret, time.Unix(v.unix, 0))
		if err != nil || got != v.want {
			t.Errorf("TOTPCode at %d = %q, %v; want %q", v.unix, got, err, v.want)
		}
	}
	if _, err := devop.TOTPCode("not base32!", time.Now()); err == nil {
		t.Error("TOTPCode accepted a secret that is not base32")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := func() devop.Config {
		return devop.Config{
			Issuer:  "http://127.0.0.1:8470/dev-idp",
			Users:   []devop.User{{Name: "alice", Password: "pw"}},
			Clients: []devop.Client{{ID: "cli", RedirectURIs: []string{"http://127.0.0.1/callback"}}},
		}
	}
	for name, mutate := range map[string]func(*devop.Config){
		"no issuer":            func(c *devop.Config) { c.Issuer = "" },
		"relative issuer":      func(c *devop.Config) { c.Issuer = "/dev-idp" },
		"issuer with slash":    func(c *devop.Config) { c.Issuer += "/" },
		"no users":             func(c *devop.Config) { c.Users = nil },
		"duplicate user":       func(c *devop.Config) { c.Users = append(c.Users, c.Users[0]) },
		"bad TOTP secret":      func(c *devop.Config) { c.Users[0].TOTPSecret = "1!" },
		"no clients":           func(c *devop.Config) { c.Clients = nil },
		"relative redirect":    func(c *devop.Config) { c.Clients[0].RedirectURIs = []string{"/callback"} },
		"redirect w/ fragment": func(c *devop.Config) { c.Clients[0].RedirectURIs = []string{"http://127.0.0.1/cb#x"} },
		"unknown grant type":   func(c *devop.Config) { c.Clients[0].GrantTypes = []oidc.GrantType{oidc.GrantTypeClientCredentials} },
	} {
		cfg := good()
		mutate(&cfg)
		if _, err := devop.New(cfg); !errors.Is(err, devop.ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	if _, err := devop.New(good()); err != nil {
		t.Errorf("good config: %v", err)
	}
}
