// Package api is Rampart's HTTP API (JSON under /v1, described by the OpenAPI document served at
// /v1/openapi.json) and the Go client the CLI uses.
//
// The server authenticates every /v1 call (identity.Authenticator), authorizes it against the
// policy in force (who may review, see, check, audit), and maps domain errors to precise 4xx/503
// answers with the body {"error":{"code","message"}}. It fails closed (invariant 6): when the
// decision index cannot be trusted, /v1/check answers 503 with a denying decision; when the store
// is down, changes answer 503 and nothing is changed. Bodies are limited, strictly decoded
// (unknown fields are errors), and hostile input never reaches the store (invariant 7).
package api

import (
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/ci"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/secrets"
	"rampart.dev/rampart/suggest"
	"rampart.dev/rampart/weights"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the API description served at /v1/openapi.json.
func OpenAPI() []byte { return openAPI }

// Decider is the decision engine (authz.Index) as the API asks it: POST /v1/check and
// /v1/check/batch. (The vault asks through weights.Decider; /metrics reads IndexStats.)
type Decider interface {
	Check(authz.Query) authz.Decision
	CheckBatch([]authz.Query) []authz.Decision
}

// Server serves the API.
type Server struct {
	access *access.Service
	index  Decider
	ledger *audit.Ledger
	tokens *identity.Tokens
	auth   identity.Authenticator
	ready  func() error
	// policyStatus describes the policy in force in /readyz.
	policyStatus func() any

	entriesStore audit.Store
	sessionsSvc  *identity.Sessions
	weights      *weights.Service
	secrets      *secrets.Service
	changes      *change.Service
	alerts       AlertStore
	ci           *ci.Exchanger
	pipelines    *ci.Triggerer
	users        UserStore
	lifecycle    Lifecycle
	signin       SignIn
	scim         SCIM
	dev          bool
	log          *slog.Logger
	m            *Metrics
	model        suggest.Chooser
	modelTimeout time.Duration

	advMu     sync.Mutex
	advPol    *policy.Policy
	advCached *suggest.Advisor
}

// Config is what a Server needs.
type Config struct {
	Access *access.Service
	// Index answers POST /v1/check and /v1/check/batch (the server's *authz.Index).
	Index  Decider
	Ledger *audit.Ledger
	// LedgerStore is where ledger entries are read from for /v1/audit/entries.
	LedgerStore audit.Store
	Tokens      *identity.Tokens
	// Auth authenticates callers; Tokens if nil.
	Auth identity.Authenticator
	// Ready reports whether the server can serve (store reachable, index fresh).
	Ready func() error
	// PolicyStatus, if set, describes the policy in force in /readyz (source, commit, digest,
	// and a refused commit of a policy repository).
	PolicyStatus func() any
	// Dev enables POST /v1/dev/login, which issues a token for any demo user. Never in
	// production.
	Dev    bool
	Logger *slog.Logger
	// Metrics serves /metrics; without it, a registry with no decision-index gauges.
	Metrics *Metrics
	// Sessions manages sign-in sessions and user records; Users lists them; SignIn serves
	// the OIDC sign-in endpoints (all nil without oidc configuration).
	Sessions *identity.Sessions
	Users    UserStore
	// Lifecycle disables and enables people (nil: sessions and tokens only).
	Lifecycle Lifecycle
	SignIn    SignIn
	// SCIM serves SCIM provisioning under /scim/v2 (nil: those routes answer 404).
	SCIM SCIM
	// Weights is the weights vault (nil: its routes answer 404).
	Weights *weights.Service
	// Secrets is the secrets store (nil: its routes answer 404).
	Secrets *secrets.Service
	// Changes is guarded change (nil: its routes answer 404).
	Changes *change.Service
	// Alerts are detection's alerts (nil: their routes answer 404).
	Alerts AlertStore
	// CI exchanges CI ID tokens for pipeline tokens, and Pipelines triggers pipelines (nil:
	// their routes answer 404).
	CI        *ci.Exchanger
	Pipelines *ci.Triggerer
	// Model, if set, chooses among role suggestions; every answer is verified.
	Model        suggest.Chooser
	ModelTimeout time.Duration
}

// New returns a server.
func New(c Config) *Server {
	s := &Server{access: c.Access, index: c.Index, ledger: c.Ledger, tokens: c.Tokens, auth: c.Auth,
		ready: c.Ready, policyStatus: c.PolicyStatus, dev: c.Dev, log: c.Logger, m: c.Metrics, entriesStore: c.LedgerStore,
		model: c.Model, modelTimeout: c.ModelTimeout, sessionsSvc: c.Sessions, users: c.Users, lifecycle: c.Lifecycle, signin: c.SignIn, scim: c.SCIM, weights: c.Weights, secrets: c.Secrets, changes: c.Changes, alerts: c.Alerts, ci: c.CI, pipelines: c.Pipelines}
	if s.auth == nil {
		s.auth = c.Tokens
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.m == nil {
		s.m = NewMetrics(nil, c.Ledger)
	}
	return s
}

// caller is an authenticated principal.
type caller struct {
	identity.Principal
	pol *policy.Policy
}

func (c caller) admin() bool   { return c.pol.IsAdmin(c.Subject) }
func (c caller) auditor() bool { return c.pol.IsAuditor(c.Subject) }

type handler func(w http.ResponseWriter, r *http.Request, c caller) error

// authed wraps a handler with authentication.
func (s *Server) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.auth.Authenticate(r)
		if err != nil {
			if !errors.Is(err, identity.ErrUnauthenticated) {
				// Identity could not be established (store down): refuse, say so.
				err = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "cannot verify credentials right now: " + err.Error()}
			}
			s.fail(w, r, err)
			return
		}
		p.IP = s.clientIP(r)
		if err := h(w, r, caller{Principal: p, pol: s.access.Policy()}); err != nil {
			s.fail(w, r, err)
		}
	}
}

// clientIP is the address a request came from: through the sign-in service's trusted proxies
// when there is one, else the peer.
func (s *Server) clientIP(r *http.Request) string {
	if ci, ok := s.signin.(interface {
		ClientIP(*http.Request) netip.Addr
	}); ok {
		if ip := ci.ClientIP(r); ip.IsValid() {
			return ip.String()
		}
	}
	return clientIP(r)
}

// Handler returns the HTTP handler for every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.m.Handler())
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	if s.dev {
		mux.HandleFunc("POST /v1/dev/login", s.devLogin)
	}
	if s.signin != nil {
		mux.HandleFunc("GET /login", s.signin.Login)
		mux.HandleFunc("GET /callback", s.signin.Callback)
		mux.HandleFunc("POST /login/mfa", s.signin.LoginMFA)
		mux.HandleFunc("POST /v1/auth/device", s.signin.Device)
		mux.HandleFunc("POST /v1/auth/token", s.signin.Token)
		mux.HandleFunc("POST /v1/auth/step-up", s.signin.StepUp)
		mux.HandleFunc("POST /v1/mfa/totp", s.signin.EnrolTOTP)
		mux.HandleFunc("POST /v1/mfa/totp/confirm", s.signin.ConfirmTOTP)
	}
	if s.scim != nil {
		mux.HandleFunc("GET /scim/v2/ServiceProviderConfig", s.scim.ServiceProviderConfig)
		mux.HandleFunc("GET /scim/v2/ResourceTypes", s.scim.ResourceTypes)
		mux.HandleFunc("GET /scim/v2/Schemas", s.scim.Schemas)
		mux.HandleFunc("GET /scim/v2/Users", s.scim.ListUsers)
		mux.HandleFunc("POST /scim/v2/Users", s.scim.CreateUser)
		mux.HandleFunc("GET /scim/v2/Users/{id}", s.scim.GetUser)
		mux.HandleFunc("PUT /scim/v2/Users/{id}", s.scim.ReplaceUser)
		mux.HandleFunc("PATCH /scim/v2/Users/{id}", s.scim.PatchUser)
		mux.HandleFunc("DELETE /scim/v2/Users/{id}", s.scim.DeleteUser)
		mux.HandleFunc("GET /scim/v2/Groups", s.scim.ListGroups)
		mux.HandleFunc("POST /scim/v2/Groups", s.scim.CreateGroup)
		mux.HandleFunc("GET /scim/v2/Groups/{id}", s.scim.GetGroup)
		mux.HandleFunc("PUT /scim/v2/Groups/{id}", s.scim.ReplaceGroup)
		mux.HandleFunc("PATCH /scim/v2/Groups/{id}", s.scim.PatchGroup)
		mux.HandleFunc("DELETE /scim/v2/Groups/{id}", s.scim.DeleteGroup)
	}
	mux.HandleFunc("GET /v1/sessions", s.authed(s.sessions))
	mux.HandleFunc("POST /v1/sessions/{id}/revoke", s.authed(s.revokeSession))
	mux.HandleFunc("GET /v1/users", s.authed(s.listUsers))
	mux.HandleFunc("POST /v1/users/{subject}/disable", s.authed(s.userAction("disable")))
	mux.HandleFunc("POST /v1/users/{subject}/enable", s.authed(s.userAction("enable")))
	mux.HandleFunc("POST /v1/users/{subject}/unbind", s.authed(s.userAction("unbind")))
	mux.HandleFunc("POST /v1/users/{subject}/mfa/reset", s.authed(s.userAction("mfa-reset")))
	mux.HandleFunc("POST /v1/users/{subject}/mfa/allow-enrol", s.authed(s.userAction("mfa-allow-enrol")))
	mux.HandleFunc("GET /v1/weights", s.authed(s.listWeights))
	mux.HandleFunc("PUT /v1/weights/{name}", s.authed(s.putWeights))
	mux.HandleFunc("GET /v1/weights/{name}", s.authed(s.getWeights))
	mux.HandleFunc("DELETE /v1/weights/{name}", s.authed(s.deleteWeights))
	mux.HandleFunc("POST /v1/weights/{name}/verify", s.authed(s.verifyWeights))
	mux.HandleFunc("POST /v1/weights/{name}/rekey", s.authed(s.rekeyWeights))
	mux.HandleFunc("POST /v1/weights/{name}/key", s.authed(s.releaseKey))
	mux.HandleFunc("GET /v1/weights/{name}/segments", s.authed(s.getSegments))
	mux.HandleFunc("GET /v1/secrets", s.authed(s.listSecrets))
	mux.HandleFunc("GET /v1/secrets/{name}", s.authed(s.getSecret))
	mux.HandleFunc("PUT /v1/secrets/{name}", s.authed(s.putSecret))
	mux.HandleFunc("DELETE /v1/secrets/{name}", s.authed(s.deleteSecret))
	mux.HandleFunc("GET /v1/secret-versions/{name}", s.authed(s.secretVersions))
	mux.HandleFunc("POST /v1/secret-leases/{id}/renew", s.authed(s.renewSecretLease))
	mux.HandleFunc("POST /v1/secret-leases/{id}/revoke", s.authed(s.revokeSecretLease))
	mux.HandleFunc("POST /v1/vault/rotate", s.authed(s.rotateVault))
	mux.HandleFunc("POST /v1/vault/retire", s.authed(s.retireKey))
	mux.HandleFunc("GET /v1/whoami", s.authed(s.whoami))
	mux.HandleFunc("GET /v1/resources", s.authed(s.resources))
	mux.HandleFunc("GET /v1/roles", s.authed(s.roles))
	mux.HandleFunc("GET /v1/policy/explain", s.authed(s.explain))
	mux.HandleFunc("GET /v1/policy/explain/change", s.authed(s.explainChange))
	mux.HandleFunc("POST /v1/suggest", s.authed(s.suggest))
	mux.HandleFunc("POST /v1/changes", s.authed(s.fileChange))
	mux.HandleFunc("GET /v1/changes", s.authed(s.listChanges))
	mux.HandleFunc("POST /v1/changes/verdict", s.authed(s.changeVerdict))
	mux.HandleFunc("GET /v1/changes/{id}", s.authed(s.getChange))
	mux.HandleFunc("GET /v1/changes/{id}/bundle", s.authed(s.changeBundle))
	mux.HandleFunc("POST /v1/changes/{id}/approve", s.authed(s.reviewChange(change.Approve)))
	mux.HandleFunc("POST /v1/changes/{id}/deny", s.authed(s.reviewChange(change.Deny)))
	mux.HandleFunc("GET /v1/alerts", s.authed(s.listAlerts))
	mux.HandleFunc("GET /v1/alerts/{id}", s.authed(s.getAlert))
	mux.HandleFunc("POST /v1/alerts/{id}/ack", s.authed(s.transitionAlert(detect.StateAcked)))
	mux.HandleFunc("POST /v1/alerts/{id}/resolve", s.authed(s.transitionAlert(detect.StateResolved)))
	mux.HandleFunc("POST /v1/ci/exchange", s.ciExchange)
	mux.HandleFunc("POST /v1/pipelines/trigger", s.authed(s.triggerPipeline))
	mux.HandleFunc("POST /v1/requests", s.authed(s.createRequest))
	mux.HandleFunc("GET /v1/requests", s.authed(s.listRequests))
	mux.HandleFunc("GET /v1/requests/{id}", s.authed(s.getRequest))
	mux.HandleFunc("GET /v1/requests/{id}/context", s.authed(s.requestContext))
	mux.HandleFunc("POST /v1/requests/{id}/approve", s.authed(s.review(access.Approve)))
	mux.HandleFunc("POST /v1/requests/{id}/deny", s.authed(s.review(access.Deny)))
	mux.HandleFunc("POST /v1/requests/{id}/cancel", s.authed(s.cancel))
	mux.HandleFunc("GET /v1/grants", s.authed(s.listGrants))
	mux.HandleFunc("GET /v1/grants/{id}", s.authed(s.getGrant))
	mux.HandleFunc("POST /v1/grants/{id}/renew", s.authed(s.renew))
	mux.HandleFunc("POST /v1/grants/{id}/revoke", s.authed(s.revoke))
	mux.HandleFunc("POST /v1/check", s.authed(s.check))
	mux.HandleFunc("POST /v1/check/batch", s.authed(s.checkBatch))
	mux.HandleFunc("GET /v1/audit/key", s.authed(s.auditKey))
	mux.HandleFunc("GET /v1/audit/checkpoint", s.authed(s.latestCheckpoint))
	mux.HandleFunc("POST /v1/audit/checkpoint", s.authed(s.issueCheckpoint))
	mux.HandleFunc("GET /v1/audit/entries", s.authed(s.entries))
	mux.HandleFunc("GET /v1/audit/proof/inclusion", s.authed(s.inclusionProof))
	mux.HandleFunc("GET /v1/audit/proof/consistency", s.authed(s.consistencyProof))
	mux.HandleFunc("POST /v1/tokens", s.authed(s.createToken))
	mux.HandleFunc("GET /v1/tokens", s.authed(s.listTokens))
	mux.HandleFunc("POST /v1/tokens/{id}/revoke", s.authed(s.revokeToken))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all hides the mux's own 405; find the methods the path does support.
		var allow []string
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Message: fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
			return
		}
		s.fail(w, r, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no route %s %s; see /v1/openapi.json", r.Method, r.URL.Path)})
	})
	return logRequests(s.log, s.m.instrument(s.secretPaths(mux)))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "ready"}
	if s.policyStatus != nil {
		body["policy"] = s.policyStatus()
	}
	if s.ready != nil {
		if err := s.ready(); err != nil {
			body["status"], body["reason"] = "unavailable", err.Error()
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
	}
	writeJSON(w, 200, body)
}

// TokenResponse is the answer of token creation. The secret is shown once.
type TokenResponse struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Kind      string    `json:"kind"`
	ExpiresAt time.Time `json:"expires_at"`
	// SessionID is the session the token was minted in; SessionBound, whether it ends and is
	// revoked with that session.
	SessionID    string `json:"session_id,omitempty"`
	SessionBound bool   `json:"session_bound,omitempty"`
}

// Whoami describes the caller.
type Whoami struct {
	Subject string   `json:"subject"`
	Kind    string   `json:"kind"`
	TokenID string   `json:"token_id"`
	Groups  []string `json:"groups"`
	Admin   bool     `json:"admin"`
	Auditor bool     `json:"auditor"`
	// SessionID, AuthTime and MFAAt describe a signed-in session (absent for API tokens).
	SessionID string    `json:"session_id,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	MFAAt     time.Time `json:"mfa_at,omitzero"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, c caller) error {
	groups := c.pol.GroupsOf(c.Subject)
	if groups == nil {
		groups = []string{}
	}
	writeJSON(w, 200, Whoami{Subject: c.Subject, Kind: c.Kind, TokenID: c.TokenID, Groups: groups, Admin: c.admin(), Auditor: c.auditor(),
		SessionID: c.SessionID, AuthTime: c.AuthTime, MFAAt: c.MFAAt})
	return nil
}

// ResourceInfo is a catalogue entry.
type ResourceInfo struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Sensitivity string   `json:"sensitivity"`
	Owners      []string `json:"owners"`
	Tags        []string `json:"tags"`
	Description string   `json:"description"`
	// Score and Matched are set on search results (GET /v1/resources?q=).
	Score   float64  `json:"score,omitempty"`
	Matched []string `json:"matched,omitempty"`
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request, c caller) error {
	info := func(res *policy.Resource) ResourceInfo {
		return ResourceInfo{Name: res.Name, Kind: res.Kind, Sensitivity: res.Sensitivity.String(), Owners: nonNil(res.Owners), Tags: nonNil(res.Tags), Description: res.Description}
	}
	out := []ResourceInfo{}
	q := r.URL.Query()
	// limit applies to a search; it is checked without one too, so that a bad value is refused
	// rather than ignored.
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	if query := q.Get("q"); q.Has("q") {
		hits, err := s.advisor(c.pol).Engine.Search(query, limit)
		if err != nil {
			return errInvalid("query parameter \"q\": %v", err)
		}
		for _, h := range hits {
			ri := info(h.Resource)
			ri.Score, ri.Matched = h.Score, h.Matched
			out = append(out, ri)
		}
	} else {
		for _, res := range c.pol.Resources() {
			out = append(out, info(res))
		}
	}
	writeJSON(w, 200, map[string]any{"resources": out})
	return nil
}

// RoleInfo describes a role and how it is obtained.
type RoleInfo struct {
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Rules       []policy.Rule `json:"rules"`
	Resources   []string      `json:"resources"`
	// Policy is the approval policy a request for the role needs ("" if not requestable).
	Policy    string `json:"approval_policy"`
	Approvals int    `json:"approvals"`
	MaxDur    string `json:"max_duration,omitempty"`
	// Digest is the digest of the role's current definition; a grant whose role_digest differs
	// was approved for another one (it keeps only what both allow).
	Digest string `json:"digest"`
}

func (s *Server) roles(w http.ResponseWriter, r *http.Request, c caller) error {
	out := []RoleInfo{}
	for _, role := range c.pol.Roles() {
		ri := RoleInfo{Name: role.Name, Description: role.Description, Rules: role.Rules, Resources: []string{}, Digest: c.pol.RoleDigest(role.Name)}
		for _, res := range c.pol.RoleResources(role.Name) {
			ri.Resources = append(ri.Resources, res.Name)
		}
		if req, err := c.pol.Requirement(role.Name); err == nil {
			ri.Policy, ri.Approvals, ri.MaxDur = req.Policy.Name, req.Policy.TotalApprovals(), policy.FormatDuration(req.Policy.MaxDuration.Std())
		}
		out = append(out, ri)
	}
	writeJSON(w, 200, map[string]any{"roles": out})
	return nil
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	requester := q.Get("requester")
	if requester == "" {
		requester = c.Subject
	}
	if requester != c.Subject && !c.admin() && !c.auditor() {
		return errForbidden("explaining another requester's access shows group memberships; only admins and auditors may (use `rampart policy explain --policy DIR` on the policy repository)")
	}
	beneficiary := q.Get("beneficiary")
	if beneficiary == "" {
		beneficiary = requester
	}
	role := q.Get("role")
	if role == "" {
		return errInvalid("query parameter \"role\" is required")
	}
	e, err := c.pol.Explain(requester, beneficiary, role)
	if err != nil {
		return errInvalid("%v", err)
	}
	// A request for someone else shows who is tied to them by a group: the caller sees that
	// for a beneficiary they may file for (they would see it by filing), admins and auditors
	// for anyone.
	if beneficiary != c.Subject && !e.MayFile && !c.admin() && !c.auditor() {
		return errForbidden("explaining a request for %s shows their group memberships; only admins, auditors and people the policy lets file requests for them (request_for) may", beneficiary)
	}
	writeJSON(w, 200, e)
	return nil
}

// CreateRequestBody is the body of POST /v1/requests.
type CreateRequestBody struct {
	// Role to request; or leave it out and name Resource and Action to request the least
	// privileged role that gives the action (see POST /v1/suggest).
	Role     string `json:"role,omitempty"`
	Resource string `json:"resource,omitempty"`
	// Resources, with Action, files one request per distinct suggested role (see CreatedSet).
	Resources   []string `json:"resources,omitempty"`
	Action      string   `json:"action,omitempty"`
	Beneficiary string   `json:"beneficiary,omitempty"`
	Reason      string   `json:"reason"`
	Duration    string   `json:"duration,omitempty"`
	BreakGlass  bool     `json:"break_glass,omitempty"`
}

// Created is the answer of POST /v1/requests.
type Created struct {
	Request access.Request `json:"request"`
	Grant   *access.Grant  `json:"grant,omitempty"`
	// Suggestion says how the role was chosen, when the request named a resource and action.
	Suggestion *suggest.Advice `json:"suggestion,omitempty"`
	// Resources are the resources of the body this request's role was suggested for, when the
	// body named several (CreatedSet).
	Resources []string `json:"resources,omitempty"`
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, c caller) error {
	var b CreateRequestBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	d, err := parseDuration("duration", b.Duration)
	if err != nil {
		return err
	}
	if c.Kind == identity.KindService && b.Beneficiary == "" {
		return errInvalid("a service token must name the beneficiary")
	}
	if len(b.Resources) > 0 {
		return s.createRequestSet(w, r, c, b, d)
	}
	var adv *suggest.Advice
	switch {
	case b.Role != "" && (b.Resource != "" || b.Action != ""):
		return errInvalid("name a role, or a resource and an action, not both")
	case b.Role == "" && (b.Resource == "" || b.Action == ""):
		return errInvalid("name a role, or a resource and an action to get the least privileged role that gives it")
	case b.Role == "":
		a, err := s.advise(r.Context(), c.pol, SuggestBody{Resource: b.Resource, Actions: []string{b.Action}})
		if err != nil {
			return err
		}
		adv, b.Role = &a, a.Role.Role
	}
	out, err := s.access.Create(r.Context(), access.CreateInput{Requester: c.Subject, Role: b.Role, Beneficiary: b.Beneficiary, Reason: b.Reason, Duration: d, BreakGlass: b.BreakGlass})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, Created{Request: out.Request, Grant: out.Grant, Suggestion: adv})
	return nil
}

// RequestList is a page of requests.
type RequestList struct {
	Requests      []access.Request `json:"requests"`
	NextPageToken string           `json:"next_page_token,omitempty"`
}

const (
	defaultLimit = 50
	maxLimit     = 500
)

// boolParam reads a boolean query parameter: absent is false, and only the words true and false
// are accepted (as OpenAPI writes a boolean in a query). Anything else, 1 and yes included, or
// the parameter given twice, is refused: read as false, ?all=1 silently listed only the caller's
// own (invariant 7: bad input is refused, not guessed at).
func boolParam(r *http.Request, name string) (bool, error) {
	vs, ok := r.URL.Query()[name]
	switch {
	case !ok:
		return false, nil
	case len(vs) > 1:
		return false, errInvalid("query parameter %q is given %d times; give it once, true or false", name, len(vs))
	case vs[0] == "true":
		return true, nil
	case vs[0] == "false":
		return false, nil
	}
	return false, errInvalid("query parameter %q must be true or false, not %q", name, vs[0])
}

func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimit {
		return 0, errInvalid("query parameter \"limit\" must be a number from 1 to %d", maxLimit)
	}
	return n, nil
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	f := access.RequestFilter{Limit: limit + 1}
	for _, st := range q["state"] {
		switch access.State(st) {
		case access.Pending, access.Approved, access.Denied, access.Cancelled, access.Expired:
			f.States = append(f.States, access.State(st))
		default:
			return errInvalid("query parameter \"state\": unknown state %q; use pending, approved, denied, cancelled or expired", st)
		}
	}
	if tok := q.Get("page_token"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		ns, id, ok := strings.Cut(string(raw), ":")
		n, perr := strconv.ParseInt(ns, 10, 64)
		if err != nil || !ok || perr != nil || n <= 0 {
			return errInvalid("query parameter \"page_token\" is not a token this server issued")
		}
		f.AfterTime, f.AfterID = time.Unix(0, n), id
	}
	rs, err := s.access.List(r.Context(), c.Subject, access.ListScope(q.Get("scope")), f)
	if err != nil {
		return err
	}
	out := RequestList{Requests: rs}
	if len(rs) > limit {
		last := rs[limit-1]
		out.Requests = rs[:limit]
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%s", last.CreatedAt.UnixNano(), last.ID))
	}
	if out.Requests == nil {
		out.Requests = []access.Request{}
	}
	writeJSON(w, 200, out)
	return nil
}

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, c caller) error {
	v, err := s.access.Get(r.Context(), r.PathValue("id"), c.Subject)
	if err != nil {
		return err
	}
	if v.Reviews == nil {
		v.Reviews = []access.Review{}
	}
	writeJSON(w, 200, v)
	return nil
}

// ReviewBody is the body of approve and deny.
type ReviewBody struct {
	// Duration, on approve, caps the grant at this length.
	Duration string `json:"duration,omitempty"`
	Comment  string `json:"comment,omitempty"`
}

func (s *Server) review(d access.Decision) handler {
	return func(w http.ResponseWriter, r *http.Request, c caller) error {
		var b ReviewBody
		if err := decode(w, r, &b); err != nil {
			return err
		}
		if err := ownSession(c, string(d)); err != nil {
			return err
		}
		dur, err := parseDuration("duration", b.Duration)
		if err != nil {
			return err
		}
		if d == access.Deny && dur != 0 {
			return errInvalid("field \"duration\" only applies to approvals")
		}
		// Only a multi-factor authentication that counts for approvals satisfies require_step_up:
		// the provider's, or a Rampart factor the person has held for a day (invariant 8).
		if _, err := s.access.Review(r.Context(), access.ReviewInput{RequestID: r.PathValue("id"), Approver: c.Subject, Decision: d, Duration: dur, Comment: b.Comment,
			MFAAt: c.TrustedMFAAt, CredentialID: c.TokenID, SessionID: c.SessionID, SessionRisk: c.Risk}); err != nil {
			return untrustedStepUp(err, c)
		}
		return s.getRequest(w, r, c)
	}
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := decodeOptional(w, r, &struct{}{}); err != nil {
		return err
	}
	if _, err := s.access.Cancel(r.Context(), r.PathValue("id"), c.Subject); err != nil {
		return err
	}
	return s.getRequest(w, r, c)
}

var grantID = regexp.MustCompile(`^grt_[a-z2-7]{16}$`)

// GrantList is a page of grants.
type GrantList struct {
	Grants        []access.Grant `json:"grants"`
	NextPageToken string         `json:"next_page_token,omitempty"`
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, c caller) error {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		return err
	}
	f := access.GrantFilter{Subject: q.Get("subject"), Limit: limit + 1, AfterID: q.Get("page_token")}
	if f.AfterID != "" && !grantID.MatchString(f.AfterID) {
		return errInvalid("query parameter \"page_token\" is not a token this server issued")
	}
	all, err := boolParam(r, "all")
	if err != nil {
		return err
	}
	if !all && f.Subject == "" {
		f.Subject = c.Subject
	}
	for _, st := range q["state"] {
		switch access.GrantState(st) {
		case access.GrantActive, access.GrantRevoked, access.GrantExpired:
			f.States = append(f.States, access.GrantState(st))
		default:
			return errInvalid("query parameter \"state\": unknown grant state %q; use active, revoked or expired", st)
		}
	}
	gs, err := s.access.Grants(r.Context(), c.Subject, f)
	if err != nil {
		return err
	}
	out := GrantList{Grants: gs}
	if len(gs) > limit {
		out.Grants, out.NextPageToken = gs[:limit], gs[limit-1].ID
	}
	if out.Grants == nil {
		out.Grants = []access.Grant{}
	}
	writeJSON(w, 200, out)
	return nil
}

func (s *Server) getGrant(w http.ResponseWriter, r *http.Request, c caller) error {
	g, err := s.access.GetGrant(r.Context(), r.PathValue("id"), c.Subject)
	if err != nil {
		return err
	}
	writeJSON(w, 200, g)
	return nil
}

// RenewBody is the body of POST /v1/grants/{id}/renew.
type RenewBody struct {
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request, c caller) error {
	var b RenewBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	d, err := parseDuration("duration", b.Duration)
	if err != nil {
		return err
	}
	req, err := s.access.Renew(r.Context(), r.PathValue("id"), c.Subject, d, b.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, Created{Request: req})
	return nil
}

// RevokeBody is the body of POST /v1/grants/{id}/revoke.
type RevokeBody struct {
	Reason string `json:"reason"`
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, c caller) error {
	var b RevokeBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if strings.TrimSpace(b.Reason) == "" {
		return errInvalid("field \"reason\" is required: say why the grant is revoked")
	}
	g, err := s.access.Revoke(r.Context(), r.PathValue("id"), c.Subject, b.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, 200, g)
	return nil
}

// mayCheck: admins, auditors and service tokens may ask about anyone; others about themselves.
func (c caller) mayCheck(subject string) bool {
	return subject == c.Subject || c.Kind == identity.KindService || c.admin() || c.auditor()
}

func validQuery(q authz.Query) error {
	if err := policy.ValidateSubject(q.Subject); err != nil {
		return errInvalid("field \"subject\": %v", err)
	}
	if q.Action == "*" {
		return errInvalid("field \"action\": ask about one action, not \"*\"")
	}
	if err := policy.ValidateAction(q.Action); err != nil {
		return errInvalid("field \"action\": %v", err)
	}
	if err := policy.ValidateResourceName(q.Resource); err != nil {
		return errInvalid("field \"resource\": %v", err)
	}
	return nil
}

func (s *Server) check(w http.ResponseWriter, r *http.Request, c caller) error {
	var q authz.Query
	if err := decode(w, r, &q); err != nil {
		return err
	}
	if err := validQuery(q); err != nil {
		return err
	}
	if !c.mayCheck(q.Subject) {
		return errForbidden("%s may only check their own access; checking %s needs an admin, auditor or service token", c.Subject, q.Subject)
	}
	d := s.index.Check(q)
	s.m.decision(d)
	if d.Unavailable {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": &Error{Code: CodeUnavailable, Message: d.Reason}, "decision": d})
		return nil
	}
	writeJSON(w, 200, d)
	return nil
}

// BatchBody is the body of POST /v1/check/batch.
type BatchBody struct {
	Checks []authz.Query `json:"checks"`
}

// MaxBatch bounds a batch check.
const MaxBatch = 1000

func (s *Server) checkBatch(w http.ResponseWriter, r *http.Request, c caller) error {
	var b BatchBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if len(b.Checks) == 0 || len(b.Checks) > MaxBatch {
		return errInvalid("field \"checks\" must hold 1 to %d queries", MaxBatch)
	}
	for i, q := range b.Checks {
		if err := validQuery(q); err != nil {
			return errInvalid("checks[%d]: %s", i, err.Error())
		}
		if !c.mayCheck(q.Subject) {
			return errForbidden("checks[%d]: %s may only check their own access", i, c.Subject)
		}
	}
	ds := s.index.CheckBatch(b.Checks)
	var unavailable *Error
	for _, d := range ds {
		s.m.decision(d)
		if d.Unavailable && unavailable == nil {
			unavailable = &Error{Code: CodeUnavailable, Message: d.Reason}
		}
	}
	if unavailable != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": unavailable, "decisions": ds})
		return nil
	}
	writeJSON(w, 200, map[string]any{"decisions": ds})
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Registry is the Prometheus registry /metrics serves, for components that add metrics.
func (s *Server) Registry() prometheus.Registerer { return s.m.Registry() }
