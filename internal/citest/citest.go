// Package citest fakes the HTTP edges of CI systems for tests: an OpenID Connect issuer that
// mints GitHub-Actions- and GitLab-CI-shaped ID tokens (discovery document, JWKS, key rotation),
// and GitHub's workflow_dispatch API. They are fakes of SaaS endpoints (DESIGN.md §5) and say so
// in their names; everything behind them in a test is real.
package citest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rampart.dev/rampart/internal/changetest"
)

const changetestPolicy = changetest.Policy

// FakeCIIssuer is a fake of a CI system's token service: it serves
// /.well-known/openid-configuration and a JWKS, and mints ID tokens shaped like GitHub Actions'
// or GitLab CI's. Rotate replaces its signing key (the old one leaves the JWKS).
type FakeCIIssuer struct {
	URL string
	// Shape is "github" or "gitlab".
	Shape string
	srv   *httptest.Server
	now   func() time.Time

	mu       sync.Mutex
	key      *rsa.PrivateKey
	kid      string
	retired  []*rsa.PrivateKey
	keyFetch int
	jobs     map[string]Run // GitHub Actions' token request: bearer → the job's run
}

// NewFakeGitHubActionsIssuer starts a fake of token.actions.githubusercontent.com.
func NewFakeGitHubActionsIssuer(t testing.TB, now func() time.Time) *FakeCIIssuer {
	return newIssuer(t, "github", now)
}

// NewFakeGitLabCIIssuer starts a fake of a GitLab instance's ID token issuer.
func NewFakeGitLabCIIssuer(t testing.TB, now func() time.Time) *FakeCIIssuer {
	return newIssuer(t, "gitlab", now)
}

func newIssuer(t testing.TB, shape string, now func() time.Time) *FakeCIIssuer {
	if now == nil {
		now = time.Now
	}
	f := &FakeCIIssuer{Shape: shape, now: now}
	f.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"issuer": f.URL, "jwks_uri": f.URL + "/.well-known/jwks",
			"id_token_signing_alg_values_supported": []string{"RS256"}, "response_types_supported": []string{"id_token"}})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.keyFetch++
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: "RS256", Use: "sig"}}}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("GET /_actions/idtoken", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		run, ok := f.jobs[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "unknown request token", http.StatusUnauthorized)
			return
		}
		run.Audience = r.URL.Query().Get("audience")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"value": f.Mint(run)})
	})
	f.srv = httptest.NewServer(mux)
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// Job registers a running job, as GitHub Actions does for a job with id-token: write, and returns
// the environment it gets: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN. The
// endpoint mints a token for run with the audience asked for.
func (f *FakeCIIssuer) Job(run Run) []string {
	bearer := randomID()
	f.mu.Lock()
	if f.jobs == nil {
		f.jobs = map[string]Run{}
	}
	f.jobs[bearer] = run
	f.mu.Unlock()
	return []string{"ACTIONS_ID_TOKEN_REQUEST_URL=" + f.URL + "/_actions/idtoken?api-version=2.0", "ACTIONS_ID_TOKEN_REQUEST_TOKEN=" + bearer}
}

// KeyFetches counts the JWKS downloads.
func (f *FakeCIIssuer) KeyFetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.keyFetch
}

// Rotate makes a new signing key; the JWKS publishes only it from now on.
func (f *FakeCIIssuer) Rotate() {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key != nil {
		f.retired = append(f.retired, f.key)
	}
	f.key = k
	b := make([]byte, 8)
	rand.Read(b)
	f.kid = fmt.Sprintf("%x", b)
}

// Run describes the job a token is minted for.
type Run struct {
	Repository string // acme/infra
	Workflow   string // deploy.yml (GitHub); ignored for GitLab (.gitlab-ci.yml)
	Ref        string // refs/heads/main
	SHA        string
	Event      string // push, workflow_dispatch, pull_request (GitHub); push, web, merge_request_event (GitLab)
	Actor      string
	Protected  bool
	Audience   string
	// TTL is the token's life (5 minutes if zero); IssuedAt defaults to now.
	TTL      time.Duration
	IssuedAt time.Time
	// Extra claims are added last, replacing any of the above.
	Extra map[string]any
}

// Claims returns the claims a token for r carries, in the issuer's shape.
func (f *FakeCIIssuer) Claims(r Run) map[string]any {
	iat := r.IssuedAt
	if iat.IsZero() {
		iat = f.now()
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	c := map[string]any{"iss": f.URL, "aud": r.Audience, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": iat.Add(ttl).Unix(), "jti": randomID()}
	protected := fmt.Sprint(r.Protected)
	owner, _, _ := strings.Cut(r.Repository, "/")
	switch f.Shape {
	case "github":
		wref := r.Repository + "/.github/workflows/" + r.Workflow + "@" + r.Ref
		c["sub"] = "repo:" + r.Repository + ":ref:" + r.Ref
		c["repository"], c["repository_owner"], c["ref"], c["sha"], c["event_name"] = r.Repository, owner, r.Ref, r.SHA, r.Event
		c["workflow_ref"], c["job_workflow_ref"], c["workflow"] = wref, wref, r.Workflow
		c["actor"], c["run_id"], c["ref_protected"], c["ref_type"], c["environment"] = r.Actor, "4242", protected, "branch", "production"
	case "gitlab":
		name, typ := strings.TrimPrefix(r.Ref, "refs/heads/"), "branch"
		if strings.HasPrefix(r.Ref, "refs/tags/") {
			name, typ = strings.TrimPrefix(r.Ref, "refs/tags/"), "tag"
		}
		host := strings.TrimPrefix(f.URL, "http://")
		c["sub"] = "project_path:" + r.Repository + ":ref_type:" + typ + ":ref:" + name
		c["project_path"], c["namespace_path"], c["ref"], c["ref_type"], c["ref_protected"] = r.Repository, owner, name, typ, protected
		c["sha"], c["pipeline_source"], c["user_login"], c["pipeline_id"] = r.SHA, r.Event, r.Actor, "77"
		c["ci_config_ref_uri"] = host + "/" + r.Repository + "//.gitlab-ci.yml@" + r.Ref
	}
	for k, v := range r.Extra {
		c[k] = v
	}
	return c
}

// Mint signs a token for r with the current key.
func (f *FakeCIIssuer) Mint(r Run) string {
	f.mu.Lock()
	k, kid := f.key, f.kid
	f.mu.Unlock()
	return sign(jose.RS256, k, kid, f.Claims(r))
}

// MintRetired signs a token for r with the first key rotated out (it keeps its key id).
func (f *FakeCIIssuer) MintRetired(r Run, kid string) string {
	f.mu.Lock()
	k := f.retired[0]
	f.mu.Unlock()
	return sign(jose.RS256, k, kid, f.Claims(r))
}

// KeyID is the current key's id.
func (f *FakeCIIssuer) KeyID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kid
}

// MintUnsigned returns the token for r with alg none and no signature.
func (f *FakeCIIssuer) MintUnsigned(r Run) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(f.Claims(r))
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// MintForeign signs a token for r with a key the issuer never published, under the current key id.
func (f *FakeCIIssuer) MintForeign(r Run) string {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return sign(jose.ES256, k, f.KeyID(), f.Claims(r))
}

func sign(alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		panic(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		panic(err)
	}
	return tok
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// FakeGitHubDispatchAPI is a fake of GitHub's REST API endpoint
// POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches: it records each dispatch
// and answers 204 when the bearer token is Token.
type FakeGitHubDispatchAPI struct {
	URL   string
	Token string

	mu    sync.Mutex
	calls []Dispatch
	srv   *httptest.Server
}

// Dispatch is one recorded call.
type Dispatch struct {
	Path string
	Ref  string
	Auth string
}

// NewFakeGitHubDispatchAPI starts the fake.
func NewFakeGitHubDispatchAPI(t testing.TB, token string) *FakeGitHubDispatchAPI {
	f := &FakeGitHubDispatchAPI{Token: token}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || !strings.HasPrefix(r.URL.Path, "/repos/") || !strings.HasSuffix(r.URL.Path, "/dispatches") {
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		var b struct {
			Ref string `json:"ref"`
		}
		raw, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err := json.Unmarshal(raw, &b); err != nil || b.Ref == "" {
			http.Error(w, `{"message":"Invalid request"}`, http.StatusUnprocessableEntity)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, Dispatch{Path: r.URL.Path, Ref: b.Ref, Auth: r.Header.Get("Authorization")})
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+f.Token {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	f.URL = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

// Calls returns the dispatches received.
func (f *FakeGitHubDispatchAPI) Calls() []Dispatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Dispatch(nil), f.calls...)
}

// Policy returns a policy for CI tests: changetest's groups and protected repository infra, the
// fake issuers as CIIssuers github (GitHub shape) and gitlab (GitLab shape), and runners (GitHub
// shape, its protected claim switched off, as for a self-hosted issuer), all at their URLs; and
// pipelines:
//
//   - acme/infra/deploy.yml (github): push and workflow_dispatch on main, protected refs only,
//     commits the change gate landed on infra; workflow_dispatch runs need the actor's trigger
//     grant; dispatched through dispatchURL with the server's $FAKE_DISPATCH_TOKEN.
//   - acme/infra/test.yml (github): push and pull_request on any branch, unguarded; dispatched
//     with $FAKE_DISPATCH_STALE_TOKEN (a test sets it to a token the CI system refuses).
//   - acme/web/gitlab-ci.yml (gitlab): push and web on main, protected refs only.
//   - acme/tools/release.yml (runners): push on main, protected refs only.
//
// ci:github/acme/infra/deploy.yml reads secrets/deploy-key (standing binding pipeline-secrets),
// ci:gitlab/acme/web/gitlab-ci.yml reads secrets/web-key, which carol may write;
// ci:github/acme/infra/test.yml reads nothing. Role pipeline-trigger (trigger on pipelines/**)
// needs one maintainer's approval; carol holds it standing (release-managers).
func Policy(github, gitlab, runners, dispatchURL string) string {
	return changetestPolicy + fmt.Sprintf(`---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: github}
spec: {issuer: %q, audience: rampart, provider: github}
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: gitlab}
spec: {issuer: %q, audience: rampart, provider: gitlab}
---
apiVersion: rampart.dev/v1alpha1
kind: CIIssuer
metadata: {name: runners}
spec: {issuer: %q, audience: rampart, provider: github, claims: {protected: ""}}
---
apiVersion: rampart.dev/v1alpha1
kind: Pipeline
metadata: {name: acme/infra/deploy.yml}
spec:
  issuer: github
  events: [push, workflow_dispatch]
  refs: [refs/heads/main]
  protected_refs_only: true
  approved_changes: infra
  trigger_events: [workflow_dispatch]
  dispatch: {url: %q, token_env: FAKE_DISPATCH_TOKEN}
---
apiVersion: rampart.dev/v1alpha1
kind: Pipeline
metadata: {name: acme/infra/test.yml}
spec:
  issuer: github
  events: [push, pull_request]
  refs: ["refs/heads/**", "refs/pull/**"]
  dispatch: {url: %q, token_env: FAKE_DISPATCH_STALE_TOKEN}
---
apiVersion: rampart.dev/v1alpha1
kind: Pipeline
metadata: {name: acme/web/gitlab-ci.yml}
spec: {issuer: gitlab, events: [push, web], refs: [refs/heads/main], protected_refs_only: true}
---
apiVersion: rampart.dev/v1alpha1
kind: Pipeline
metadata: {name: acme/tools/release.yml}
spec: {issuer: runners, events: [push], refs: [refs/heads/main], protected_refs_only: true}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: pipelines/acme/infra/deploy.yml}
spec: {kind: pipeline, sensitivity: sensitive, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: pipelines/acme/infra/test.yml}
spec: {kind: pipeline, sensitivity: internal, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: pipelines/acme/web/gitlab-ci.yml}
spec: {kind: pipeline, sensitivity: internal, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: pipelines/acme/tools/release.yml}
spec: {kind: pipeline, sensitivity: internal, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: secrets/deploy-key}
spec: {kind: secret, sensitivity: sensitive, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: secrets/test-key}
spec: {kind: secret, sensitivity: internal, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: deploy-secrets}
spec:
  rules: [{actions: [read], resources: [secrets/deploy-key]}]
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: pipeline-trigger}
spec:
  rules: [{actions: [trigger], resources: ["pipelines/**"]}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: pipelines}
spec:
  match: {tags: [], resources: ["pipelines/**", "secrets/**"]}
  steps: [{name: maintainer, from: [maintainers], count: 1}]
  max_duration: 8h
---
apiVersion: rampart.dev/v1alpha1
kind: StandingBinding
metadata: {name: release-managers}
spec: {subjects: [carol], roles: [pipeline-trigger]}
---
apiVersion: rampart.dev/v1alpha1
kind: StandingBinding
metadata: {name: pipeline-secrets}
spec: {subjects: ["ci:github/acme/infra/deploy.yml"], roles: [deploy-secrets]}
---
apiVersion: rampart.dev/v1alpha1
kind: Resource
metadata: {name: secrets/web-key}
spec: {kind: secret, sensitivity: internal, owners: [maintainers]}
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: web-secrets}
spec:
  rules: [{actions: [read], resources: [secrets/web-key]}]
---
apiVersion: rampart.dev/v1alpha1
kind: Role
metadata: {name: web-secrets-writer}
spec:
  rules: [{actions: [write], resources: [secrets/web-key]}]
---
apiVersion: rampart.dev/v1alpha1
kind: StandingBinding
metadata: {name: web-pipeline-secrets}
spec: {subjects: ["ci:gitlab/acme/web/gitlab-ci.yml"], roles: [web-secrets]}
---
apiVersion: rampart.dev/v1alpha1
kind: StandingBinding
metadata: {name: web-secret-writers}
spec: {subjects: [carol], roles: [web-secrets-writer]}
`, github, gitlab, runners, dispatchURL, dispatchURL)
}

// Close stops the issuer: its discovery document and keys can no longer be fetched.
func (f *FakeCIIssuer) Close() { f.srv.Close() }
