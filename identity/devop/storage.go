package devop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// replayWindow is how long a redeemed authorization code is remembered, so that presenting it
// again is recognised as a replay (and revokes its tokens) rather than as an unknown code.
const replayWindow = 10 * time.Minute

// errSlowDown is what GetDeviceAuthorizatonState returns for a poll that came too early. The op
// package answers slow_down for an error that wraps context.DeadlineExceeded, and has no other
// way to ask for it.
var errSlowDown = fmt.Errorf("devop: device polled sooner than the interval: %w", context.DeadlineExceeded)

// storage is the provider's whole state, in memory, behind one mutex. It implements op.Storage,
// op.DeviceAuthorizationStorage and op.CanSetUserinfoFromRequest. Values handed to the op package
// are copies, so that it never reads what a concurrent login writes.
type storage struct {
	issuer    string
	now       func() time.Time
	log       *slog.Logger
	accessTTL time.Duration

	mu        sync.Mutex
	users     map[string]*User
	clients   map[string]*client
	keys      []*signingKey // the last one signs
	requests  map[string]*authRequest
	codes     map[string]string // authorization code → auth request ID, until the request is purged
	tokens    map[string]*accessToken
	devices   map[string]*deviceAuth // by device code
	userCodes map[string]string      // normalised user code → device code
	sessions  map[string]*session
}

// authRequest is one authorization request, from the authorize endpoint to the code's redemption.
// It implements op.AuthRequest.
type authRequest struct {
	id           string
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	prompt       []string
	maxAge       *uint
	loginHint    string
	hintSubject  string // sub of a valid id_token_hint
	requireMFA   bool   // acr_values asked for "mfa"
	challenge    *oidc.CodeChallenge
	created      time.Time

	// Set when the user has authenticated.
	done     bool
	subject  string
	authTime time.Time
	amr      []string

	// Set when the code is issued, and when it is redeemed.
	code       string
	codeIssued time.Time
	redeemed   bool
}

type accessToken struct {
	subject   string
	clientID  string
	requestID string // the auth request it was issued for, if any
	expires   time.Time
}

// deviceAuth is one device authorization (RFC 8628).
type deviceAuth struct {
	clientID string
	userCode string
	scopes   []string
	expires  time.Time
	interval time.Duration
	lastPoll time.Time

	done, denied, redeemed bool
	subject                string
	authTime               time.Time
	amr                    []string
	// issuing is the state last handed to the op package for a successful poll; CreateAccessToken
	// recognises it to redeem the device code exactly once.
	issuing *op.DeviceAuthorizationState
}

// session is the provider's own browser session: a user who signed in recently need not type
// their password again unless the client asks (max_age, prompt=login, acr_values=mfa).
type session struct {
	subject  string
	authTime time.Time
	amr      []string
	expires  time.Time
}

func newStorage(cfg Config, key *signingKey) *storage {
	s := &storage{
		issuer:    cfg.Issuer,
		now:       cfg.Now,
		log:       cfg.Logger,
		accessTTL: cfg.AccessTokenTTL,
		users:     map[string]*User{},
		clients:   map[string]*client{},
		keys:      []*signingKey{key},
		requests:  map[string]*authRequest{},
		codes:     map[string]string{},
		tokens:    map[string]*accessToken{},
		devices:   map[string]*deviceAuth{},
		userCodes: map[string]string{},
		sessions:  map[string]*session{},
	}
	for _, u := range cfg.Users {
		u.Groups = slices.Clone(u.Groups)
		s.users[u.Name] = &u
	}
	for _, c := range cfg.Clients {
		c.RedirectURIs = slices.Clone(c.RedirectURIs)
		s.clients[c.ID] = &client{Client: c, idTokenTTL: cfg.IDTokenTTL, loginURL: s.loginURL}
	}
	return s
}

func (s *storage) loginURL(authRequestID string) string {
	return s.issuer + "/login?id=" + authRequestID
}

func (s *storage) callbackURL(authRequestID string) string {
	return s.issuer + "/authorize/callback?id=" + authRequestID
}

func randomID() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("devop: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func acrFor(amr []string) string {
	if slices.Contains(amr, "mfa") {
		return acrMFA
	}
	return acrPassword
}

// purge forgets what has expired. Requires s.mu.
func (s *storage) purge(now time.Time) {
	for id, ar := range s.requests {
		end := ar.created.Add(authRequestTTL)
		if ar.code != "" {
			end = later(end, ar.codeIssued.Add(codeTTL))
		}
		if now.After(end.Add(replayWindow)) {
			delete(s.requests, id)
			delete(s.codes, ar.code)
		}
	}
	maps.DeleteFunc(s.tokens, func(_ string, t *accessToken) bool { return now.After(t.expires) })
	maps.DeleteFunc(s.sessions, func(_ string, ss *session) bool { return now.After(ss.expires) })
	for code, d := range s.devices {
		// Kept a while after expiry, so that late polls hear expired_token.
		if now.After(d.expires.Add(deviceCodeTTL)) {
			delete(s.devices, code)
			delete(s.userCodes, normalizeUserCode(d.userCode))
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *storage) client(id string) (*client, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	return c, ok
}

func (s *storage) addKey(k *signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k)
}

func (s *storage) setUserDisabled(name string, disabled bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return false
	}
	u.Disabled = disabled
	if disabled {
		maps.DeleteFunc(s.sessions, func(_ string, ss *session) bool { return ss.subject == name })
	}
	return true
}

// userEnabled reports whether name is a known, enabled user. Requires s.mu.
func (s *storage) userEnabled(name string) bool {
	u, ok := s.users[name]
	return ok && !u.Disabled
}

// authenticate checks a login form's credentials. It returns the amr of the authentication, or a
// message for the user saying what was wrong. Nothing is counted: Rampart scores risk itself.
func (s *storage) authenticate(username, password, otp string, requireMFA bool) (amr []string, problem string) {
	s.mu.Lock()
	u, ok := s.users[username]
	var user User
	if ok {
		user = *u
	}
	s.mu.Unlock()

	// Compare digests so that neither the length nor the existence of the user shows in the timing.
	want := sha256.Sum256([]byte(user.Password))
	got := sha256.Sum256([]byte(password))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 || !ok {
		return nil, "Wrong username or password."
	}
	if user.Disabled {
		return nil, "This account is disabled."
	}
	otp = strings.ReplaceAll(otp, " ", "")
	if otp != "" {
		if user.TOTPSecret == "" {
			return nil, "This account has no one-time code set up; leave the one-time code empty."
		}
		if !verifyTOTP(user.TOTPSecret, otp, s.now()) {
			return nil, "Wrong or expired one-time code."
		}
		return []string{"pwd", "otp", "mfa"}, ""
	}
	if requireMFA {
		if user.TOTPSecret == "" {
			return nil, "This application requires a one-time code, and this account has none set up."
		}
		return nil, "This application requires a one-time code: enter the code from your authenticator."
	}
	return []string{"pwd"}, ""
}

// errLoginExpired is what the login page says for an auth request it does not know.
var errLoginExpired = errors.New("this sign-in request is unknown, finished or expired; start again from the application")

// pendingLogin returns a copy of the auth request id if it still waits for the user.
func (s *storage) pendingLogin(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.requests[id]
	if !ok || ar.done || s.now().After(ar.created.Add(authRequestTTL)) {
		return nil, errLoginExpired
	}
	return ar.clone(), nil
}

// completeLogin records who authenticated for auth request id.
func (s *storage) completeLogin(id, subject string, authTime time.Time, amr []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.requests[id]
	if !ok || ar.done || s.now().After(ar.created.Add(authRequestTTL)) {
		return errLoginExpired
	}
	ar.done, ar.subject, ar.authTime, ar.amr = true, subject, authTime, slices.Clone(amr)
	return nil
}

func (s *storage) newSession(subject string, authTime time.Time, amr []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purge(now)
	id := randomID()
	s.sessions[id] = &session{subject: subject, authTime: authTime, amr: slices.Clone(amr), expires: now.Add(sessionTTL)}
	return id
}

// session returns a copy of the live session id of an enabled user.
func (s *storage) session(id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok || s.now().After(ss.expires) || !s.userEnabled(ss.subject) {
		return session{}, false
	}
	out := *ss
	out.amr = slices.Clone(ss.amr)
	return out, true
}

// normalizeUserCode lets a user type a user code in lower case, with or without its dash.
func normalizeUserCode(code string) string {
	return strings.ToUpper(strings.NewReplacer("-", "", " ", "").Replace(code))
}

var errUnknownUserCode = errors.New("this code is unknown or has expired; check the code shown on your device, or start again there")

// pendingDevice returns the device authorization waiting for userCode. Requires s.mu.
func (s *storage) pendingDevice(userCode string) (*deviceAuth, error) {
	d, ok := s.devices[s.userCodes[normalizeUserCode(userCode)]]
	if !ok || d.done || d.denied || s.now().After(d.expires) {
		return nil, errUnknownUserCode
	}
	return d, nil
}

func (s *storage) approveDevice(userCode, subject string, authTime time.Time, amr []string) (clientID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.pendingDevice(userCode)
	if err != nil {
		return "", err
	}
	d.done, d.subject, d.authTime, d.amr = true, subject, authTime, slices.Clone(amr)
	return d.clientID, nil
}

func (s *storage) denyDevice(userCode string) (clientID string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.pendingDevice(userCode)
	if err != nil {
		return "", err
	}
	d.denied = true
	return d.clientID, nil
}

// checkUserCode reports whether userCode waits for approval.
func (s *storage) checkUserCode(userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.pendingDevice(userCode)
	return err
}

func fillUserinfo(info *oidc.UserInfo, u *User) {
	info.Subject = u.Name
	info.PreferredUsername = u.Name
	if u.Email != "" {
		info.Email = u.Email
		info.EmailVerified = true
	}
	groups := slices.Clone(u.Groups)
	if groups == nil {
		groups = []string{} // always present, so relying parties can tell "no groups" from "not sent"
	}
	info.AppendClaims(claimGroups, groups)
}

// --- op.AuthStorage ---

// CreateAuthRequest implements op.AuthStorage.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, hintSubject string) (op.AuthRequest, error) {
	now := s.now()
	ar := &authRequest{
		id:           randomID(),
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone(req.Scopes),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		prompt:       slices.Clone(req.Prompt),
		loginHint:    req.LoginHint,
		hintSubject:  hintSubject,
		requireMFA:   slices.Contains(req.ACRValues, acrMFA),
		created:      now,
	}
	if req.MaxAge != nil {
		maxAge := *req.MaxAge
		ar.maxAge = &maxAge
	}
	if req.CodeChallenge != "" {
		ar.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge(now)
	s.requests[ar.id] = ar
	return ar.clone(), nil
}

// AuthRequestByID implements op.AuthStorage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.requests[id]
	if !ok || ar.redeemed || s.now().After(ar.created.Add(authRequestTTL)) {
		return nil, errLoginExpired
	}
	return ar.clone(), nil
}

// AuthRequestByCode implements op.AuthStorage. A code presented after it was redeemed is a
// replay: the access tokens issued for it are revoked (RFC 6749, section 4.1.2).
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.requests[s.codes[code]]
	if !ok {
		return nil, errors.New("unknown authorization code")
	}
	if ar.redeemed {
		revoked := 0
		for id, t := range s.tokens {
			if t.requestID == ar.id {
				delete(s.tokens, id)
				revoked++
			}
		}
		s.log.Warn("devop: authorization code replayed; its tokens are revoked", "client_id", ar.clientID, "sub", ar.subject, "revoked_access_tokens", revoked)
		return nil, errors.New("authorization code already used")
	}
	if s.now().After(ar.codeIssued.Add(codeTTL)) {
		return nil, fmt.Errorf("authorization code expired (codes live %s)", codeTTL)
	}
	if !s.userEnabled(ar.subject) {
		return nil, fmt.Errorf("user %q is disabled", ar.subject)
	}
	return ar.clone(), nil
}

// SaveAuthCode implements op.AuthStorage. Each auth request yields one code: reloading the
// callback URL does not mint another.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ar, ok := s.requests[id]
	switch {
	case !ok || !ar.done:
		return oidc.ErrInvalidRequest().WithDescription("sign-in not finished")
	case ar.code != "":
		return oidc.ErrInvalidRequest().WithDescription("this sign-in already produced its authorization code; start again")
	}
	ar.code, ar.codeIssued = code, s.now()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.AuthStorage. The request is kept, marked redeemed, until it is
// purged, so that a replay of its code is recognised.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ar, ok := s.requests[id]; ok {
		ar.redeemed = true
	}
	return nil
}

// CreateAccessToken implements op.AuthStorage. It is where a code or a device code is redeemed,
// atomically, so that two concurrent exchanges cannot both get tokens.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purge(now)
	t := &accessToken{subject: req.GetSubject(), expires: now.Add(s.accessTTL)}
	switch r := req.(type) {
	case *authRequest:
		ar, ok := s.requests[r.id]
		if !ok || ar.redeemed {
			return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("authorization code already used")
		}
		ar.redeemed = true
		t.clientID, t.requestID = ar.clientID, ar.id
	case *op.DeviceAuthorizationState:
		var d *deviceAuth
		for _, candidate := range s.devices {
			if candidate.issuing == r {
				d = candidate
			}
		}
		if d == nil || d.redeemed {
			return "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("device code already used")
		}
		d.redeemed = true
		t.clientID = d.clientID
	default:
		return "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("token request %T not supported", req)
	}
	id := randomID()
	s.tokens[id] = t
	// The op package turns the expiry into expires_in against the wall clock.
	return id, time.Now().Add(s.accessTTL), nil
}

// CreateAccessAndRefreshTokens implements op.AuthStorage; refresh tokens are not issued.
func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, oidc.ErrUnsupportedGrantType().WithDescription("refresh tokens are not supported")
}

// TokenRequestByRefreshToken implements op.AuthStorage; refresh tokens are not issued.
func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

// TerminateSession implements op.AuthStorage: it ends the user's sessions at the provider.
func (s *storage) TerminateSession(_ context.Context, userID, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.DeleteFunc(s.sessions, func(_ string, ss *session) bool { return ss.subject == userID })
	return nil
}

// RevokeToken implements op.AuthStorage for access tokens.
func (s *storage) RevokeToken(_ context.Context, tokenID, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenID]; ok && t.subject == userID && t.clientID == clientID {
		delete(s.tokens, tokenID)
	}
	return nil
}

// GetRefreshTokenInfo implements op.AuthStorage; refresh tokens are not issued.
func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// SigningKey implements op.AuthStorage: the newest key.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1], nil
}

// SignatureAlgorithms implements op.AuthStorage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.AuthStorage: every key the provider has signed with, newest first.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, 0, len(s.keys))
	for i := len(s.keys) - 1; i >= 0; i-- {
		keys = append(keys, publicKey{s.keys[i]})
	}
	return keys, nil
}

// --- op.OPStorage ---

// GetClientByClientID implements op.OPStorage.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.client(id)
	if !ok {
		return nil, fmt.Errorf("unknown client_id %q", id)
	}
	return c, nil
}

// AuthorizeClientIDSecret implements op.OPStorage.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.client(id)
	if !ok {
		return fmt.Errorf("unknown client_id %q", id)
	}
	if c.public() {
		return fmt.Errorf("client %q is public: send client_id and no secret", id)
	}
	want := sha256.Sum256([]byte(c.Secret))
	got := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return fmt.Errorf("wrong secret for client %q", id)
	}
	return nil
}

// SetUserinfoFromScopes implements op.OPStorage; the op package asks that it do nothing now that
// SetUserinfoFromRequest exists.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest: the user's claims go into every
// ID token, whatever the scopes, so that relying parties always get the same set.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[req.GetSubject()]
	if !ok {
		return fmt.Errorf("unknown user %q", req.GetSubject())
	}
	fillUserinfo(info, u)
	if _, device := req.(*op.DeviceAuthorizationState); device {
		// The op package takes acr only from auth requests; a device login has one too.
		info.AppendClaims("acr", acrFor(req.GetAMR()))
	}
	return nil
}

// SetUserinfoFromToken implements op.OPStorage for the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tokenID]
	if !ok || t.subject != subject || s.now().After(t.expires) {
		return oidc.ErrAccessDenied().WithDescription("access token is invalid, expired or revoked")
	}
	u, ok := s.users[subject]
	if !ok || u.Disabled {
		return oidc.ErrAccessDenied().WithDescription("user is disabled")
	}
	fillUserinfo(info, u)
	return nil
}

// SetIntrospectionFromToken implements op.OPStorage; introspection is not supported.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

// GetPrivateClaimsFromScopes implements op.OPStorage; access tokens are opaque, so there are none.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID implements op.OPStorage; JWT client authentication is not supported.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT client authentication is not supported")
}

// ValidateJWTProfileScopes implements op.OPStorage; the JWT profile grant is not supported.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// --- op.DeviceAuthorizationStorage ---

// StoreDeviceAuthorization implements op.DeviceAuthorizationStorage. The expiry the op package
// computes from the wall clock is ignored for one from the provider's clock.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, _ time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.purge(now)
	key := normalizeUserCode(userCode)
	if _, taken := s.userCodes[key]; taken {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceAuth{
		clientID: clientID,
		userCode: userCode,
		scopes:   slices.Clone(scopes),
		expires:  now.Add(deviceCodeTTL),
		interval: devicePollInterval,
	}
	s.userCodes[key] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState implements op.DeviceAuthorizationStorage (the misspelling is the op
// package's). It answers each poll of the token endpoint.
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.clientID != clientID {
		return nil, errors.New("unknown device code")
	}
	if d.redeemed {
		return nil, errors.New("device code already used")
	}
	now := s.now()
	state := &op.DeviceAuthorizationState{
		ClientID: clientID,
		Audience: []string{clientID},
		Scopes:   slices.Clone(d.scopes),
		// The op package compares Expires with the wall clock; translate from the provider's.
		Expires: time.Now().Add(d.expires.Sub(now)),
	}
	switch {
	case now.After(d.expires):
		state.Expires = time.Time{} // expired_token
	case d.denied:
		state.Denied = true // access_denied
	case d.done:
		if !s.userEnabled(d.subject) {
			return nil, fmt.Errorf("user %q is disabled", d.subject)
		}
		state.Done, state.Subject, state.AuthTime, state.AMR = true, d.subject, d.authTime, slices.Clone(d.amr)
		d.issuing = state
	default: // authorization_pending, or slow_down if this poll came too early
		early := !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval/2
		d.lastPoll = now
		if early {
			d.interval += 5 * time.Second
			return nil, errSlowDown
		}
	}
	return state, nil
}

// --- op.AuthRequest ---

func (ar *authRequest) clone() *authRequest {
	c := *ar
	c.scopes = slices.Clone(ar.scopes)
	c.prompt = slices.Clone(ar.prompt)
	c.amr = slices.Clone(ar.amr)
	if ar.maxAge != nil {
		m := *ar.maxAge
		c.maxAge = &m
	}
	if ar.challenge != nil {
		ch := *ar.challenge
		c.challenge = &ch
	}
	return &c
}

// GetID implements op.AuthRequest.
func (ar *authRequest) GetID() string { return ar.id }

// GetACR implements op.AuthRequest.
func (ar *authRequest) GetACR() string { return acrFor(ar.amr) }

// GetAMR implements op.AuthRequest.
func (ar *authRequest) GetAMR() []string { return slices.Clone(ar.amr) }

// GetAudience implements op.AuthRequest.
func (ar *authRequest) GetAudience() []string { return []string{ar.clientID} }

// GetAuthTime implements op.AuthRequest.
func (ar *authRequest) GetAuthTime() time.Time { return ar.authTime }

// GetClientID implements op.AuthRequest.
func (ar *authRequest) GetClientID() string { return ar.clientID }

// GetCodeChallenge implements op.AuthRequest.
func (ar *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return ar.challenge }

// GetNonce implements op.AuthRequest.
func (ar *authRequest) GetNonce() string { return ar.nonce }

// GetRedirectURI implements op.AuthRequest.
func (ar *authRequest) GetRedirectURI() string { return ar.redirectURI }

// GetResponseType implements op.AuthRequest.
func (ar *authRequest) GetResponseType() oidc.ResponseType { return ar.responseType }

// GetResponseMode implements op.AuthRequest.
func (ar *authRequest) GetResponseMode() oidc.ResponseMode { return ar.responseMode }

// GetScopes implements op.AuthRequest.
func (ar *authRequest) GetScopes() []string { return slices.Clone(ar.scopes) }

// GetState implements op.AuthRequest.
func (ar *authRequest) GetState() string { return ar.state }

// GetSubject implements op.AuthRequest.
func (ar *authRequest) GetSubject() string { return ar.subject }

// Done implements op.AuthRequest.
func (ar *authRequest) Done() bool { return ar.done }
