// Package devop is a development OpenID Provider: a real one, served in-process, so that Rampart's
// relying-party code and its tests sign in with real tokens and never with mocks.
//
// It is built on the certified op package of github.com/zitadel/oidc/v3 and adds what that
// package leaves to its users: an in-memory store of users, clients, sessions and tokens, a
// minimal HTML login form, and a page to approve devices. It serves:
//
//   - the authorization code flow with PKCE (S256 only; required for public clients), state and
//     nonce, max_age and prompt=login and prompt=none, and acr_values=mfa, which asks for a
//     one-time code at login;
//   - the device authorization grant (RFC 8628), with authorization_pending, slow_down,
//     expired_token and access_denied;
//   - ID tokens signed with RS256, keys that can be rotated while the old ones stay published;
//   - a userinfo endpoint.
//
// It is for development and tests only: users and their passwords are in its configuration, all
// state is in memory and is lost when the process ends. Do not point production at it.
//
// Security properties it keeps anyway, because tests of Rampart rely on them: authorization codes
// live 60 seconds and are redeemed at most once (a replayed code fails and revokes the access
// tokens issued for it); redirect URIs must match exactly, except that a loopback redirect may
// use any port (RFC 8252); a disabled user cannot sign in and loses access to userinfo at once.
//
// Lifetimes are fixed and short: an authorization code 60 s, a pending login 10 min, the
// provider's own browser session 12 h, a device code 10 min with a poll interval of 1 s. Time
// comes from [Config.Now], except for the iat and exp of ID tokens: the op package stamps those
// from the wall clock, which is also what every relying party verifies them against.
//
// # Signing in from a test
//
// Start the authorization with any OIDC client (for example rp.AuthURL of the same module) and
// send a cookie-keeping http.Client to the authorize URL. It is redirected to {issuer}/login?id=…,
// an HTML page with one form. Post that form back to its action with the hidden field id kept and
// the fields username, password and, optionally, otp (see [TOTPCode]). Success answers 303 to
// {issuer}/authorize/callback, which answers 302 to the client's redirect URI with code and state;
// wrong credentials answer 422 with the form again and the reason. A later authorize in the same
// cookie jar skips the form unless max_age, prompt=login or acr_values=mfa say otherwise. The
// device page at {issuer}/device takes the same fields plus user_code, and action=deny to refuse.
//
// Logs of this package go to [Config.Logger]; the op package logs protocol errors to
// slog.Default, which it offers no way to change.
package devop

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Lifetimes the provider applies; they are fixed, short and documented because tests of
// relying parties depend on them.
const (
	codeTTL        = 60 * time.Second // an authorization code can be redeemed this long
	authRequestTTL = 10 * time.Minute // the user has this long to finish the login form
	sessionTTL     = 12 * time.Hour   // the provider's browser session skips the form this long
	deviceCodeTTL  = 10 * time.Minute // a device authorization waits this long for the user
	// devicePollInterval is the interval the device authorization response asks for. A poll that
	// comes more than half an interval early is answered slow_down, and the interval for that
	// device code grows by 5 seconds (RFC 8628, section 3.5).
	devicePollInterval = time.Second
)

// Claim names and values the provider emits beyond the registered ones.
const (
	claimGroups = "groups"
	acrPassword = "pwd" // amr ["pwd"]
	acrMFA      = "mfa" // amr ["pwd","otp","mfa"]; asking for it in acr_values requires a one-time code
)

// sessionCookie holds the provider's own browser session; scoped to the issuer's path, HttpOnly,
// SameSite=Lax.
const sessionCookie = "devop_session"

// User is an account that can sign in.
type User struct {
	Name     string   // subject and preferred_username, e.g. "alice"
	Password string   // compared in constant time
	Email    string   // the email claim, reported as verified
	Groups   []string // emitted in the "groups" claim
	// TOTPSecret, if set (base32), lets the user add a one-time code at login; a valid code makes
	// the authentication multi-factor: amr ["pwd","otp","mfa"] and acr "mfa" (else amr ["pwd"],
	// acr "pwd").
	TOTPSecret string
	Disabled   bool // refused at login
}

// Client is a registered relying party.
type Client struct {
	ID, Secret   string   // Secret empty = public client (PKCE required; a secret sent is refused)
	RedirectURIs []string // exact match; http://127.0.0.1 loopback URIs may use any port (RFC 8252)
	// GrantTypes the client may use: authorization_code and/or the device_code grant (default
	// both). Real providers restrict them per application (Okta and Auth0 allow the device grant
	// only to native applications), and tests of relying parties reproduce that with it.
	GrantTypes []oidc.GrantType
}

// Config configures a Provider. Issuer, at least one user and at least one client are required.
type Config struct {
	Issuer  string           // the external URL the provider is mounted at, e.g. http://127.0.0.1:8470/dev-idp
	Users   []User           // accounts that can sign in
	Clients []Client         // relying parties that may ask for tokens
	Now     func() time.Time // injectable clock (default time.Now)
	Logger  *slog.Logger     // logins, refusals, replays, key rotations (default: discard)
	// AccessTokenTTL and IDTokenTTL are the lifetimes of the tokens (default 5 minutes each).
	AccessTokenTTL, IDTokenTTL time.Duration
}

// Provider is a running development OpenID Provider. Its methods are safe for concurrent use.
type Provider struct {
	store   *storage
	op      *op.Provider
	handler http.Handler
	log     *slog.Logger
	now     func() time.Time
	secure  bool // the issuer is https, so cookies are Secure
	path    string
}

// ErrConfig is wrapped by every error New returns for a bad Config.
var ErrConfig = errors.New("devop: invalid config")

// New validates cfg, generates an RSA signing key and returns a Provider. Serve it with Handler.
func New(cfg Config) (*Provider, error) {
	issuerURL, err := validateConfig(&cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = 5 * time.Minute
	}
	if cfg.IDTokenTTL == 0 {
		cfg.IDTokenTTL = 5 * time.Minute
	}
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	store := newStorage(cfg, key)

	p := &Provider{
		store:  store,
		log:    cfg.Logger,
		now:    cfg.Now,
		secure: issuerURL.Scheme == "https",
		path:   issuerURL.Path,
	}
	opConfig := &op.Config{
		CodeMethodS256: true,
		AuthMethodPost: true,
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     deviceCodeTTL,
			PollInterval: devicePollInterval,
			UserFormPath: issuerURL.Path + "/device",
			UserCode:     op.UserCodeBase20,
		},
		SupportedScopes: []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail},
		SupportedClaims: supportedClaims,
	}
	if _, err := rand.Read(opConfig.CryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devop: generate token encryption key: %w", err)
	}
	// WithAllowInsecure: a development provider is normally served over plain http on loopback.
	p.op, err = op.NewProvider(opConfig, store, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devop: %w", err)
	}
	p.handler = p.routes()
	return p, nil
}

// Handler serves the provider. It expects request paths that still begin with the issuer's path,
// so mount it as it is, without http.StripPrefix: for the issuer http://127.0.0.1:8470/dev-idp,
// mux.Handle("/dev-idp/", p.Handler()). Under the issuer it serves
//
//	GET  /.well-known/openid-configuration  discovery
//	GET  /keys                              JWKS
//	GET  /authorize                         authorization endpoint (POST too)
//	GET  /authorize/callback                back from the login form to the client's redirect URI
//	POST /oauth/token                       token endpoint: authorization_code, device_code
//	GET  /userinfo                          userinfo (POST too)
//	POST /device_authorization              device authorization endpoint
//	GET  /login?id=…, POST /login           login form
//	GET  /device[?user_code=…], POST /device  device approval page
func (p *Provider) Handler() http.Handler { return p.handler }

// RotateKeys makes a new signing key current. Earlier keys stay in the JWKS, so tokens they signed
// still verify; new tokens carry the new key's kid.
func (p *Provider) RotateKeys() error {
	key, err := newSigningKey()
	if err != nil {
		return err
	}
	p.store.addKey(key)
	p.log.Info("devop: signing key rotated", "kid", key.ID())
	return nil
}

// SetUserDisabled disables or re-enables the named user. Disabling also ends the user's sessions
// at the provider and makes their access tokens fail at userinfo. An unknown name is ignored.
func (p *Provider) SetUserDisabled(name string, disabled bool) {
	if p.store.setUserDisabled(name, disabled) {
		p.log.Info("devop: user disabled changed", "user", name, "disabled", disabled)
	}
}

var supportedClaims = []string{
	"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "azp", "at_hash", "c_hash",
	"preferred_username", "email", "email_verified", claimGroups,
}

func validateConfig(cfg *Config) (*url.URL, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	u, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Issuer == "":
		return nil, bad("Issuer is empty; set it to the external URL the provider is mounted at, e.g. http://127.0.0.1:8470/dev-idp")
	case err != nil:
		return nil, bad("Issuer %q: %v", cfg.Issuer, err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, bad("Issuer %q must be an absolute http or https URL", cfg.Issuer)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, bad("Issuer %q must not have a query, fragment or user info", cfg.Issuer)
	case strings.HasSuffix(cfg.Issuer, "/"):
		return nil, bad("Issuer %q must not end with /; relying parties compare it byte for byte", cfg.Issuer)
	case u.RawPath != "":
		return nil, bad("Issuer %q must not have escaped characters in its path", cfg.Issuer)
	}
	if len(cfg.Users) == 0 {
		return nil, bad("Users is empty; configure at least one user")
	}
	names := map[string]bool{}
	for i, usr := range cfg.Users {
		switch {
		case usr.Name == "":
			return nil, bad("Users[%d].Name is empty", i)
		case names[usr.Name]:
			return nil, bad("Users[%d].Name %q is a duplicate", i, usr.Name)
		case usr.Password == "":
			return nil, bad("Users[%d] (%q) has an empty Password", i, usr.Name)
		}
		names[usr.Name] = true
		if usr.TOTPSecret != "" {
			if _, err := decodeTOTPSecret(usr.TOTPSecret); err != nil {
				return nil, bad("Users[%d] (%q).TOTPSecret: %v", i, usr.Name, err)
			}
		}
	}
	if len(cfg.Clients) == 0 {
		return nil, bad("Clients is empty; configure at least one client")
	}
	ids := map[string]bool{}
	for i, c := range cfg.Clients {
		switch {
		case c.ID == "":
			return nil, bad("Clients[%d].ID is empty", i)
		case ids[c.ID]:
			return nil, bad("Clients[%d].ID %q is a duplicate", i, c.ID)
		}
		ids[c.ID] = true
		for j, g := range c.GrantTypes {
			if g != oidc.GrantTypeCode && g != oidc.GrantTypeDeviceCode {
				return nil, bad("Clients[%d] (%q).GrantTypes[%d]: %q is not %s or %s", i, c.ID, j, g, oidc.GrantTypeCode, oidc.GrantTypeDeviceCode)
			}
		}
		for j, ru := range c.RedirectURIs {
			if err := validateRedirectURI(ru); err != nil {
				return nil, bad("Clients[%d] (%q).RedirectURIs[%d]: %v", i, c.ID, j, err)
			}
		}
	}
	if cfg.AccessTokenTTL < 0 || cfg.IDTokenTTL < 0 {
		return nil, bad("AccessTokenTTL and IDTokenTTL must not be negative")
	}
	return u, nil
}

// routes builds the handler tree. The op package serves the protocol endpoints; this package
// serves discovery (so that it advertises only what is supported), the authorize endpoint (to
// apply its own redirect URI and PKCE rules), and the login and device pages.
func (p *Provider) routes() http.Handler {
	protocol := p.op // the op package's own router, which expects paths relative to the issuer
	authz := &authorizer{Provider: p.op, store: p.store}
	csrf := http.NewCrossOriginProtection()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.Handle("GET /keys", protocol)
	mux.HandleFunc("/authorize", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
			return
		}
		op.Authorize(w, r, authz)
	})
	mux.Handle("GET /authorize/callback", protocol)
	mux.Handle("POST /oauth/token", protocol)
	mux.Handle("GET /userinfo", protocol)
	mux.Handle("POST /userinfo", protocol)
	mux.Handle("POST /device_authorization", protocol)
	mux.HandleFunc("GET /login", p.loginPage)
	mux.Handle("POST /login", csrf.Handler(http.HandlerFunc(p.loginSubmit)))
	mux.HandleFunc("GET /device", p.devicePage)
	mux.Handle("POST /device", csrf.Handler(http.HandlerFunc(p.deviceSubmit)))

	withIssuer := op.NewIssuerInterceptor(p.op.IssuerFromRequest).Handler(mux)
	return http.StripPrefix(p.path, withIssuer)
}

// discovery serves the op package's discovery document, trimmed to what this provider supports:
// no implicit flow, no refresh, introspection, revocation or logout, PKCE with S256 only.
func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	cfg := op.CreateDiscoveryConfig(r.Context(), p.op, p.store)
	cfg.IntrospectionEndpoint = ""
	cfg.RevocationEndpoint = ""
	cfg.EndSessionEndpoint = ""
	cfg.CheckSessionIframe = ""
	cfg.ResponseTypesSupported = []string{string(oidc.ResponseTypeCode)}
	cfg.ResponseModesSupported = []string{string(oidc.ResponseModeQuery), string(oidc.ResponseModeFormPost)}
	cfg.GrantTypesSupported = []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}
	cfg.CodeChallengeMethodsSupported = []oidc.CodeChallengeMethod{oidc.CodeChallengeMethodS256}
	cfg.TokenEndpointAuthMethodsSupported = []oidc.AuthMethod{oidc.AuthMethodNone, oidc.AuthMethodBasic, oidc.AuthMethodPost}
	cfg.TokenEndpointAuthSigningAlgValuesSupported = nil
	cfg.IntrospectionEndpointAuthMethodsSupported = nil
	cfg.IntrospectionEndpointAuthSigningAlgValuesSupported = nil
	cfg.RevocationEndpointAuthMethodsSupported = nil
	cfg.RevocationEndpointAuthSigningAlgValuesSupported = nil
	cfg.ACRValuesSupported = []string{acrPassword, acrMFA}
	cfg.ClaimsSupported = supportedClaims
	op.Discover(w, cfg)
}

// authorizer is the op package's provider with this package's validation of authorize requests
// (op.AuthorizeValidator), which replaces the op package's redirect URI rules with exact matching
// plus RFC 8252 loopback ports, and adds this provider's PKCE and scope rules.
type authorizer struct {
	*op.Provider
	store *storage
}

// ValidateAuthRequest implements op.AuthorizeValidator.
func (a *authorizer) ValidateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ op.Storage, verifier *op.IDTokenHintVerifier) (string, error) {
	c, ok := a.store.client(req.ClientID)
	if !ok {
		return "", oidc.ErrInvalidRequestRedirectURI().WithDescription("unknown client_id %q", req.ClientID)
	}
	if !c.redirectAllowed(req.RedirectURI) {
		return "", oidc.ErrInvalidRequestRedirectURI().WithDescription("redirect_uri %q is not registered for client %q", req.RedirectURI, req.ClientID)
	}
	// After the redirect URI is known to be the client's: this error is sent to it.
	if !slices.Contains(c.GrantTypes(), oidc.GrantTypeCode) {
		return "", oidc.ErrUnauthorizedClient().WithDescription("client %q may not use the authorization code flow", req.ClientID)
	}
	var err error
	if req.MaxAge, err = op.ValidateAuthReqPrompt(req.Prompt, req.MaxAge); err != nil {
		return "", err
	}
	if req.Scopes, err = op.ValidateAuthReqScopes(c, req.Scopes); err != nil {
		return "", err
	}
	if !slices.Contains(req.Scopes, oidc.ScopeOpenID) {
		return "", oidc.ErrInvalidScope().WithDescription("scope must include openid")
	}
	if err := op.ValidateAuthReqResponseType(c, req.ResponseType); err != nil {
		return "", err
	}
	if err := validatePKCE(c, req.CodeChallenge, req.CodeChallengeMethod); err != nil {
		return "", err
	}
	return op.ValidateAuthReqIDTokenHint(ctx, req.IDTokenHint, verifier)
}

// validatePKCE accepts S256 only (plain gives no protection if the challenge leaks) and requires
// it of public clients, which have no other proof that they started the flow.
func validatePKCE(c *client, challenge string, method oidc.CodeChallengeMethod) error {
	if challenge == "" {
		if method != "" {
			return oidc.ErrInvalidRequest().WithDescription("code_challenge_method without code_challenge")
		}
		if c.public() {
			return oidc.ErrInvalidRequest().WithDescription("public clients must use PKCE: send code_challenge and code_challenge_method=S256")
		}
		return nil
	}
	if method != oidc.CodeChallengeMethodS256 {
		return oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	}
	if !isBase64URLChallenge(challenge) {
		return oidc.ErrInvalidRequest().WithDescription("code_challenge must be the 43-character base64url SHA-256 of the code_verifier")
	}
	return nil
}

func isBase64URLChallenge(s string) bool {
	if len(s) != 43 {
		return false
	}
	for _, c := range s {
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}
