// Package signin signs people in through the organisation's OpenID Connect provider and turns
// each sign-in into a short-lived Rampart session, after the risk engine has looked at it.
//
// Three ways in, one path through: the browser (authorization code with PKCE, state bound to a
// cookie, nonce), the CLI through the browser (the same flow, ending in a one-time Rampart code
// that the CLI redeems with its own PKCE verifier over a loopback redirect), and the CLI on a
// headless machine (the provider's device authorization grant, polled through Rampart, with the
// CLI's own public application at the provider when Config.CLIClientID names one: Okta, Auth0
// and Entra ID do not let a web application use that grant). Every
// one of them ends in Service.admit, which verifies the identity, scores the attempt, and either
// opens a session, asks for a second factor, or refuses — and writes an OCSF Authentication
// entry to the ledger in each case. Refusals, which anyone can provoke, are aggregated per
// source (Deps.Refused), and one network may start only so many sign-ins per window, so that
// nobody can grow the ledger or the store without bound (invariant 11).
//
// Step-up: when the risk policy (or an approval policy's require_step_up) asks for a fresh
// multi-factor authentication, Rampart either sends the person back to the provider with
// max_age=0 and the MFA acr value and checks amr/acr in the new ID token, or asks for a code of
// the TOTP factor Rampart holds for them (for providers that cannot be asked). Enrolling or
// replacing that factor needs one the person already has (invariant 8): a code of the current
// factor, the provider's multi-factor authentication, or an administrator's allowance; and a
// step-up with a factor enrolled in the last day (other than under the provider's multi-factor
// authentication) does not count for approvals.
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/policy"
)

// Step-up methods.
const (
	StepUpIdP  = "idp"  // re-authenticate at the provider with max_age=0 and the MFA acr value
	StepUpTOTP = "totp" // a code of the TOTP factor Rampart holds
	StepUpAuto = "auto" // TOTP when the person enrolled one, else the provider
)

// Config is the [oidc] part of the server configuration.
type Config struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document and ID tokens
	// spell it (https; http only for a loopback development provider).
	Issuer string
	// ClientID and ClientSecret identify Rampart at the provider; with no secret Rampart is a
	// public client and relies on PKCE alone.
	ClientID     string
	ClientSecret string
	// ClientAuth is how the secret is sent to the token endpoint: client_secret_basic (the OpenID
	// Connect default) or client_secret_post. It is fixed, not auto-detected, so a refused first
	// attempt is not retried with the same one-time code and reported as a replay.
	ClientAuth string
	// CLIClientID, if set, is a second application registered at the provider for the CLI's
	// device flow: a public (native) client, which sends no secret. Okta and Auth0 allow the
	// device authorization grant only for native applications, and Entra ID refuses a client
	// secret on the device polls of a public client, so the web application that serves the
	// browser flow (ClientID) cannot do it there. Its ID tokens carry it as their audience. Empty:
	// the device flow uses ClientID and ClientSecret.
	CLIClientID string
	// CLIClientSecret is sent with CLIClientID only for a provider that insists on one even for
	// clients that cannot keep it (Google's "TVs and Limited Input devices" clients); it is not a
	// secret there. Leave it empty for every other provider.
	CLIClientSecret string
	// Scopes asked for (default openid, profile, email).
	Scopes []string
	// UsernameClaim names the claim that becomes the Rampart subject (default
	// preferred_username). The provider's own "sub" is bound to it at the first sign-in.
	UsernameClaim string
	// GroupsClaim names the claim listing the person's groups at the provider (default groups);
	// policy Groups map them with idp_groups.
	GroupsClaim string
	// ExternalURL is Rampart's address as browsers reach it; the redirect URI registered at the
	// provider is ExternalURL + "/callback".
	ExternalURL string
	// MFAAMR are amr values that mean the authentication was multi-factor (default mfa, otp,
	// hwk, swk); MFAACR are acr values that do (default mfa). Step-up asks for MFAACR[0].
	MFAAMR []string
	MFAACR []string
	// StepUp is how Rampart asks for a fresh second factor: idp, totp or auto (default auto).
	StepUp string
	// StepUpFresh is how recent a multi-factor authentication must be to satisfy a step-up at
	// sign-in (default 5 minutes).
	StepUpFresh time.Duration
	// Outcomes maps risk levels to allow, step_up or block (default: none, low allow; medium
	// step_up; high block).
	Outcomes risk.Outcomes
	// TrustedProxies are the addresses of reverse proxies whose X-Forwarded-For Rampart believes;
	// from anyone else the header is ignored.
	TrustedProxies []netip.Prefix
	// HTTPClient talks to the provider (default: 10 s timeout).
	HTTPClient *http.Client
}

// Store is what sign-in keeps: in-flight flows, second factors, and the history the risk engine
// reads.
type Store interface {
	identity.FlowStore
	identity.MFAStore
	risk.History
	AddSignIn(ctx context.Context, subject string, r risk.Record) error
	AddFailure(ctx context.Context, f risk.Failure) error
}

// Deps are the parts of the control plane sign-in works with.
type Deps struct {
	Sessions *identity.Sessions
	Store    Store
	// Auth authenticates the callers of step-up and enrolment (session tokens).
	Auth   identity.Authenticator
	Risk   *risk.Engine
	Policy func() *policy.Policy
	// Record appends an entry to the ledger (sessions record their own).
	Record func(ctx context.Context, e audit.Event) error
	// Refused records a refusal, which callers can provoke at will: the server aggregates them
	// per source and window (audit/refusals, invariant 11). Nil: Record, one entry each.
	Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	// Sealer encrypts TOTP secrets at rest.
	Sealer *identity.Sealer
	Now    func() time.Time
	Logger *slog.Logger
	// OnSignIn, if set, runs after a session opens (the server refreshes the groups people
	// brought from the provider).
	OnSignIn func(ctx context.Context)
}

// Service runs sign-ins.
type Service struct {
	cfg Config
	d   Deps

	web, cli party // the relying parties of ClientID (browser) and CLIClientID (device flow)

	starts starts // sign-ins started per network (invariant 11)
}

// Flow lifetimes.
const (
	browserFlowTTL = 10 * time.Minute // time to finish the provider's login page
	codeFlowTTL    = 60 * time.Second // a one-time code waits this long for the CLI
	mfaFlowTTL     = 5 * time.Minute  // time to type a second-factor code
	loginCookie    = "rampart_login"  // binds an OAuth state to the browser that started it
)

// New validates the configuration. The provider is discovered at the first sign-in (and again
// after a failure), so Rampart starts even while the provider is unreachable.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, d: d}, nil
}

func (c *Config) validate() error {
	iss, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return errors.New("oidc.issuer: required, e.g. https://login.microsoftonline.com/<tenant>/v2.0")
	case err != nil || iss.Host == "" || (iss.Scheme != "https" && !(iss.Scheme == "http" && isLoopback(iss.Hostname()))):
		return fmt.Errorf("oidc.issuer: %q must be an https URL (http is accepted only for a loopback development provider)", c.Issuer)
	case c.ClientID == "":
		return errors.New("oidc.client_id: required (the application registered for Rampart at the provider)")
	case c.CLIClientSecret != "" && c.CLIClientID == "":
		return errors.New("oidc.cli_client_secret_env: set only with oidc.cli_client_id (the CLI's own application at the provider)")
	}
	ext, err := url.Parse(c.ExternalURL)
	if c.ExternalURL == "" || err != nil || ext.Host == "" || (ext.Scheme != "https" && ext.Scheme != "http") || ext.RawQuery != "" {
		return fmt.Errorf("oidc.external_url: %q must be Rampart's absolute URL as browsers reach it, e.g. https://rampart.example.com", c.ExternalURL)
	}
	c.ExternalURL = strings.TrimRight(c.ExternalURL, "/")
	switch c.ClientAuth {
	case "":
		c.ClientAuth = "client_secret_basic"
	case "client_secret_basic", "client_secret_post":
	default:
		return fmt.Errorf("oidc.client_auth: %q is not client_secret_basic or client_secret_post", c.ClientAuth)
	}
	if len(c.Scopes) == 0 {
		c.Scopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail}
	}
	if !slices.Contains(c.Scopes, oidc.ScopeOpenID) {
		return errors.New("oidc.scopes: must include openid")
	}
	if c.UsernameClaim == "" {
		c.UsernameClaim = "preferred_username"
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if len(c.MFAAMR) == 0 {
		c.MFAAMR = []string{"mfa", "otp", "hwk", "swk"}
	}
	if len(c.MFAACR) == 0 {
		c.MFAACR = []string{"mfa"}
	}
	switch c.StepUp {
	case "":
		c.StepUp = StepUpAuto
	case StepUpIdP, StepUpTOTP, StepUpAuto:
	default:
		return fmt.Errorf("oidc.step_up: %q is not one of idp, totp, auto", c.StepUp)
	}
	if c.StepUpFresh == 0 {
		c.StepUpFresh = 5 * time.Minute
	}
	if err := c.Outcomes.Validate(); err != nil {
		return fmt.Errorf("oidc.risk_outcomes: %w", err)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// RedirectURI is what to register at the provider.
func (s *Service) RedirectURI() string { return s.cfg.ExternalURL + "/callback" }

type nonceKey struct{}

// Errors the handlers map to responses.
var (
	// ErrProvider means the identity provider could not be used: nobody is signed in.
	ErrProvider = errors.New("identity provider unavailable")
	// ErrDenied is a sign-in refused (risk, disabled user, account mismatch, bad credentials).
	ErrDenied = errors.New("sign-in refused")
	// ErrBadRequest is a malformed or replayed request (state, code, verifier).
	ErrBadRequest = errors.New("invalid sign-in request")
	// ErrTooManyAttempts is a one-time code refused unchecked: too many were tried lately
	// (identity.MaxMFAAttempts per identity.MFAAttemptWindow).
	ErrTooManyAttempts = errors.New("too many one-time codes tried")
)

// handle returns a fresh secret handle (state, one-time code, device handle).
func handle() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// s256 is the PKCE S256 challenge of a verifier.
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// client describes where a request came from, as the risk engine sees it.
type client struct {
	IP          netip.Addr `json:"ip"`
	Fingerprint string     `json:"fingerprint"`
}

// DeviceHeader carries the CLI's installation id, so that the risk engine can tell devices apart.
const DeviceHeader = "X-Rampart-Device"

// clientOf reads the caller's address (believing X-Forwarded-For only from trusted proxies)
// and a fingerprint of its software: the user agent and, from the CLI, its installation id.
func (s *Service) clientOf(r *http.Request) client {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, _ := netip.ParseAddr(host)
	ip = ip.Unmap()
	if s.trusted(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			ip = a.Unmap()
			if !s.trusted(ip) {
				break
			}
		}
	}
	h := sha256.Sum256([]byte(r.UserAgent() + "\x00" + r.Header.Get(DeviceHeader)))
	return client{IP: ip, Fingerprint: hex.EncodeToString(h[:12])}
}

// ClientIP is the address a request came from: its peer, or the last address in
// X-Forwarded-For before the trusted proxies (Config.TrustedProxies).
func (s *Service) ClientIP(r *http.Request) netip.Addr { return s.clientOf(r).IP }

func (s *Service) trusted(ip netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// identityClaims is what Rampart takes from a verified ID token.
type identityClaims struct {
	Subject    string    `json:"subject"`     // the Rampart subject (UsernameClaim)
	IdPSubject string    `json:"idp_subject"` // issuer|sub
	Groups     []string  `json:"groups"`      // policy groups
	IdPGroups  []string  `json:"idp_groups"`  // as the provider sent them
	AuthTime   time.Time `json:"auth_time"`
	AMR        []string  `json:"amr"`
	ACR        string    `json:"acr"`
	MFA        bool      `json:"mfa"`
}

const maxGroups = 1000

// claimsOf turns verified ID-token claims into an identity, or explains what is missing.
func (s *Service) claimsOf(c *oidc.IDTokenClaims) (identityClaims, error) {
	// The relying party's verifier checks exp and iat but not nbf (RFC 7519 section 4.1.5).
	if nbf := c.NotBefore.AsTime(); c.NotBefore != 0 && nbf.After(s.d.Now().Add(clockSkew)) {
		return identityClaims{}, fmt.Errorf("%w: the ID token was refused: it is not valid before %s (nbf)", ErrDenied, nbf.UTC().Format(time.RFC3339))
	}
	name, _ := c.Claims[s.cfg.UsernameClaim].(string)
	name = strings.ToLower(strings.TrimSpace(name)) // user principal names and emails are case-insensitive
	if name == "" {
		return identityClaims{}, fmt.Errorf("%w: the ID token has no %q claim to name the person by (oidc.username_claim); configure the provider to send it, or choose another claim",
			ErrDenied, s.cfg.UsernameClaim)
	}
	err := policy.ValidateSubject(name)
	if err == nil && policy.SubjectKind(name) != policy.KindUser {
		err = errors.New("that is the form of a machine subject")
	}
	if err != nil {
		// A person named "service:ci" or "k8s:prod/ns/sa" at the provider must not become that
		// machine here.
		return identityClaims{}, fmt.Errorf("%w: the %q claim %q cannot name a person in Rampart (lowercase letters, digits and . _ @ + - only): %v", ErrDenied, s.cfg.UsernameClaim, name, err)
	}
	var idpGroups []string
	switch g := c.Claims[s.cfg.GroupsClaim].(type) {
	case nil:
	case []any:
		if len(g) > maxGroups {
			return identityClaims{}, fmt.Errorf("%w: the %q claim lists %d groups; at most %d are accepted", ErrDenied, s.cfg.GroupsClaim, len(g), maxGroups)
		}
		for _, v := range g {
			if str, ok := v.(string); ok {
				idpGroups = append(idpGroups, str)
			}
		}
	case string:
		idpGroups = []string{g}
	default:
		return identityClaims{}, fmt.Errorf("%w: the %q claim is a %T; a list of group names was expected", ErrDenied, s.cfg.GroupsClaim, g)
	}
	auth := c.AuthTime.AsTime()
	if c.AuthTime == 0 {
		auth = c.IssuedAt.AsTime()
	}
	id := identityClaims{Subject: name, IdPSubject: c.Issuer + "|" + c.Subject, IdPGroups: idpGroups,
		Groups: s.d.Policy().MapIdPGroups(idpGroups), AuthTime: auth, AMR: []string(c.AuthenticationMethodsReferences), ACR: c.AuthenticationContextClassReference}
	id.MFA = slices.Contains(s.cfg.MFAACR, id.ACR)
	for _, m := range id.AMR {
		if slices.Contains(s.cfg.MFAAMR, m) {
			id.MFA = true
		}
	}
	return id, nil
}

// freshMFA reports whether the authentication satisfies a step-up now.
func (s *Service) freshMFA(id identityClaims) bool {
	return id.MFA && s.d.Now().Sub(id.AuthTime) <= s.cfg.StepUpFresh
}

// decision is the result of admitting an attempt.
type decision struct {
	outcome    risk.Outcome
	assessment risk.Assessment
	reason     string
}

// assess scores an interactive attempt. A history that cannot be read refuses the attempt.
func (s *Service) assess(ctx context.Context, id identityClaims, c client, kind risk.Kind) (decision, error) {
	as, err := s.d.Risk.Assess(ctx, risk.Attempt{Subject: id.Subject, Username: id.Subject, Time: s.d.Now(), IP: c.IP,
		Fingerprint: c.Fingerprint, Kind: kind, Success: true})
	if err != nil {
		return decision{}, fmt.Errorf("%w: the risk engine cannot score this sign-in (%v); refusing rather than guessing", ErrDenied, err)
	}
	d := decision{outcome: s.cfg.Outcomes.For(as.Level), assessment: as}
	if d.outcome == risk.StepUp && s.freshMFA(id) {
		d.outcome, d.reason = risk.Allow, "multi-factor authentication at "+id.AuthTime.UTC().Format(time.RFC3339)
	}
	return d, nil
}

// authEvent is an OCSF Authentication entry for an attempt.
func (s *Service) authEvent(code string, id identityClaims, c client, method string, d decision, success bool, msg string) audit.Event {
	now := s.d.Now()
	ev := audit.Event{Code: code, Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Time: now, Actor: id.Subject, User: id.Subject, Message: msg,
		Details: map[string]any{"method": method, "ip": c.IP.String(), "fingerprint": c.Fingerprint, "risk_level": d.assessment.Level.String(),
			"outcome": string(d.outcome), "mfa": id.MFA, "amr": id.AMR, "idp_subject": id.IdPSubject, "groups": id.Groups, "idp_groups": id.IdPGroups}}
	if id.Subject == "" {
		ev.Actor, ev.User = "anonymous", ""
	}
	if len(d.assessment.Detections) > 0 {
		ev.Details["detections"] = d.assessment.Detections
	}
	if d.reason != "" {
		ev.Details["reason"] = d.reason
	}
	ev.Severity = audit.SeverityInformational
	switch {
	case !success && d.outcome == risk.Block:
		ev.Severity = audit.SeverityHigh
	case !success || d.outcome == risk.StepUp:
		ev.Severity = audit.SeverityMedium
	}
	ev.Failed = !success
	ev.Extra = map[string]any{"is_mfa": id.MFA, "auth_protocol": "OpenID Connect", "auth_protocol_id": 99,
		"src_endpoint": map[string]any{"ip": c.IP.String()}, "risk_level": riskName(d.assessment.Level), "risk_level_id": riskID(d.assessment.Level)}
	return ev
}

func riskName(l risk.Level) string {
	switch l {
	case risk.None:
		return "Info"
	case risk.Low:
		return "Low"
	case risk.Medium:
		return "Medium"
	case risk.High:
		return "High"
	}
	return "Other"
}

func riskID(l risk.Level) int {
	switch l {
	case risk.None:
		return 0
	case risk.Low:
		return 1
	case risk.Medium:
		return 2
	case risk.High:
		return 3
	}
	return 99
}

// pending is a sign-in that passed the provider and the risk engine, waiting for its last
// step: a one-time code redeemed by the CLI, or a second factor.
type pending struct {
	ID       identityClaims `json:"id"`
	Client   client         `json:"client"`
	Method   string         `json:"method"`
	Decision struct {
		Level      risk.Level       `json:"level"`
		Detections []risk.Detection `json:"detections,omitempty"`
		Location   *risk.Location   `json:"location,omitempty"`
		Outcome    risk.Outcome     `json:"outcome"`
		Reason     string           `json:"reason,omitempty"`
	} `json:"decision"`
	// For a loopback CLI sign-in: the CLI's PKCE challenge and redirect.
	CLI *cliParams `json:"cli,omitempty"`
	// ReturnTo is where a browser goes afterwards.
	ReturnTo string `json:"return_to,omitempty"`
	// SessionID, for a TOTP step-up of an existing session.
	SessionID string `json:"session_id,omitempty"`
	// TOTP says the second factor of this sign-in was Rampart's TOTP factor, TOTPTrusted that
	// the factor counts for approvals (identity.MFAFactor.Trusted).
	TOTP        bool `json:"totp,omitempty"`
	TOTPTrusted bool `json:"totp_trusted,omitempty"`
}

func (p *pending) setDecision(d decision) {
	p.Decision.Level, p.Decision.Detections, p.Decision.Location = d.assessment.Level, d.assessment.Detections, d.assessment.Location
	p.Decision.Outcome, p.Decision.Reason = d.outcome, d.reason
}

func (p *pending) decision() decision {
	return decision{outcome: p.Decision.Outcome, reason: p.Decision.Reason,
		assessment: risk.Assessment{Level: p.Decision.Level, Detections: p.Decision.Detections, Location: p.Decision.Location}}
}

// open creates the session for an admitted sign-in, records it in the ledger (in the same
// transaction) and teaches the risk engine the new sign-in. A multi-factor authentication the
// provider reported counts for approvals; one with Rampart's TOTP factor only if the factor is
// trusted (held for a day, or enrolled under the provider's multi-factor authentication).
func (s *Service) open(ctx context.Context, p pending, mfaNow []string) (identity.Issued, error) {
	id, d := p.ID, p.decision()
	mfa, idpMFA := id.MFA, id.MFA && !p.TOTP
	trusted := idpMFA
	authTime := id.AuthTime
	if len(mfaNow) > 0 {
		mfa, authTime = true, s.d.Now()
		id.AMR = append(slices.Clone(id.AMR), mfaNow...)
		id.MFA = true
	}
	if p.TOTP {
		trusted = p.TOTPTrusted
	}
	ev := s.authEvent("signin.success", id, p.Client, p.Method, d, true,
		fmt.Sprintf("%s signed in (%s, risk %s)", id.Subject, p.Method, d.assessment.Level))
	iss, err := s.d.Sessions.Create(ctx, identity.NewSession{Subject: id.Subject, Method: p.Method, AuthTime: authTime, AMR: id.AMR, MFA: mfa, TrustedMFA: trusted, IdPMFA: idpMFA,
		IP: p.Client.IP.String(), Fingerprint: p.Client.Fingerprint, Groups: id.Groups, Risk: d.assessment.Level.String(),
		IdPSubject: id.IdPSubject, Event: ev})
	if err != nil {
		if errors.Is(err, identity.ErrUnauthenticated) {
			return identity.Issued{}, s.refuse(ctx, id, p.Client, p.Method, d, fmt.Errorf("%w: %v", ErrDenied, err))
		}
		return identity.Issued{}, err
	}
	rec := risk.NewRecord(risk.Attempt{Subject: id.Subject, Time: s.d.Now(), IP: p.Client.IP, Fingerprint: p.Client.Fingerprint, Kind: risk.KindSignIn, Success: true}, d.assessment.Location)
	if err := s.d.Store.AddSignIn(ctx, id.Subject, rec); err != nil {
		s.d.Logger.Error("cannot record a sign-in in the risk history", "err", err, "subject", id.Subject)
	}
	if s.d.OnSignIn != nil {
		s.d.OnSignIn(ctx)
	}
	return iss, nil
}

func (s *Service) putFlow(ctx context.Context, kind string, ttl time.Duration, v any) (string, error) {
	h := handle()
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	now := s.d.Now()
	return h, s.d.Store.PutFlow(ctx, identity.Flow{ID: identity.HashToken(h), Kind: kind, Data: b, CreatedAt: now, ExpiresAt: now.Add(ttl)})
}

func (s *Service) takeFlow(ctx context.Context, h, kind string, v any) error {
	if h == "" || len(h) > 128 {
		return fmt.Errorf("%w: missing or malformed %s handle", ErrBadRequest, kind)
	}
	f, err := s.d.Store.TakeFlow(ctx, identity.HashToken(h), kind, s.d.Now())
	if errors.Is(err, identity.ErrFlowNotFound) {
		return fmt.Errorf("%w: this %s sign-in step is unknown, was already used, or expired; start again", ErrBadRequest, kind)
	} else if err != nil {
		return err
	}
	return json.Unmarshal(f.Data, v)
}

// SweepFlows removes expired flows; the server calls it periodically.
func (s *Service) SweepFlows(ctx context.Context) (int, error) {
	return s.d.Store.DeleteExpiredFlows(ctx, s.d.Now())
}
