package signin_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"rampart.dev/rampart/identity"
)

// The issue's "bad input and attacks" list, tried against Rampart's real handlers. ID tokens are
// forged by a hostile provider (hostile_test.go); everything else is sent by an attacker's own
// client. Each attack must be refused with its precise status, open no session, record a
// signin.refused entry where the code records refusals, and leave the service working: after
// each refusal the same service signs frank in with a correctly signed token.

// expectRefused checks a refused browser sign-in: its status and reason, no session anywhere,
// no session cookie, and exactly one new signin.refused entry whose message has logged (none
// when logged is empty).
func expectRefused(t *testing.T, e *env, b *browser, r reply, refusalsBefore int, status int, says, logged string) {
	t.Helper()
	if r.status != status || !strings.Contains(htmlText(r.body), says) {
		t.Fatalf("got %d, want %d saying %q:\n%s", r.status, status, says, r.body)
	}
	for _, c := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, identity.SessionCookie+"=") && !strings.HasPrefix(c, identity.SessionCookie+"=;") {
			t.Fatalf("a session cookie was set: %s", c)
		}
	}
	if b.sessionCookie() != "" {
		t.Fatal("the browser holds a session cookie")
	}
	if s := e.sessionsOf(""); len(s) != 0 {
		t.Fatalf("sessions were opened: %+v", s)
	}
	if n := len(e.entriesOf("signin.success")); n != 0 {
		t.Fatalf("%d signin.success entries", n)
	}
	refusals := e.entriesOf("signin.refused")
	switch {
	case logged == "" && len(refusals) != refusalsBefore:
		t.Fatalf("refusal entries went from %d to %d", refusalsBefore, len(refusals))
	case logged != "" && len(refusals) != refusalsBefore+1:
		t.Fatalf("refusal entries went from %d to %d, want one more", refusalsBefore, len(refusals))
	case logged != "":
		last := refusals[len(refusals)-1]
		if !strings.Contains(last.message, logged) || !strings.Contains(last.raw, `"status":"Failure"`) {
			t.Fatalf("refusal entry does not say %q: %s", logged, last.raw)
		}
	}
}

// expectSignIn signs frank in through the hostile provider with a correctly signed token: the
// control that shows the service accepts what it should, so the refusals are for the attack.
func expectSignIn(t *testing.T, e *env, h *hostileProvider) {
	t.Helper()
	b := e.browser("").noRedirects()
	st := e.startLogin(b, nil)
	code := "control-" + st.state[:8]
	h.issue(code, st.challenge, h.sign(h.claims(st.nonce)))
	r := e.callback(b, code, st.state)
	if r.status != http.StatusOK || !strings.Contains(r.body, "Signed in to Rampart as frank") || b.sessionCookie() == "" {
		t.Fatalf("control sign-in: %d\n%s", r.status, r.body)
	}
	if p, err := e.auth.Verify(t.Context(), b.sessionCookie()); err != nil || p.Subject != "frank" {
		t.Fatalf("control session: %+v %v", p, err)
	}
}

// cookieMismatch is how the ledger names a callback whose state is not its login cookie's.
const cookieMismatch = "callback state does not match the browser's login cookie"

// A correctly signed ID token from the hostile provider is accepted: the provider's token
// endpoint saw Rampart's PKCE verifier, the nonce matched, and a session was opened.
func TestHostileProviderControl(t *testing.T) {
	e, h := newHostileEnv(t, envOptions{})
	expectSignIn(t, e, h)
	if n := len(e.entriesOf("signin.success")); n != 1 {
		t.Fatalf("%d signin.success entries", n)
	}
	if n := len(e.entriesOf("signin.refused")); n != 0 {
		t.Fatalf("%d signin.refused entries", n)
	}
	s := e.sessionsOf("frank")
	if len(s) != 1 || s[0].Method != "oidc" {
		t.Fatalf("sessions: %+v", s)
	}
	u, _ := e.store.UserRecord(t.Context(), "frank")
	if u.IdPSubject != h.issuer+"|idp-sub-frank" {
		t.Fatalf("frank is bound to %q", u.IdPSubject)
	}
}

// forgery is an ID token the hostile provider returns at the code exchange.
type forgery struct {
	name   string
	token  func(t *testing.T, h *hostileProvider, st loginStart) string
	status int
	says   string
}

// with returns a correctly signed token whose claims were changed by edit.
func with(edit func(c map[string]any)) func(*testing.T, *hostileProvider, loginStart) string {
	return func(t *testing.T, h *hostileProvider, st loginStart) string {
		c := h.claims(st.nonce)
		edit(c)
		return h.sign(c)
	}
}

func strangerRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestForgedIDTokensRefused(t *testing.T) {
	const (
		badAlg    = "the ID token was refused: signature algorithm not supported"
		badSig    = "the ID token was refused: invalid signature"
		forbidden = http.StatusForbidden
	)
	hsWith := func(secret func(pub *rsa.PublicKey) []byte) func(*testing.T, *hostileProvider, loginStart) string {
		return func(t *testing.T, h *hostileProvider, st loginStart) string {
			return signJWT(t, jose.HS256, secret(&h.key("key-1").PublicKey), "key-1", h.claims(st.nonce))
		}
	}
	cases := []forgery{
		{"alg none", func(t *testing.T, h *hostileProvider, st loginStart) string {
			return unsignedJWT(t, "key-1", h.claims(st.nonce))
		}, forbidden, badAlg},
		{"alg none without kid", func(t *testing.T, h *hostileProvider, st loginStart) string {
			return unsignedJWT(t, "", h.claims(st.nonce))
		}, forbidden, badAlg},
		{"HS256 keyed with the provider's RSA public key (PEM)", hsWith(func(pub *rsa.PublicKey) []byte {
			der, _ := x509.MarshalPKIXPublicKey(pub)
			return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		}), forbidden, badAlg},
		{"HS256 keyed with the provider's RSA public key (PKIX DER)", hsWith(func(pub *rsa.PublicKey) []byte {
			der, _ := x509.MarshalPKIXPublicKey(pub)
			return der
		}), forbidden, badAlg},
		{"HS256 keyed with the provider's RSA public key (PKCS#1 DER)", hsWith(x509.MarshalPKCS1PublicKey), forbidden, badAlg},
		{"HS256 keyed with the provider's published JWK", hsWith(func(pub *rsa.PublicKey) []byte {
			b, _ := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: "key-1", Use: "sig", Algorithm: "RS256"})
			return b
		}), forbidden, badAlg},
		{"signed by another key under the provider's kid", func(t *testing.T, h *hostileProvider, st loginStart) string {
			return signJWT(t, jose.RS256, strangerRSA(t), "key-1", h.claims(st.nonce))
		}, forbidden, badSig},
		{"signed by another key without kid", func(t *testing.T, h *hostileProvider, st loginStart) string {
			return signJWT(t, jose.RS256, strangerRSA(t), "", h.claims(st.nonce))
		}, forbidden, badSig},
		{"ES256 by a key the provider never published", func(t *testing.T, h *hostileProvider, st loginStart) string {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			return signJWT(t, jose.ES256, k, "key-1", h.claims(st.nonce))
		}, forbidden, badSig},
		{"payload changed after signing", func(t *testing.T, h *hostileProvider, st loginStart) string {
			parts := strings.Split(h.sign(h.claims(st.nonce)), ".")
			c := h.claims(st.nonce)
			c["preferred_username"] = "alice"
			p, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
		}, forbidden, badSig},
		{"signature stripped", func(t *testing.T, h *hostileProvider, st loginStart) string {
			parts := strings.Split(h.sign(h.claims(st.nonce)), ".")
			return parts[0] + "." + parts[1] + "."
		}, forbidden, "the ID token was refused"},
		{"not a JWT", func(*testing.T, *hostileProvider, loginStart) string { return "hello" }, forbidden, "parsing of request failed"},
		{"no id_token in the response", func(*testing.T, *hostileProvider, loginStart) string { return "" }, forbidden, "id_token missing"},
		{"wrong issuer", with(func(c map[string]any) { c["iss"] = "https://evil.example" }), forbidden, "issuer does not match"},
		{"issuer with a trailing slash", with(func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }), forbidden, "issuer does not match"},
		{"wrong audience", with(func(c map[string]any) { c["aud"] = []string{"vault"} }), forbidden, "audience is not valid"},
		{"no audience", with(func(c map[string]any) { delete(c, "aud") }), forbidden, "audience is not valid"},
		{"second audience without azp", with(func(c map[string]any) { c["aud"] = []string{"rampart", "vault"} }), forbidden, "authorized party is not set"},
		{"azp of another client", with(func(c map[string]any) { c["azp"] = "vault" }), forbidden, "authorized party is not valid"},
		{"expired", with(func(c map[string]any) {
			c["exp"], c["iat"] = time.Now().Add(-time.Minute).Unix(), time.Now().Add(-time.Hour).Unix()
		}), forbidden, "token has expired"},
		{"no expiry", with(func(c map[string]any) { delete(c, "exp") }), forbidden, "token has expired"},
		{"issued in the future beyond the 30 s allowance", with(func(c map[string]any) { c["iat"] = time.Now().Add(2 * time.Minute).Unix() }), forbidden, "issuedAt of token is in the future"},
		{"no iat", with(func(c map[string]any) { delete(c, "iat") }), forbidden, "issuedAt of token is missing"},
		{"not valid before an hour from now (nbf)", with(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), forbidden, "not valid before"},
		{"nonce of an attacker", with(func(c map[string]any) { c["nonce"] = "attacker-nonce" }), forbidden, "nonce does not match"},
		{"no nonce", with(func(c map[string]any) { delete(c, "nonce") }), forbidden, "nonce does not match"},
		{"at_hash of another access token", with(func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" }), forbidden, "at_hash does not correspond to access token"},
		{"no sub", with(func(c map[string]any) { delete(c, "sub") }), forbidden, "subject missing"},
		{"no username claim", with(func(c map[string]any) { delete(c, "preferred_username") }), forbidden, `has no "preferred_username" claim`},
		{"username of a machine subject", with(func(c map[string]any) { c["preferred_username"] = "k8s:prod/ml/trainer" }), forbidden, "cannot name a person"},
		{"groups not a list", with(func(c map[string]any) { c["groups"] = 42 }), forbidden, "a list of group names was expected"},
		{"more groups than accepted", with(func(c map[string]any) {
			g := make([]string, 1001)
			for i := range g {
				g[i] = fmt.Sprint("g", i)
			}
			c["groups"] = g
		}), forbidden, "at most 1000 are accepted"},
	}
	for _, f := range cases {
		t.Run(f.name, func(t *testing.T) {
			e, h := newHostileEnv(t, envOptions{})
			b := e.browser("").noRedirects()
			st := e.startLogin(b, nil)
			h.issue("code-1", st.challenge, f.token(t, h, st))
			expectRefused(t, e, b, e.callback(b, "code-1", st.state), 0, f.status, f.says, f.says)
			expectSignIn(t, e, h)
		})
	}
}

// Clock skew within the 30 s allowance is tolerated; the boundary is where the test above says.
func TestIssuedAtWithinAllowanceAccepted(t *testing.T) {
	e, h := newHostileEnv(t, envOptions{})
	b := e.browser("").noRedirects()
	st := e.startLogin(b, nil)
	c := h.claims(st.nonce)
	c["iat"], c["nbf"] = time.Now().Add(10*time.Second).Unix(), time.Now().Add(10*time.Second).Unix()
	h.issue("code-1", st.challenge, h.sign(c))
	if r := e.callback(b, "code-1", st.state); r.status != http.StatusOK {
		t.Fatalf("iat and nbf 10 s ahead: %d\n%s", r.status, r.body)
	}
}

// The provider rotates its signing key: a token from the new key is accepted once Rampart has
// fetched the JWKS again; a token from a key that was never published is refused, whatever kid
// it names; a key the provider stopped publishing is refused once the JWKS has been fetched
// again.
func TestJWKSRotation(t *testing.T) {
	e, h := newHostileEnv(t, envOptions{})
	expectSignIn(t, e, h) // caches key-1
	hits := h.jwksHits.Load()

	h.rotate("key-2")
	expectSignIn(t, e, h)
	if h.jwksHits.Load() == hits {
		t.Fatal("a token from the rotated-in key was accepted without fetching the JWKS")
	}

	stranger := strangerRSA(t)
	for _, kid := range []string{"ghost", "key-2", ""} {
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		h.issue("code-"+kid, st.challenge, signJWT(t, jose.RS256, stranger, kid, h.claims(st.nonce)))
		before := len(e.entriesOf("signin.refused"))
		r := e.callback(b, "code-"+kid, st.state)
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "invalid signature") {
			t.Fatalf("unknown key with kid %q: %d\n%s", kid, r.status, r.body)
		}
		if after := len(e.entriesOf("signin.refused")); after != before+1 {
			t.Fatalf("unknown key with kid %q: refusals %d → %d", kid, before, after)
		}
	}

	// key-1 is retired; once the JWKS has been fetched again (the unknown kid above did that),
	// a token signed with it no longer passes.
	old := h.retire("key-1")
	b := e.browser("").noRedirects()
	st := e.startLogin(b, nil)
	h.issue("code-ghost-2", st.challenge, signJWT(t, jose.RS256, strangerRSA(t), "ghost-2", h.claims(st.nonce)))
	if r := e.callback(b, "code-ghost-2", st.state); r.status != http.StatusForbidden {
		t.Fatalf("ghost-2: %d", r.status)
	}
	b = e.browser("").noRedirects()
	st = e.startLogin(b, nil)
	h.issue("code-old", st.challenge, signJWT(t, jose.RS256, old, "key-1", h.claims(st.nonce)))
	if r := e.callback(b, "code-old", st.state); r.status != http.StatusForbidden || !strings.Contains(r.body, "invalid signature") {
		t.Fatalf("retired key: %d\n%s", r.status, r.body)
	}
	if n := len(e.sessionsOf("frank")); n != 2 {
		t.Fatalf("%d sessions, want the 2 control sign-ins", n)
	}
}

// State, code and PKCE attacks on the browser flow.
func TestCallbackAttacks(t *testing.T) {
	t.Run("forged state, no login cookie", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		expectRefused(t, e, b, e.callback(b, "x", "forged-state"), 0, http.StatusBadRequest, "not started in this browser", cookieMismatch)
		expectSignIn(t, e, h)
	})
	t.Run("forged state with a matching cookie set by the attacker", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		b.setLoginCookie("forged-state")
		expectRefused(t, e, b, e.callback(b, "x", "forged-state"), 0, http.StatusBadRequest, "unknown, was already used, or expired", "unknown, was already used, or expired")
		expectSignIn(t, e, h)
	})
	t.Run("state of another browser's sign-in (login CSRF)", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		attacker, victim := e.browser("").noRedirects(), e.browser("").noRedirects()
		st := e.startLogin(attacker, nil)
		h.issue("attacker-code", st.challenge, h.sign(h.claims(st.nonce)))
		expectRefused(t, e, victim, e.callback(victim, "attacker-code", st.state), 0, http.StatusBadRequest, "not started in this browser", cookieMismatch)
	})
	t.Run("state but no code", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		expectRefused(t, e, b, e.callback(b, "", st.state), 0, http.StatusBadRequest, "has no authorization code", "has no authorization code")
		expectSignIn(t, e, h)
	})
	t.Run("provider error", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		r := b.fetch(e.srv.URL + "/callback?" + url.Values{"error": {"access_denied"}, "error_description": {"no"}, "state": {st.state}}.Encode())
		expectRefused(t, e, b, r, 0, http.StatusForbidden, "the identity provider answered access_denied", "the identity provider answered access_denied")
		expectSignIn(t, e, h)
	})
	t.Run("replayed callback", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		h.issue("code-1", st.challenge, h.sign(h.claims(st.nonce)))
		if r := e.callback(b, "code-1", st.state); r.status != http.StatusOK {
			t.Fatalf("first callback: %d %s", r.status, r.body)
		}
		if len(e.sessionsOf("")) != 1 {
			t.Fatal("no session after the first callback")
		}
		// The callback cleared the login cookie: the same URL again in the same browser.
		again := e.callback(b, "code-1", st.state)
		if again.status != http.StatusBadRequest || !strings.Contains(again.body, "not started in this browser") {
			t.Fatalf("replay in the same browser: %d %s", again.status, again.body)
		}
		// An attacker who copied the URL (history, logs, a Referer) and sets the cookie herself.
		thief := e.browser("").noRedirects()
		thief.setLoginCookie(st.state)
		stolen := e.callback(thief, "code-1", st.state)
		if stolen.status != http.StatusBadRequest || !strings.Contains(stolen.body, "was already used") || thief.sessionCookie() != "" {
			t.Fatalf("replay with the cookie: %d %s", stolen.status, stolen.body)
		}
		if n := len(e.sessionsOf("")); n != 1 {
			t.Fatalf("%d sessions after replays", n)
		}
		if n := len(e.entriesOf("signin.refused")); n != 2 {
			t.Fatalf("%d refusals recorded for two replays", n)
		}
	})
	t.Run("replayed authorization code in a new sign-in", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		expectSignIn(t, e, h)
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		h.issue("code-1", st.challenge, h.sign(h.claims(st.nonce)))
		if r := e.callback(b, "code-1", st.state); r.status != http.StatusOK {
			t.Fatalf("first use: %d", r.status)
		}
		b2 := e.browser("").noRedirects()
		st2 := e.startLogin(b2, nil)
		refusals := len(e.entriesOf("signin.refused"))
		r := e.callback(b2, "code-1", st2.state)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "the identity provider refused the code: invalid_grant") || b2.sessionCookie() != "" {
			t.Fatalf("replayed code: %d %s", r.status, r.body)
		}
		if n := len(e.entriesOf("signin.refused")); n != refusals+1 {
			t.Fatalf("refusals %d → %d", refusals, n)
		}
		if n := len(e.sessionsOf("")); n != 2 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("injected code, wrong PKCE verifier", func(t *testing.T) {
		// The attacker has the victim's code (and her own login state): Rampart redeems it with
		// the attacker's flow's verifier, which the provider refuses. The code stays good for
		// the browser it was issued to.
		e, h := newHostileEnv(t, envOptions{})
		victim, attacker := e.browser("").noRedirects(), e.browser("").noRedirects()
		stV := e.startLogin(victim, nil)
		stA := e.startLogin(attacker, nil)
		h.issue("victim-code", stV.challenge, h.sign(h.claims(stV.nonce)))
		expectRefused(t, e, attacker, e.callback(attacker, "victim-code", stA.state), 0, http.StatusBadRequest,
			"the identity provider refused the code: invalid_grant PKCE verification failed", "PKCE verification failed")
		if r := e.callback(victim, "victim-code", stV.state); r.status != http.StatusOK {
			t.Fatalf("victim: %d %s", r.status, r.body)
		}
	})
	t.Run("injected code at a provider that ignores PKCE: the nonce stops it", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		victim, attacker := e.browser("").noRedirects(), e.browser("").noRedirects()
		stV := e.startLogin(victim, nil)
		stA := e.startLogin(attacker, nil)
		h.issue("victim-code", "", h.sign(h.claims(stV.nonce)))
		expectRefused(t, e, attacker, e.callback(attacker, "victim-code", stA.state), 0, http.StatusForbidden, "nonce does not match", "nonce does not match")
	})
	t.Run("oversized code", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		expectRefused(t, e, b, e.callback(b, strings.Repeat("c", 4097), st.state), 0, http.StatusBadRequest, "has no authorization code", "has no authorization code")
		expectSignIn(t, e, h)
	})
	t.Run("oversized state", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		long := strings.Repeat("s", 3000)
		b.setLoginCookie(long)
		expectRefused(t, e, b, e.callback(b, "x", long), 0, http.StatusBadRequest, "missing or malformed browser handle", "missing or malformed browser handle")
		expectSignIn(t, e, h)
	})
	t.Run("oversized token response", func(t *testing.T) {
		// Over golang.org/x/oauth2's 1 MiB limit: the response cannot be read, which is the
		// provider failing (502), not a person refused.
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		c := h.claims(st.nonce)
		c["padding"] = strings.Repeat("p", 2<<20)
		body, _ := json.Marshal(map[string]any{"access_token": hostileAccessToken, "token_type": "Bearer", "expires_in": 3600, "id_token": h.sign(c)})
		h.issueBody("code-1", st.challenge, body)
		expectRefused(t, e, b, e.callback(b, "code-1", st.state), 0, http.StatusBadGateway, "cannot parse json", "")
		expectSignIn(t, e, h)
	})
	t.Run("token response that is not JSON", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		b := e.browser("").noRedirects()
		st := e.startLogin(b, nil)
		h.issueBody("code-1", st.challenge, []byte("<html>gateway error</html>"))
		expectRefused(t, e, b, e.callback(b, "code-1", st.state), 0, http.StatusBadGateway, "identity provider unavailable", "")
		expectSignIn(t, e, h)
	})
}

// cliSession signs frank in through the CLI loopback flow and returns the token response.
func cliSession(t *testing.T, e *env, h *hostileProvider, verifier string) map[string]any {
	t.Helper()
	form := cliCode(t, e, h, verifier)
	st, out := e.tokenCall("", form)
	if st != http.StatusOK {
		t.Fatalf("CLI redeem: %d %v", st, out)
	}
	return out
}

// cliCode runs the browser part of a CLI sign-in and returns the form the CLI would post.
func cliCode(t *testing.T, e *env, h *hostileProvider, verifier string) url.Values {
	t.Helper()
	redirect := fmt.Sprintf("http://127.0.0.1:%d/cb", freePort(t))
	b := e.browser("").noRedirects()
	st := e.startLogin(b, url.Values{"redirect_uri": {redirect}, "state": {"cli-state"}, "code_challenge": {pkceS256(verifier)}, "code_challenge_method": {"S256"}})
	code := "code-" + st.state[:8]
	h.issue(code, st.challenge, h.sign(h.claims(st.nonce)))
	r := e.callback(b, code, st.state)
	loc, _ := url.Parse(r.header.Get("Location"))
	if r.status != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("state") != "cli-state" {
		t.Fatalf("CLI callback: %d %q %s", r.status, r.header.Get("Location"), r.body)
	}
	return url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier}, "redirect_uri": {redirect}}
}

// Attacks on the token endpoint: Rampart's own one-time codes and PKCE, refresh token replay,
// oversized and malformed input.
func TestTokenEndpointAttacks(t *testing.T) {
	verifier := strings.Repeat("v", 43)
	t.Run("wrong PKCE verifier burns the code", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		form := cliCode(t, e, h, verifier)
		wrong := url.Values{}
		for k, v := range form {
			wrong[k] = v
		}
		wrong.Set("code_verifier", strings.Repeat("w", 43))
		st, out := e.tokenCall("", wrong)
		if st != http.StatusBadRequest || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "PKCE code_verifier does not match") {
			t.Fatalf("wrong verifier: %d %v", st, out)
		}
		refusals := e.entriesOf("signin.refused")
		if len(refusals) != 1 || !strings.Contains(refusals[0].message, "frank") || !strings.Contains(refusals[0].message, "code_verifier") {
			t.Fatalf("refusals: %+v", refusals)
		}
		if st, out := e.tokenCall("", form); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
			t.Fatalf("right verifier after a wrong one: %d %v", st, out)
		}
		if n := len(e.sessionsOf("")); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("verifier of the wrong length", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		for _, v := range []string{"", strings.Repeat("v", 42), strings.Repeat("v", 129)} {
			form := cliCode(t, e, h, verifier)
			form.Set("code_verifier", v)
			if st, out := e.tokenCall("", form); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
				t.Fatalf("verifier of %d characters: %d %v", len(v), st, out)
			}
		}
		if n := len(e.sessionsOf("")); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("replayed one-time code", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		form := cliCode(t, e, h, verifier)
		if st, out := e.tokenCall("", form); st != http.StatusOK {
			t.Fatalf("first: %d %v", st, out)
		}
		st, out := e.tokenCall("", form)
		if st != http.StatusBadRequest || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "already used") {
			t.Fatalf("replay: %d %v", st, out)
		}
		if n := len(e.sessionsOf("")); n != 1 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("replayed refresh token after rotation", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		first := cliSession(t, e, h, verifier)
		rt1 := first["refresh_token"].(string)
		st, second := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
		if st != http.StatusOK || second["refresh_token"] == rt1 {
			t.Fatalf("rotation: %d %v", st, second)
		}
		st, out := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
		if st != http.StatusBadRequest || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "already used") {
			t.Fatalf("replay: %d %v", st, out)
		}
		expectFamilyRevoked(t, e, second["refresh_token"].(string), second["access_token"].(string))
	})
	t.Run("replayed refresh token from a risky address", func(t *testing.T) {
		// The replay comes from an anonymising service (medium risk). It must still be seen as
		// a replay and end the session, not only be refused as risky.
		e, h := newHostileEnv(t, envOptions{})
		first := cliSession(t, e, h, verifier)
		rt1 := first["refresh_token"].(string)
		st, second := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
		if st != http.StatusOK {
			t.Fatalf("rotation: %d %v", st, second)
		}
		st, out := e.tokenCall(anonymousIP, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
		if st != http.StatusBadRequest || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "already used") {
			t.Fatalf("replay from %s: %d %v", anonymousIP, st, out)
		}
		expectFamilyRevoked(t, e, second["refresh_token"].(string), second["access_token"].(string))
	})
	t.Run("unknown and malformed refresh tokens", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		cliSession(t, e, h, verifier)
		for _, rt := range []string{"", "nope", identity.RefreshPrefix + "AAAA", identity.RefreshPrefix + strings.Repeat("A", 200), strings.Repeat("x", 10000)} {
			st, out := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if st != http.StatusBadRequest || out["error"] != "invalid_grant" || out["access_token"] != nil {
				t.Fatalf("refresh token of %d bytes: %d %v", len(rt), st, out)
			}
		}
		if n := len(e.sessionsOf("")); n != 1 {
			t.Fatalf("%d sessions", n)
		}
	})
	t.Run("oversized and malformed bodies", func(t *testing.T) {
		e, _ := newHostileEnv(t, envOptions{})
		post := func(contentType, body string) (int, map[string]any) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/token", strings.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			return e.do(req)
		}
		form := "application/x-www-form-urlencoded"
		for _, c := range []struct {
			ct, body, want string
		}{
			{form, "grant_type=refresh_token&refresh_token=" + strings.Repeat("a", 17<<10), "invalid_request"},
			{form, "grant_type=%zz", "invalid_request"},
			{form, "grant_type=password&username=frank&password=x", "unsupported_grant_type"},
			{form, "grant_type=client_credentials", "unsupported_grant_type"},
			{form, "", "unsupported_grant_type"},
			{"application/json", `{"grant_type":"refresh_token"}`, "unsupported_grant_type"},
			{form, "grant_type=authorization_code&code=" + strings.Repeat("c", 129) + "&code_verifier=" + verifier, "invalid_grant"},
			{form, "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=" + strings.Repeat("d", 129), "invalid_grant"},
			{form, "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code=unknown", "expired_token"},
			{form, "grant_type=urn:rampart:params:oauth:grant-type:otp&mfa_token=unknown&otp=123456", "invalid_grant"},
		} {
			st, out := post(c.ct, c.body)
			if st != http.StatusBadRequest || out["error"] != c.want || out["access_token"] != nil {
				t.Errorf("%.80s: %d %v, want 400 %s", c.body, st, out, c.want)
			}
		}
		if n := len(e.sessionsOf("")); n != 0 {
			t.Fatalf("%d sessions", n)
		}
	})
}

// expectFamilyRevoked checks that a refresh token replay ended the session: one
// session.refresh_reused entry, the session revoked, its newest tokens dead, no other session.
func expectFamilyRevoked(t *testing.T, e *env, newRefresh, newAccess string) {
	t.Helper()
	if n := len(e.entriesOf("session.refresh_reused")); n != 1 {
		t.Fatalf("%d session.refresh_reused entries; ledger %v", n, e.codes())
	}
	s := e.sessionsOf("")
	if len(s) != 1 || s[0].RevokedAt.IsZero() {
		t.Fatalf("sessions after a replay: %+v", s)
	}
	if st, out := e.tokenCall("", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {newRefresh}}); st != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("the rotated refresh token after the replay: %d %v", st, out)
	}
	if _, err := e.auth.Verify(t.Context(), newAccess); err == nil {
		t.Fatal("the access token still works after the replay")
	}
	if n := len(e.sessionsOf("")); n != 1 {
		t.Fatalf("%d sessions", n)
	}
}

// The device flow verifies the ID token the provider returns to a poll as strictly as the
// browser flow does.
func TestDeviceFlowForgedIDTokens(t *testing.T) {
	poll := func(e *env) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/device", nil)
		st, dev := e.do(req)
		if st != http.StatusOK {
			t.Fatalf("device start: %d %v", st, dev)
		}
		return e.tokenCall("", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dev["device_code"].(string)}})
	}
	t.Run("control", func(t *testing.T) {
		e, h := newHostileEnv(t, envOptions{})
		h.deviceAnswers(h.sign(h.claims("")))
		st, out := poll(e)
		if st != http.StatusOK || out["session"].(map[string]any)["subject"] != "frank" {
			t.Fatalf("%d %v", st, out)
		}
	})
	for _, c := range []struct {
		name  string
		token func(t *testing.T, h *hostileProvider) string
		says  string
	}{
		{"alg none", func(t *testing.T, h *hostileProvider) string { return unsignedJWT(t, "key-1", h.claims("")) }, "signature algorithm not supported"},
		{"HS256 keyed with the public key", func(t *testing.T, h *hostileProvider) string {
			der, _ := x509.MarshalPKIXPublicKey(&h.key("key-1").PublicKey)
			return signJWT(t, jose.HS256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), "key-1", h.claims(""))
		}, "signature algorithm not supported"},
		{"foreign key", func(t *testing.T, h *hostileProvider) string {
			return signJWT(t, jose.RS256, strangerRSA(t), "key-1", h.claims(""))
		}, "invalid signature"},
		{"wrong audience", func(t *testing.T, h *hostileProvider) string {
			c := h.claims("")
			c["aud"] = "vault"
			return h.sign(c)
		}, "audience is not valid"},
		{"expired", func(t *testing.T, h *hostileProvider) string {
			c := h.claims("")
			c["exp"], c["iat"] = time.Now().Add(-time.Minute).Unix(), time.Now().Add(-time.Hour).Unix()
			return h.sign(c)
		}, "token has expired"},
		{"not valid yet (nbf)", func(t *testing.T, h *hostileProvider) string {
			c := h.claims("")
			c["nbf"] = time.Now().Add(time.Hour).Unix()
			return h.sign(c)
		}, "not valid before"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, h := newHostileEnv(t, envOptions{})
			h.deviceAnswers(c.token(t, h))
			st, out := poll(e)
			if st != http.StatusForbidden || out["error"] != "access_denied" || !strings.Contains(fmt.Sprint(out["error_description"]), c.says) || out["access_token"] != nil {
				t.Fatalf("%d %v", st, out)
			}
			refusals := e.entriesOf("signin.refused")
			if len(refusals) != 1 || !strings.Contains(refusals[0].message, c.says) {
				t.Fatalf("refusals: %+v", refusals)
			}
			if n := len(e.sessionsOf("")); n != 0 {
				t.Fatalf("%d sessions", n)
			}
		})
	}
}
