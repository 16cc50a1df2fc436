package signin

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/internal/text"
)

// browserFlow is a redirect to the provider waiting for its callback.
type browserFlow struct {
	Nonce    string     `json:"nonce"`
	Verifier string     `json:"verifier"`
	StepUp   bool       `json:"step_up,omitempty"`
	ReturnTo string     `json:"return_to,omitempty"`
	CLI      *cliParams `json:"cli,omitempty"`
}

// cliParams are a loopback CLI sign-in's: where to send the one-time code, the CLI's state, and
// the PKCE challenge its verifier must match.
type cliParams struct {
	RedirectURI string `json:"redirect_uri"`
	State       string `json:"state"`
	Challenge   string `json:"challenge"`
}

// Register mounts the sign-in endpoints on mux (the API server mounts the same handlers itself).
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /login", s.Login)
	mux.HandleFunc("GET /callback", s.Callback)
	mux.HandleFunc("POST /login/mfa", s.LoginMFA)
	mux.HandleFunc("POST /v1/auth/device", s.Device)
	mux.HandleFunc("POST /v1/auth/token", s.Token)
	mux.HandleFunc("POST /v1/auth/step-up", s.StepUp)
	mux.HandleFunc("POST /v1/mfa/totp", s.EnrolTOTP)
	mux.HandleFunc("POST /v1/mfa/totp/confirm", s.ConfirmTOTP)
}

// crossOrigin refuses cross-site form posts (the TOTP form).
var crossOrigin = http.NewCrossOriginProtection()

// parseCLI validates a loopback CLI's parameters (RFC 8252: a loopback IP literal, any port).
func parseCLI(q url.Values) (*cliParams, error) {
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return nil, nil
	}
	u, err := url.Parse(redirect)
	if err != nil || u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") || u.Port() == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("%w: redirect_uri %q must be http://127.0.0.1:<port>/… or http://[::1]:<port>/… (a loopback address the CLI listens on)", ErrBadRequest, redirect)
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
		return nil, fmt.Errorf("%w: redirect_uri %q has no valid port", ErrBadRequest, redirect)
	}
	c := &cliParams{RedirectURI: redirect, State: q.Get("state"), Challenge: q.Get("code_challenge")}
	switch {
	case q.Get("code_challenge_method") != "S256":
		return nil, fmt.Errorf("%w: code_challenge_method must be S256", ErrBadRequest)
	case len(c.Challenge) != 43 || strings.Trim(c.Challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "":
		return nil, fmt.Errorf("%w: code_challenge must be the 43-character base64url SHA-256 of the CLI's verifier", ErrBadRequest)
	case c.State == "" || len(c.State) > 256:
		return nil, fmt.Errorf("%w: state is required (at most 256 characters)", ErrBadRequest)
	}
	return c, nil
}

// safeReturn accepts only a path on this server, so /login cannot be used to send someone
// elsewhere.
func safeReturn(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	u, err := url.Parse(p)
	// No backslash anywhere: browsers read "\\" as "/", and http.Redirect cleans the path, so
	// "/./\\evil.example" would become "/\\evil.example", another origin. No control characters.
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.ContainsRune(p, '\\') ||
		strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) || u.Scheme != "" || u.Host != "" {
		return "", fmt.Errorf("%w: return_to must be a path on this server, like /v1/whoami", ErrBadRequest)
	}
	if c := path.Clean(u.Path); strings.HasPrefix(c, "//") {
		return "", fmt.Errorf("%w: return_to must be a path on this server, like /v1/whoami", ErrBadRequest)
	}
	return p, nil
}

// Login starts a sign-in: GET /login[?return_to=/path][&step_up=1] from a browser, or with
// redirect_uri, state, code_challenge and code_challenge_method=S256 from the CLI.
func (s *Service) Login(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	cli, err := parseCLI(q)
	if err != nil {
		s.page(w, http.StatusBadRequest, "Sign-in not started", err.Error())
		return
	}
	ret, err := safeReturn(q.Get("return_to"))
	if err != nil {
		s.page(w, http.StatusBadRequest, "Sign-in not started", err.Error())
		return
	}
	if wait, err := s.admitStart(r.Context(), s.clientOf(r), "oidc"); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		s.browserError(w, r, cli, http.StatusTooManyRequests, err)
		return
	}
	s.redirectToProvider(w, r, browserFlow{ReturnTo: ret, CLI: cli, StepUp: q.Get("step_up") == "1"})
}

// redirectToProvider stores the flow and sends the browser to the provider.
func (s *Service) redirectToProvider(w http.ResponseWriter, r *http.Request, f browserFlow) {
	party, err := s.provider(r.Context())
	if err != nil {
		s.browserError(w, r, f.CLI, http.StatusBadGateway, err)
		return
	}
	f.Nonce, f.Verifier = handle(), handle()
	state, err := s.putFlow(r.Context(), "browser", browserFlowTTL, f)
	if err != nil {
		s.browserError(w, r, f.CLI, http.StatusServiceUnavailable, fmt.Errorf("cannot start the sign-in: %w", err))
		return
	}
	opts := []rp.AuthURLOpt{rp.WithCodeChallenge(s256(f.Verifier)), rp.AuthURLOpt(rp.WithURLParam("nonce", f.Nonce))}
	if f.StepUp {
		opts = append(opts, rp.AuthURLOpt(rp.WithURLParam("max_age", "0")), rp.WithPrompt(oidc.PromptLogin),
			rp.AuthURLOpt(rp.WithURLParam("acr_values", s.cfg.MFAACR[0])))
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: state, Path: "/callback", MaxAge: int(browserFlowTTL / time.Second),
		HttpOnly: true, Secure: strings.HasPrefix(s.cfg.ExternalURL, "https:"), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, rp.AuthURL(state, party, opts...), http.StatusFound)
}

// Callback finishes the provider's part: GET /callback?code=…&state=… (or error=…).
func (s *Service) Callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	c := s.clientOf(r)
	ck, err := r.Cookie(loginCookie)
	if state == "" || err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		// Login CSRF: a callback this browser did not start (or a forged state) is refused
		// before anything is exchanged.
		s.page(w, http.StatusBadRequest, "Sign-in refused",
			"This sign-in was not started in this browser (the state does not match its login cookie). Start again from the beginning.")
		_ = s.refuse(ctx, identityClaims{}, c, "oidc", decision{}, fmt.Errorf("%w: callback state does not match the browser's login cookie", ErrBadRequest))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/callback", MaxAge: -1})
	var f browserFlow
	if err := s.takeFlow(ctx, state, "browser", &f); err != nil {
		if errors.Is(err, ErrBadRequest) {
			// A replayed or forged state sent with a matching cookie (any client can set one).
			_ = s.refuse(ctx, identityClaims{}, c, "oidc", decision{}, err)
		}
		s.page(w, statusOf(err), "Sign-in refused", err.Error())
		return
	}
	if e := q.Get("error"); e != "" {
		err := fmt.Errorf("%w: the identity provider answered %s: %s", ErrDenied, providerText(e), providerText(q.Get("error_description")))
		_ = s.refuse(ctx, identityClaims{}, c, "oidc", decision{}, err)
		s.browserError(w, r, f.CLI, http.StatusForbidden, err)
		return
	}
	id, err := s.exchange(ctx, q.Get("code"), f)
	if err != nil {
		if errors.Is(err, ErrBadRequest) || errors.Is(err, ErrDenied) {
			_ = s.refuse(ctx, id, c, "oidc", decision{}, err)
		}
		s.browserError(w, r, f.CLI, statusOf(err), err)
		return
	}
	kind := risk.KindSignIn
	if f.StepUp {
		kind = risk.KindStepUp
		if !s.freshMFA(id) {
			err := fmt.Errorf("%w: a multi-factor sign-in was asked for, but the identity provider reported amr %v, acr %q, at %s",
				ErrDenied, id.AMR, id.ACR, id.AuthTime.UTC().Format(time.RFC3339))
			_ = s.refuse(ctx, id, c, "oidc", decision{}, err)
			s.browserError(w, r, f.CLI, http.StatusForbidden, err)
			return
		}
	}
	d, err := s.assess(ctx, id, c, kind)
	if err != nil {
		_ = s.refuse(ctx, id, c, "oidc", decision{}, err)
		s.browserError(w, r, f.CLI, http.StatusServiceUnavailable, err)
		return
	}
	p := pending{ID: id, Client: c, Method: "oidc", CLI: f.CLI, ReturnTo: f.ReturnTo}
	p.setDecision(d)
	switch d.outcome {
	case risk.Allow:
		s.finishBrowser(w, r, p)
	case risk.StepUp:
		s.browserStepUp(w, r, p, f)
	default:
		err := fmt.Errorf("%w: this sign-in looks too risky (%s); ask your security team, quoting the time %s",
			ErrDenied, d.assessment, s.d.Now().UTC().Format(time.RFC3339))
		_ = s.refuse(ctx, id, c, "oidc", d, err)
		s.browserError(w, r, f.CLI, http.StatusForbidden, err)
	}
}

// providerText bounds and escapes text that arrives with a callback: it is the provider's, or
// anyone's who sends a browser to /callback, and it goes into the ledger and onto the page.
// Control and bidirectional characters are shown escaped, never passed on (invariant 7).
func providerText(s string) string {
	const limit = 256
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return text.Escape(s)
}

// exchange redeems the provider's code with the flow's PKCE verifier and checks the ID token,
// its nonce included.
func (s *Service) exchange(ctx context.Context, code string, f browserFlow) (identityClaims, error) {
	if code == "" || len(code) > 4096 {
		return identityClaims{}, fmt.Errorf("%w: the callback has no authorization code", ErrBadRequest)
	}
	party, err := s.provider(ctx)
	if err != nil {
		return identityClaims{}, err
	}
	tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](context.WithValue(ctx, nonceKey{}, f.Nonce), code, party, rp.WithCodeVerifier(f.Verifier))
	if err != nil {
		return identityClaims{}, classify(err)
	}
	return s.claimsOf(tokens.IDTokenClaims)
}

// classify tells a refused token (the person or an attacker: 401/400) from a provider that
// could not be reached (502).
func classify(err error) error {
	var oe *oidc.Error
	switch {
	case errors.As(err, &oe):
		return fmt.Errorf("%w: the identity provider refused the exchange: %s %s", ErrBadRequest, oe.ErrorType, oe.Description)
	case errors.Is(err, oidc.ErrSignatureUnsupportedAlg), errors.Is(err, oidc.ErrSignatureInvalid), errors.Is(err, oidc.ErrSignatureMissing),
		errors.Is(err, oidc.ErrSignatureMultiple), errors.Is(err, oidc.ErrIssuerInvalid), errors.Is(err, oidc.ErrAudience),
		errors.Is(err, oidc.ErrExpired), errors.Is(err, oidc.ErrIatInFuture), errors.Is(err, oidc.ErrIatToOld), errors.Is(err, oidc.ErrNonceInvalid),
		errors.Is(err, oidc.ErrParse), errors.Is(err, oidc.ErrAtHash), errors.Is(err, oidc.ErrSubjectMissing), errors.Is(err, oidc.ErrIatMissing),
		errors.Is(err, oidc.ErrAzpMissing), errors.Is(err, oidc.ErrAzpInvalid), errors.Is(err, oidc.ErrAuthTimeToOld),
		errors.Is(err, oidc.ErrAcrInvalid), errors.Is(err, rp.ErrMissingIDToken):
		return fmt.Errorf("%w: the ID token was refused: %v", ErrDenied, err)
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
		return fmt.Errorf("%w: the identity provider refused the code: %s %s", ErrBadRequest, re.ErrorCode, re.ErrorDescription)
	}
	return fmt.Errorf("%w: %v", ErrProvider, err)
}

// finishBrowser ends an admitted browser sign-in: a one-time code for the CLI, or a session
// cookie for the browser.
func (s *Service) finishBrowser(w http.ResponseWriter, r *http.Request, p pending) {
	ctx := r.Context()
	if p.CLI != nil {
		code, err := s.putFlow(ctx, "code", codeFlowTTL, p)
		if err != nil {
			s.browserError(w, r, p.CLI, http.StatusServiceUnavailable, err)
			return
		}
		u, _ := url.Parse(p.CLI.RedirectURI)
		v := u.Query()
		v.Set("code", code)
		v.Set("state", p.CLI.State)
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	iss, err := s.open(ctx, p, nil)
	if err != nil {
		s.page(w, statusOf(err), "Sign-in refused", err.Error())
		return
	}
	s.signedIn(w, iss, p.ReturnTo)
}

// signedIn hands a browser its new session: the console's cookies (identity.SessionCookies), and
// a page that goes on to ret (or offers the console). Not a redirect: the cookies are
// SameSite=Strict, and a browser does not send them on a navigation that a redirect chain from
// the identity provider's site started; a page of this site that moves on by itself (meta
// refresh, no script) starts a same-site one.
func (s *Service) signedIn(w http.ResponseWriter, iss identity.Issued, ret string) {
	secure := strings.HasPrefix(s.cfg.ExternalURL, "https:")
	for _, c := range identity.SessionCookies(iss, secure, s.d.Now()) {
		http.SetCookie(w, c)
	}
	msg := fmt.Sprintf("Signed in to Rampart as %s (session %s, until %s).", iss.Session.Subject, iss.Session.ID, iss.Session.ExpiresAt.UTC().Format(time.RFC3339))
	if ret == "" {
		s.render(w, http.StatusOK, map[string]string{"Title": "Signed in", "Message": msg, "Link": "/", "LinkText": "Open the Rampart console"})
		return
	}
	s.render(w, http.StatusOK, map[string]string{"Title": "Signed in", "Message": msg, "Link": ret, "LinkText": "Continue", "Refresh": "0;url=" + ret})
}

// stepUpMethod decides how to ask this person for a second factor.
func (s *Service) stepUpMethod(ctx context.Context, subject string) (string, error) {
	if s.cfg.StepUp == StepUpIdP {
		return StepUpIdP, nil
	}
	f, err := s.d.Store.MFAFactor(ctx, subject)
	switch {
	case err == nil && !f.ConfirmedAt.IsZero():
		return StepUpTOTP, nil
	case err != nil && !errors.Is(err, identity.ErrNoFactor):
		return "", err
	case s.cfg.StepUp == StepUpTOTP:
		return "", fmt.Errorf("%w: this sign-in needs a second factor and %s has none enrolled with Rampart; sign in from a usual place and run `rampart mfa enrol`, or ask an administrator", ErrDenied, subject)
	}
	return StepUpIdP, nil
}

// browserStepUp asks for a second factor: back to the provider, or Rampart's TOTP form.
func (s *Service) browserStepUp(w http.ResponseWriter, r *http.Request, p pending, f browserFlow) {
	ctx := r.Context()
	d := p.decision()
	method, err := s.stepUpMethod(ctx, p.ID.Subject)
	if err != nil {
		_ = s.refuse(ctx, p.ID, p.Client, "oidc", d, err)
		s.browserError(w, r, p.CLI, statusOf(err), err)
		return
	}
	ev := s.authEvent("signin.step_up_required", p.ID, p.Client, "oidc", d, false,
		fmt.Sprintf("sign-in of %s needs a second factor (%s): %s", p.ID.Subject, method, d.assessment))
	if err := s.d.Record(ctx, ev); err != nil {
		s.browserError(w, r, p.CLI, http.StatusServiceUnavailable, fmt.Errorf("cannot record the sign-in: %w", err))
		return
	}
	if method == StepUpIdP {
		s.redirectToProvider(w, r, browserFlow{StepUp: true, ReturnTo: f.ReturnTo, CLI: f.CLI})
		return
	}
	h, err := s.putFlow(ctx, "mfa", mfaFlowTTL, p)
	if err != nil {
		s.browserError(w, r, p.CLI, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = mfaForm.Execute(w, map[string]string{"Flow": h, "Subject": p.ID.Subject, "Why": d.assessment.String()})
}

// LoginMFA takes the TOTP form: POST /login/mfa (flow, otp). Cross-site posts are refused.
func (s *Service) LoginMFA(w http.ResponseWriter, r *http.Request) {
	if err := crossOrigin.Check(r); err != nil {
		s.page(w, http.StatusForbidden, "Sign-in refused", "This form can only be sent from Rampart's own page.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		s.page(w, http.StatusBadRequest, "Sign-in refused", "The form could not be read.")
		return
	}
	var p pending
	if err := s.takeFlow(r.Context(), r.PostForm.Get("flow"), "mfa", &p); err != nil {
		s.page(w, statusOf(err), "Sign-in refused", err.Error())
		return
	}
	f, err := s.checkTOTP(r.Context(), p.ID.Subject, r.PostForm.Get("otp"))
	if err != nil {
		_ = s.refuse(r.Context(), p.ID, s.clientOf(r), "totp", p.decision(), err)
		s.browserError(w, r, p.CLI, statusOf(err), fmt.Errorf("%w (start the sign-in again)", err))
		return
	}
	p.ID.MFA, p.ID.AMR, p.ID.AuthTime = true, append(p.ID.AMR, "otp"), s.d.Now()
	p.TOTP, p.TOTPTrusted = true, f.Trusted(s.d.Now())
	p.Decision.Outcome, p.Decision.Reason = risk.Allow, "Rampart TOTP factor"
	s.finishBrowser(w, r, p)
}

// checkTOTP verifies a code of the person's confirmed factor, and returns the factor; each code
// works once.
func (s *Service) checkTOTP(ctx context.Context, subject, code string) (identity.MFAFactor, error) {
	f, err := s.d.Store.MFAFactor(ctx, subject)
	if errors.Is(err, identity.ErrNoFactor) || (err == nil && f.ConfirmedAt.IsZero()) {
		return f, fmt.Errorf("%w: %s has no confirmed second factor", ErrDenied, subject)
	} else if err != nil {
		return f, err
	}
	secret, err := s.d.Sealer.Open(subject, f.SecretEnc)
	if err != nil {
		return f, err
	}
	key, err := identity.DecodeTOTPSecret(secret)
	if err != nil {
		return f, err
	}
	// Every attempt is counted before the code is looked at, so racing guesses cannot pass the
	// limit together; a right code forgets the count (invariant 8).
	now := s.d.Now()
	n, ends, err := s.d.Store.AttemptMFA(ctx, subject, now, identity.MFAAttemptWindow)
	if err != nil {
		return f, err
	}
	if n > identity.MaxMFAAttempts {
		return f, fmt.Errorf("%w: %w: %d one-time codes of %s were tried in %s; no code is accepted until %s (if these were not yours, your session or password may be stolen: tell your security team)",
			ErrDenied, ErrTooManyAttempts, n-1, subject, identity.MFAAttemptWindow, ends.UTC().Format(time.RFC3339))
	}
	step, ok := identity.MatchTOTP(key, code, now)
	if !ok {
		return f, fmt.Errorf("%w: the one-time code is wrong or too old (%d of %d attempts in %s used)", ErrDenied, n, identity.MaxMFAAttempts, identity.MFAAttemptWindow)
	}
	if err := s.d.Store.ClearMFAAttempts(ctx, subject); err != nil {
		return f, err
	}
	used, err := s.d.Store.UseMFAStep(ctx, subject, step)
	if err != nil {
		return f, err
	}
	if !used {
		return f, fmt.Errorf("%w: this one-time code was already used; wait for the next one", ErrDenied)
	}
	return f, nil
}

// browserError reports a failure: to the CLI's loopback listener when the sign-in came from
// the CLI (so it stops waiting and shows the reason), else as a page.
func (s *Service) browserError(w http.ResponseWriter, r *http.Request, cli *cliParams, status int, err error) {
	if cli != nil {
		u, _ := url.Parse(cli.RedirectURI)
		v := u.Query()
		v.Set("error", oauthCode(err))
		v.Set("error_description", err.Error())
		v.Set("state", cli.State)
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	s.page(w, status, "Sign-in refused", err.Error())
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooManyAttempts):
		return http.StatusTooManyRequests
	case errors.Is(err, ErrDenied), errors.Is(err, identity.ErrUnauthenticated):
		return http.StatusForbidden
	case errors.Is(err, ErrProvider):
		return http.StatusBadGateway
	}
	return http.StatusServiceUnavailable
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}<title>Rampart: {{.Title}}</title></head>
<body><main><h1>{{.Title}}</h1><p>{{.Message}}</p>{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}</main></body></html>
`))

var mfaForm = template.Must(template.New("mfa").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Rampart: second factor</title></head>
<body><h1>Second factor needed</h1>
<p>This sign-in of {{.Subject}} needs a code from your authenticator app ({{.Why}}).</p>
<form method="post" action="/login/mfa">
<input type="hidden" name="flow" value="{{.Flow}}">
<label>One-time code <input name="otp" inputmode="numeric" autocomplete="one-time-code" autofocus></label>
<button type="submit">Continue</button>
</form></body></html>
`))

func (s *Service) page(w http.ResponseWriter, status int, title, msg string) {
	s.render(w, status, map[string]string{"Title": title, "Message": msg})
}

// render writes a sign-in page: no script, no framing, nothing remembered.
func (s *Service) render(w http.ResponseWriter, status int, v map[string]string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, v)
}
