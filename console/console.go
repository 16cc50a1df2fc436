// Package console is Rampart's web console: server-rendered pages (html/template, embedded in the
// binary, no script but one small same-origin file) for people who ask for access, approve it,
// hold it, audit it and administer it, served at / by `rampart server` and `rampart dev`.
//
// The console decides nothing. Every page is read, and every action taken, through Rampart's own
// API, in process, as the signed-in person (api.Client over an in-process transport, with the
// person's session access token as the bearer): authentication, authorization, the decision, the
// ledger entry and the notification happen exactly once, in the same place as for the CLI.
//
// Security, in the order a request meets it:
//   - The session rides in two cookies set by the OIDC browser sign-in (identity.SessionCookies):
//     HttpOnly, SameSite=Strict, Secure and __Host- over https. They are read here only; the API
//     never accepts a cookie, so a browser's ambient credential authorises no route a tool uses
//     (weights, secrets, checks). The access token inside is short-lived; when it has expired the
//     console refreshes it through POST /v1/auth/token, so revocation, a disabled user, the
//     session's absolute lifetime and the risk engine's refresh check all apply.
//   - A change is a POST with a CSRF token bound to the sign-in session (HMAC of its id under a
//     key of this deployment) and from this origin (Sec-Fetch-Site / Origin checked by
//     http.CrossOriginProtection); a GET changes nothing.
//   - Every answer carries a Content-Security-Policy without inline script or style and with
//     frame-ancestors 'none', no-store caching and no referrer; output is escaped by
//     html/template only.
package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console needs.
type Config struct {
	// API is Rampart's API handler (api.Server.Handler): every read and action goes through it.
	API http.Handler
	// ExternalURL is the server's public base URL; https makes the cookies Secure and __Host-.
	ExternalURL string
	// CSRFKey binds CSRF tokens to sessions. Replicas behind one name must share it (the server
	// derives it from the ledger signing key, which they share).
	CSRFKey []byte
	// SignIn says whether the OIDC browser sign-in (/login) is configured.
	SignIn bool
	Logger *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Console serves the web console.
type Console struct {
	cfg    Config
	secure bool
	pages  map[string]*template.Template
	static http.Handler
	origin *http.CrossOriginProtection

	mu sync.Mutex
	// refreshed remembers, for a short while, what refreshing a refresh token gave, so that two
	// tabs whose access token expired together do not present the same refresh token twice (a
	// replay, which revokes the session). Keyed by the token's hash.
	refreshed map[string]refreshResult
}

type refreshResult struct {
	tok signin.TokenResponse
	at  time.Time
}

// refreshGrace is how long a refresh's result is handed to another request with the same
// refresh token.
const refreshGrace = 30 * time.Second

// New returns a console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil {
		return nil, errors.New("console: no API handler")
	}
	if len(cfg.CSRFKey) < 16 {
		return nil, errors.New("console: the CSRF key must be at least 16 bytes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{cfg: cfg, secure: strings.HasPrefix(cfg.ExternalURL, "https:"), refreshed: map[string]refreshResult{},
		origin: http.NewCrossOriginProtection()}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix("/static/", http.FileServerFS(sub))
	return c, nil
}

// Register mounts the console's routes on mux. They do not overlap the API's (/v1/…, /login,
// /callback, /scim/…, /healthz, /readyz, /metrics).
func (c *Console) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", c.handle(c.home))
	mux.HandleFunc("GET /request", c.handle(c.requestForm))
	mux.HandleFunc("POST /request", c.handle(c.createRequest))
	mux.HandleFunc("GET /requests", c.handle(c.requestList))
	mux.HandleFunc("GET /requests/{id}", c.handle(c.requestPage))
	mux.HandleFunc("GET /requests/{id}/state", c.handle(c.requestState))
	mux.HandleFunc("POST /requests/{id}/approve", c.handle(c.review("approve")))
	mux.HandleFunc("POST /requests/{id}/deny", c.handle(c.review("deny")))
	mux.HandleFunc("POST /requests/{id}/cancel", c.handle(c.cancel))
	mux.HandleFunc("GET /reviews", c.handle(c.reviews))
	mux.HandleFunc("GET /grants", c.handle(c.grants))
	mux.HandleFunc("GET /grants/{id}", c.handle(c.grantPage))
	mux.HandleFunc("POST /grants/{id}/renew", c.handle(c.renew))
	mux.HandleFunc("POST /grants/{id}/revoke", c.handle(c.revoke))
	mux.HandleFunc("GET /changes/{id}", c.handle(c.changePage))
	mux.HandleFunc("GET /audit", c.handle(c.audit))
	mux.HandleFunc("GET /alerts", c.handle(c.alerts))
	mux.HandleFunc("GET /alerts/{id}", c.handle(c.alertPage))
	mux.HandleFunc("POST /alerts/{id}/ack", c.handle(c.alertTransition(detect.StateAcked)))
	mux.HandleFunc("POST /alerts/{id}/resolve", c.handle(c.alertTransition(detect.StateResolved)))
	mux.HandleFunc("GET /admin", c.handle(c.admin))
	mux.HandleFunc("POST /admin/users/{subject}/{action}", c.handle(c.userAction))
	mux.HandleFunc("POST /admin/sessions/{id}/revoke", c.handle(c.revokeSession))
	mux.HandleFunc("POST /admin/tokens/{id}/revoke", c.handle(c.revokeToken))
	mux.HandleFunc("POST /logout", c.handle(c.logout))
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		c.headers(w)
		w.Header().Set("Cache-Control", "public, max-age=300")
		c.static.ServeHTTP(w, r)
	})
}

// Owns reports whether path is one of the console's (Register's routes); everything else is
// the API's.
func Owns(path string) bool {
	switch path {
	case "/", "/request", "/requests", "/reviews", "/grants", "/audit", "/alerts", "/admin", "/logout":
		return true
	}
	for _, prefix := range []string{"/requests/", "/grants/", "/changes/", "/alerts/", "/admin/", "/static/"} {
		if strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// csp is the console's Content-Security-Policy: its own script and style files only, no inline
// script or style, no plugins, no framing, forms to itself only.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) headers(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if c.secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// view is one console request: the person, their API client and the page being built.
type view struct {
	w    http.ResponseWriter
	r    *http.Request
	api  *api.Client
	me   api.Whoami
	csrf string
}

// handle wraps a page: security headers, the session (refreshed when its access token has
// expired), and, for a POST, the origin and CSRF checks, before h runs.
func (c *Console) handle(h func(v *view) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c.headers(w)
		v, ok := c.session(w, r)
		if !ok {
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if err := c.origin.Check(r); err != nil {
				c.problem(v, http.StatusForbidden, "Refused: not sent from this console", "This change was sent from another site. Nothing was changed. Open the console and try again there.")
				return
			}
			if err := r.ParseForm(); err != nil {
				c.problem(v, http.StatusBadRequest, "The form could not be read", err.Error())
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(v.csrf)) != 1 {
				c.problem(v, http.StatusForbidden, "Refused: the form has expired", "The form's security token does not belong to your current sign-in (it is from another session, or missing). Nothing was changed. Reload the page and try again.")
				return
			}
		}
		if err := h(v); err != nil {
			c.fail(v, err)
		}
	}
}

// cookie reads a console cookie.
func (c *Console) cookie(r *http.Request, base string) string {
	ck, err := r.Cookie(identity.CookieName(base, c.secure))
	if err != nil {
		return ""
	}
	return ck.Value
}

// session authenticates the browser through the API; it answers the request itself (false) when
// there is no usable session.
func (c *Console) session(w http.ResponseWriter, r *http.Request) (*view, bool) {
	access, refresh := c.cookie(r, identity.SessionCookie), c.cookie(r, identity.RefreshCookie)
	v := &view{w: w, r: r, api: c.client(r, access)}
	if access == "" && refresh == "" {
		c.toSignIn(v, "")
		return nil, false
	}
	me, err := v.api.Whoami(r.Context())
	if api.IsStatus(err, http.StatusUnauthorized) && refresh != "" {
		tok, rerr := c.refresh(r, refresh)
		if rerr == nil {
			exp := tok.Session.ExpiresAt
			for _, ck := range identity.SessionCookies(identity.Issued{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Session: identity.Session{ExpiresAt: exp}}, c.secure, c.cfg.Now()) {
				http.SetCookie(w, ck)
			}
			v.api.Token = tok.AccessToken
			me, err = v.api.Whoami(r.Context())
		} else {
			err = rerr
		}
	}
	if err != nil {
		var se *api.ServerError
		var oe *api.OAuthError
		if api.IsStatus(err, http.StatusUnauthorized) || errors.As(err, &oe) {
			for _, ck := range identity.ClearSessionCookies(c.secure) {
				http.SetCookie(w, ck)
			}
			c.toSignIn(v, err.Error())
			return nil, false
		}
		if errors.As(err, &se) {
			c.problem(v, se.Status, "Rampart cannot serve this page right now", se.Error())
			return nil, false
		}
		c.problem(v, http.StatusServiceUnavailable, "Rampart cannot serve this page right now", err.Error())
		return nil, false
	}
	if me.SessionID == "" {
		c.problem(v, http.StatusForbidden, "Not a sign-in session", "The console only accepts a signed-in session. Sign in again.")
		return nil, false
	}
	v.me, v.csrf = me, c.csrfToken(me.SessionID)
	return v, true
}

// toSignIn sends a browser without a session to the sign-in, coming back to the page it asked
// for (a GET), or explains (a POST: the change is not replayed after a sign-in).
func (c *Console) toSignIn(v *view, why string) {
	if !c.cfg.SignIn {
		c.problem(v, http.StatusUnauthorized, "Sign-in is not configured",
			"This server has no OpenID Connect provider configured, so nobody can sign in to the console. Configure [oidc] in the server's configuration (see docs/identity.md), or run `rampart dev`, which has a development provider.")
		return
	}
	if v.r.Method != http.MethodGet {
		c.problem(v, http.StatusUnauthorized, "Your session has ended", "Nothing was changed. Sign in again, then repeat the action. "+why)
		return
	}
	http.Redirect(v.w, v.r, "/login?return_to="+url.QueryEscape(v.r.URL.RequestURI()), http.StatusSeeOther)
}

// refresh exchanges the refresh cookie through the API's token endpoint (risk-checked there),
// once per refresh token within refreshGrace.
func (c *Console) refresh(r *http.Request, token string) (signin.TokenResponse, error) {
	sum := sha256.Sum256([]byte(token))
	key := string(sum[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	for k, res := range c.refreshed {
		if now.Sub(res.at) > refreshGrace {
			delete(c.refreshed, k)
		}
	}
	if res, ok := c.refreshed[key]; ok {
		return res.tok, nil
	}
	cl := c.client(r, "")
	tok, err := cl.AuthToken(r.Context(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}})
	if err != nil {
		return tok, err
	}
	c.refreshed[key] = refreshResult{tok: tok, at: now}
	return tok, nil
}

// csrfToken is the session's CSRF token.
func (c *Console) csrfToken(sessionID string) string {
	m := hmac.New(sha256.New, c.cfg.CSRFKey)
	m.Write([]byte("rampart console csrf\x00" + sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// client is an API client that calls the API handler in process, as the browser's request.
func (c *Console) client(r *http.Request, token string) *api.Client {
	return &api.Client{BaseURL: "http://127.0.0.1", Token: token, HTTP: &http.Client{Transport: inProcess{h: c.cfg.API, orig: r}, Timeout: 2 * time.Minute}}
}

// inProcess serves an API request with the API handler, carrying the browser's address and
// software (the risk engine and the ledger see the person's client, not the console).
type inProcess struct {
	h    http.Handler
	orig *http.Request
}

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(t.orig.Context())
	req.RemoteAddr = t.orig.RemoteAddr
	req.Host = t.orig.Host
	req.RequestURI = req.URL.RequestURI()
	for _, h := range []string{"User-Agent", "X-Forwarded-For", "Accept-Language"} {
		req.Header.Del(h)
		for _, val := range t.orig.Header.Values(h) {
			req.Header.Add(h, val)
		}
	}
	if req.Body == nil {
		req.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}}
	t.h.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{StatusCode: rec.status, Status: fmt.Sprintf("%d %s", rec.status, http.StatusText(rec.status)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), ContentLength: int64(rec.body.Len()), Request: req}, nil
}

// recorder is the response of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) Flush() {}

// ctx is the request's context.
func (v *view) ctx() context.Context { return v.r.Context() }
