package signin_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
)

// hostileProvider is a HOSTILE OpenID provider for tests. Its discovery document and JWKS are
// real (RSA keys, go-jose), but its token endpoint answers whatever the test crafted: an ID token
// with any header, signature and claims, or any body at all. It plays the part of a compromised
// or impersonated provider, or of a network attacker who controls the token response, so that
// Rampart's verification of what comes back can be attacked directly. Its /authorize endpoint is
// never followed: the tests read state, nonce and PKCE challenge from Rampart's redirect.
//
// It behaves like an honest provider in two ways a relying party relies on: a code is redeemed
// at most once, and only with the PKCE verifier of the challenge it was issued for.
type hostileProvider struct {
	t        *testing.T
	srv      *httptest.Server
	issuer   string
	jwksHits atomic.Int64

	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey // published in the JWKS, by kid
	current string                     // the kid that signs
	grants  map[string]*hostileGrant   // by authorization code
	device  *hostileGrant              // what the device grant answers
}

// hostileGrant is what the token endpoint answers for one code.
type hostileGrant struct {
	challenge string // PKCE S256 challenge the code was issued for ("" when not checked)
	idToken   string // returned as id_token (omitted when empty)
	body      []byte // if set, the whole response body instead
	used      bool
}

const (
	hostileClientID     = "rampart"
	hostileClientSecret = "rampart-secret"
	hostileAccessToken  = "hostile-access-token"
)

func newHostileProvider(t *testing.T) *hostileProvider {
	t.Helper()
	h := &hostileProvider{t: t, keys: map[string]*rsa.PrivateKey{}, grants: map[string]*hostileGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		writeJSONBody(w, http.StatusOK, map[string]any{
			"issuer":                                h.issuer,
			"authorization_endpoint":                h.issuer + "/authorize",
			"token_endpoint":                        h.issuer + "/token",
			"jwks_uri":                              h.issuer + "/jwks",
			"device_authorization_endpoint":         h.issuer + "/device",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported":      []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		h.jwksHits.Add(1)
		h.mu.Lock()
		defer h.mu.Unlock()
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
		for kid, k := range h.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Use: "sig", Algorithm: string(jose.RS256)})
		}
		writeJSONBody(w, http.StatusOK, set)
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "the hostile provider's login page is never followed in these tests", http.StatusTeapot)
	})
	mux.HandleFunc("POST /device", func(w http.ResponseWriter, r *http.Request) {
		if !h.clientOK(w, r) {
			return
		}
		writeJSONBody(w, http.StatusOK, map[string]any{"device_code": "hostile-device-code", "user_code": "HOST-ILE1",
			"verification_uri": h.issuer + "/device-login", "expires_in": 600, "interval": 5})
	})
	mux.HandleFunc("POST /token", h.token)
	h.srv = httptest.NewServer(mux)
	h.issuer = h.srv.URL
	t.Cleanup(h.srv.Close)
	h.rotate("key-1")
	return h
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// clientOK checks Rampart's client credentials (client_secret_basic or client_secret_post).
func (h *hostileProvider) clientOK(w http.ResponseWriter, r *http.Request) bool {
	_ = r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != hostileClientID || secret != hostileClientSecret {
		writeJSONBody(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return false
	}
	return true
}

func (h *hostileProvider) token(w http.ResponseWriter, r *http.Request) {
	if !h.clientOK(w, r) {
		return
	}
	f := r.PostForm
	h.mu.Lock()
	defer h.mu.Unlock()
	var g *hostileGrant
	switch f.Get("grant_type") {
	case "authorization_code":
		g = h.grants[f.Get("code")]
		switch {
		case g == nil:
			writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "unknown code"})
			return
		case g.used:
			writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "code already redeemed"})
			return
		case f.Get("code_verifier") == "" || (g.challenge != "" && pkceS256(f.Get("code_verifier")) != g.challenge):
			writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "PKCE verification failed"})
			return
		}
		// Spent only when redeemed (a raw body is never redeemed), so that an attempt with a
		// wrong verifier leaves the code to the browser it was issued to, and the auth style
		// probe of golang.org/x/oauth2 (which retries a failed exchange with the client
		// credentials in the form) sees the same answer twice.
		g.used = g.body == nil
	case "urn:ietf:params:oauth:grant-type:device_code":
		g = h.device
		if g == nil || f.Get("device_code") != "hostile-device-code" {
			writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "authorization_pending"})
			return
		}
	default:
		writeJSONBody(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if g.body != nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(g.body)
		return
	}
	resp := map[string]any{"access_token": hostileAccessToken, "token_type": "Bearer", "expires_in": 3600}
	if g.idToken != "" {
		resp["id_token"] = g.idToken
	}
	writeJSONBody(w, http.StatusOK, resp)
}

// issue makes code redeemable (once, with the verifier of challenge) for a response with idToken.
func (h *hostileProvider) issue(code, challenge, idToken string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.grants[code] = &hostileGrant{challenge: challenge, idToken: idToken}
}

// issueBody makes code answer with a raw body.
func (h *hostileProvider) issueBody(code, challenge string, body []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.grants[code] = &hostileGrant{challenge: challenge, body: body}
}

// deviceAnswers sets what the device grant returns once polled.
func (h *hostileProvider) deviceAnswers(idToken string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.device = &hostileGrant{idToken: idToken}
}

// rotate publishes a new key and signs with it from now on (older keys stay published).
func (h *hostileProvider) rotate(kid string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys[kid], h.current = k, kid
}

// retire stops publishing a key (the private key stays usable by the test: a leaked old key).
func (h *hostileProvider) retire(kid string) *rsa.PrivateKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := h.keys[kid]
	delete(h.keys, kid)
	return k
}

func (h *hostileProvider) key(kid string) *rsa.PrivateKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keys[kid]
}

// claims are a correct ID token's claims for Rampart's client, naming frank.
func (h *hostileProvider) claims(nonce string) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": h.issuer, "sub": "idp-sub-frank", "aud": []string{hostileClientID},
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "auth_time": now.Unix(),
		"preferred_username": "frank", "groups": []string{"ml-research"}}
	if nonce != "" {
		c["nonce"] = nonce
	}
	return c
}

// sign signs claims as the provider does: RS256 with the current key, its kid in the header.
func (h *hostileProvider) sign(claims map[string]any) string {
	h.mu.Lock()
	kid, key := h.current, h.keys[h.current]
	h.mu.Unlock()
	return signJWT(h.t, jose.RS256, key, kid, claims)
}

// signJWT signs claims with any algorithm and key go-jose accepts; kid is put in the header when
// not empty.
func signJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsignedJWT is a token with {"alg":"none"} and an empty signature.
func unsignedJWT(t *testing.T, kid string, claims map[string]any) string {
	t.Helper()
	header := map[string]string{"alg": "none", "typ": "JWT"}
	if kid != "" {
		header["kid"] = kid
	}
	hb, _ := json.Marshal(header)
	cb, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb) + "."
}

func pkceS256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// newHostileEnv is the harness's env (Rampart's real sign-in service on real HTTP over a real
// SQLite store, the same risk engine and sessions) pointed at a hostile provider.
func newHostileEnv(t *testing.T, o envOptions) (*env, *hostileProvider) {
	t.Helper()
	h := newHostileProvider(t)
	e := &env{t: t, now: time.Now, opSrv: h.srv, issuer: h.issuer}
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	external := "http://" + e.srv.Listener.Addr().String()
	var err error
	e.store, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := risk.ParsePrefixList("anonymous.txt", strings.NewReader(anonymousIP+"\n"))
	bad, _ := risk.ParsePrefixList("bad.txt", strings.NewReader(badIP+"\n"))
	engine, err := risk.NewEngine(risk.Config{AnonymousIPs: anon, BadIPs: bad}, nil, e.store)
	if err != nil {
		t.Fatal(err)
	}
	e.sessions = &identity.Sessions{Store: e.store, Now: e.now}
	e.auth = &identity.Chain{Sessions: e.sessions}
	sealer, _ := identity.NewSealer(make([]byte, 32))
	e.svc, err = signin.New(signin.Config{
		Issuer: h.issuer, ClientID: hostileClientID, ClientSecret: hostileClientSecret, ExternalURL: external,
		StepUp: o.stepUp, Outcomes: o.outcomes, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, signin.Deps{Sessions: e.sessions, Store: e.store, Auth: e.auth, Risk: engine, Policy: func() *policy.Policy { return pol },
		Record: func(ctx context.Context, ev audit.Event) error {
			return e.store.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
		}, Refused: o.refused, Sealer: sealer, Now: e.now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Register(mux)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e, h
}

// noRedirects makes a browser stop at every redirect, so the tests can read where it was sent.
func (b *browser) noRedirects() *browser {
	b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return b
}

// reply is a response with its headers, read to the end.
type reply struct {
	status int
	header http.Header
	body   string
}

func (b *browser) fetch(u string) reply {
	b.e.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// setLoginCookie puts a rampart_login cookie in the jar, as an attacker driving her own client
// can.
func (b *browser) setLoginCookie(value string) {
	u, _ := url.Parse(b.e.srv.URL + "/callback")
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "rampart_login", Value: value, Path: "/callback"}})
}

// loginStart is what Rampart's redirect to the provider carries.
type loginStart struct {
	state, nonce, challenge string
	authorize               *url.URL
}

// startLogin does GET /login?query and reads the redirect to the provider's /authorize.
func (e *env) startLogin(b *browser, query url.Values) loginStart {
	e.t.Helper()
	r := b.fetch(e.srv.URL + "/login?" + query.Encode())
	loc, err := url.Parse(r.header.Get("Location"))
	if r.status != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), e.issuer+"/authorize?") {
		e.t.Fatalf("GET /login: %d, Location %q\n%s", r.status, r.header.Get("Location"), r.body)
	}
	q := loc.Query()
	st := loginStart{state: q.Get("state"), nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), authorize: loc}
	if st.state == "" || st.nonce == "" || len(st.challenge) != 43 || q.Get("code_challenge_method") != "S256" || q.Get("client_id") != hostileClientID {
		e.t.Fatalf("authorize request lacks state, nonce or PKCE: %v", q)
	}
	return st
}

// callback is the browser's return from the provider: GET /callback?code=…&state=….
func (e *env) callback(b *browser, code, state string) reply {
	e.t.Helper()
	return b.fetch(e.srv.URL + "/callback?" + url.Values{"code": {code}, "state": {state}}.Encode())
}

// ledgerEntry is the part of a ledger entry the tests look at.
type ledgerEntry struct {
	code, message, raw string
}

func (e *env) ledger() []ledgerEntry {
	e.t.Helper()
	recs, err := e.store.Entries(context.Background(), 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]ledgerEntry, 0, len(recs))
	for _, r := range recs {
		var ev struct {
			Message  string `json:"message"`
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(r.Data, &ev); err != nil {
			e.t.Fatalf("ledger entry %d is not JSON: %v", r.Seq, err)
		}
		out = append(out, ledgerEntry{code: ev.Metadata.EventCode, message: ev.Message, raw: string(r.Data)})
	}
	return out
}

// entriesOf returns the ledger entries with code.
func (e *env) entriesOf(code string) []ledgerEntry {
	var out []ledgerEntry
	for _, en := range e.ledger() {
		if en.code == code {
			out = append(out, en)
		}
	}
	return out
}

func (e *env) sessionsOf(subject string) []identity.Session {
	e.t.Helper()
	s, err := e.store.ListSessions(context.Background(), subject)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// htmlText undoes html/template's escaping of a page, enough to search it for error text.
func htmlText(s string) string {
	return strings.NewReplacer("&#34;", `"`, "&#39;", "'", "&amp;", "&", "&lt;", "<", "&gt;", ">", "&#43;", "+").Replace(s)
}
