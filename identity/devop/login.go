package devop

import (
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The login and device pages: server-rendered HTML, no JavaScript. A login form posts back the
// opaque auth request ID that the authorize endpoint issued (so a page elsewhere cannot make one
// up), and the POST handlers refuse cross-origin browser requests (http.CrossOriginProtection).

// maxFormBytes bounds what a login or device form post may send.
const maxFormBytes = 64 << 10

// page is what the template shows.
type page struct {
	Title      string
	Error      string // why the last attempt failed
	Message    string
	Form       bool
	Action     string
	ID         string // auth request ID, for the login form
	Device     bool   // the device form, which asks for the user code too
	UserCode   string
	ClientID   string
	Username   string
	RequireMFA bool
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Rampart development identity provider</title>
<style>
body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem;color:#111}
label{display:block;margin:.8rem 0}
input{display:block;width:100%;padding:.4rem;margin-top:.2rem;box-sizing:border-box}
button{margin:1rem .5rem 0 0;padding:.4rem 1rem}
.error{color:#a00;font-weight:bold}
.note{color:#555;font-size:.9rem}
</style>
</head>
<body>
<main>
<h1>{{.Title}}</h1>
<p class="note">Rampart development identity provider: for development and tests only.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Message}}<p>{{.Message}}</p>{{end}}
{{if .Form}}
{{if .ClientID}}<p>The application <strong>{{.ClientID}}</strong> asks you to sign in.</p>{{end}}
{{if .RequireMFA}}<p><strong>This application requires a one-time code.</strong> Enter the code from your authenticator app as well as your password.</p>{{end}}
<form method="post" action="{{.Action}}">
{{if .ID}}<input type="hidden" name="id" value="{{.ID}}">{{end}}
{{if .Device}}<label>Code shown on your device <input name="user_code" value="{{.UserCode}}" autocomplete="off" autocapitalize="characters" required></label>{{end}}
<label>Username <input name="username" value="{{.Username}}" autocomplete="username" required></label>
<label>Password <input type="password" name="password" autocomplete="current-password" required></label>
<label>One-time code{{if not .RequireMFA}} (optional){{end}} <input name="otp" inputmode="numeric" autocomplete="one-time-code"{{if .RequireMFA}} required{{end}}></label>
<button type="submit" name="action" value="approve">Sign in</button>
{{if .Device}}<button type="submit" name="action" value="deny" formnovalidate>Deny</button>{{end}}
</form>
{{end}}
</main>
</body>
</html>
`))

func (p *Provider) render(w http.ResponseWriter, status int, pg page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	if err := pageTemplate.Execute(w, pg); err != nil {
		p.log.Error("devop: render page", "error", err)
	}
}

func (p *Provider) renderMessage(w http.ResponseWriter, status int, title, message string) {
	p.render(w, status, page{Title: title, Message: message})
}

func (p *Provider) loginForm(ar *authRequest, username, problem string) page {
	return page{
		Title:      "Sign in",
		Error:      problem,
		Form:       true,
		Action:     p.path + "/login",
		ID:         ar.id,
		ClientID:   ar.clientID,
		Username:   username,
		RequireMFA: ar.requireMFA,
	}
}

// loginPage shows the login form for an auth request, or skips it when the browser's session at
// the provider satisfies the request.
func (p *Provider) loginPage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	ar, err := p.store.pendingLogin(id)
	if err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in request not found", sentence(err))
		return
	}
	now := p.now()
	ss, hasSession := p.sessionFromRequest(r)
	if hasSession && ar.sessionSatisfies(ss, now) {
		if err := p.store.completeLogin(id, ss.subject, ss.authTime, ss.amr); err == nil {
			p.log.Info("devop: login from session", "user", ss.subject, "client_id", ar.clientID, "amr", ss.amr)
			http.Redirect(w, r, p.store.callbackURL(id), http.StatusFound)
			return
		}
	}
	if slices.Contains(ar.prompt, oidc.PromptNone) {
		op.AuthRequestError(w, r, ar, oidc.ErrLoginRequired().WithDescription("prompt=none, and no session at the provider satisfies the request"), p.op)
		return
	}
	username := ar.loginHint
	if ar.hintSubject != "" {
		username = ar.hintSubject
	} else if username == "" && hasSession {
		username = ss.subject
	}
	p.render(w, http.StatusOK, p.loginForm(ar, username, ""))
}

// sessionSatisfies reports whether the session may stand in for a login for this request:
// recent enough for max_age (prompt=login is max_age=0, which no session satisfies), strong
// enough for acr_values, and the same user as an id_token_hint.
func (ar *authRequest) sessionSatisfies(ss session, now time.Time) bool {
	if ar.maxAge != nil && (*ar.maxAge == 0 || now.Sub(ss.authTime) > time.Duration(*ar.maxAge)*time.Second) {
		return false
	}
	if ar.requireMFA && acrFor(ss.amr) != acrMFA {
		return false
	}
	return ar.hintSubject == "" || ar.hintSubject == ss.subject
}

func (p *Provider) sessionFromRequest(r *http.Request) (session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	return p.store.session(c.Value)
}

// loginSubmit checks the login form. Success records the login on the auth request, starts a
// session at the provider and sends the browser on to the client; failure shows the form again.
func (p *Provider) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
		return
	}
	id := r.PostForm.Get("id")
	ar, err := p.store.pendingLogin(id)
	if err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in request not found", sentence(err))
		return
	}
	username := r.PostForm.Get("username")
	amr, problem := p.store.authenticate(username, r.PostForm.Get("password"), r.PostForm.Get("otp"), ar.requireMFA)
	if problem != "" {
		p.log.Info("devop: login refused", "user", username, "client_id", ar.clientID, "reason", problem)
		p.render(w, http.StatusUnprocessableEntity, p.loginForm(ar, username, problem))
		return
	}
	now := p.now()
	if err := p.store.completeLogin(id, username, now, amr); err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Sign-in request not found", sentence(err))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    p.store.newSession(username, now, amr),
		Path:     p.cookiePath(),
		HttpOnly: true,
		Secure:   p.secure,
		SameSite: http.SameSiteLaxMode,
	})
	p.log.Info("devop: login", "user", username, "client_id", ar.clientID, "amr", amr)
	http.Redirect(w, r, p.store.callbackURL(id), http.StatusSeeOther)
}

func (p *Provider) cookiePath() string {
	if p.path == "" {
		return "/"
	}
	return p.path
}

func (p *Provider) deviceForm(userCode, username, problem string) page {
	return page{
		Title:    "Sign in on a device",
		Error:    problem,
		Form:     true,
		Action:   p.path + "/device",
		Device:   true,
		UserCode: userCode,
		Username: username,
	}
}

// devicePage shows the device form, with the user code filled in when the verification URI
// carried one (verification_uri_complete).
func (p *Provider) devicePage(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("user_code")
	problem := ""
	if code != "" {
		if err := p.store.checkUserCode(code); err != nil {
			problem = sentence(err)
		}
	}
	p.render(w, http.StatusOK, p.deviceForm(code, "", problem))
}

// deviceSubmit approves a device after a login, or denies it (action=deny, no login needed).
func (p *Provider) deviceSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		p.renderMessage(w, http.StatusBadRequest, "Bad request", "The form could not be read: "+err.Error())
		return
	}
	code, username := r.PostForm.Get("user_code"), r.PostForm.Get("username")
	if code == "" {
		p.render(w, http.StatusUnprocessableEntity, p.deviceForm(code, username, "Enter the code shown on your device."))
		return
	}
	if err := p.store.checkUserCode(code); err != nil {
		p.render(w, http.StatusUnprocessableEntity, p.deviceForm(code, username, sentence(err)))
		return
	}
	if r.PostForm.Get("action") == "deny" {
		clientID, err := p.store.denyDevice(code)
		if err != nil {
			p.render(w, http.StatusUnprocessableEntity, p.deviceForm(code, username, sentence(err)))
			return
		}
		p.log.Info("devop: device denied", "client_id", clientID)
		p.renderMessage(w, http.StatusOK, "Request denied", "The device will not be signed in. You can close this page.")
		return
	}
	amr, problem := p.store.authenticate(username, r.PostForm.Get("password"), r.PostForm.Get("otp"), false)
	if problem != "" {
		p.log.Info("devop: device login refused", "user", username, "reason", problem)
		p.render(w, http.StatusUnprocessableEntity, p.deviceForm(code, username, problem))
		return
	}
	clientID, err := p.store.approveDevice(code, username, p.now(), amr)
	if err != nil {
		p.render(w, http.StatusUnprocessableEntity, p.deviceForm(code, username, sentence(err)))
		return
	}
	p.log.Info("devop: device login", "user", username, "client_id", clientID, "amr", amr)
	p.renderMessage(w, http.StatusOK, "Device signed in", "You are signed in as "+username+" on the device. You can close this page and return to it.")
}

// sentence turns an error message into a sentence for a page.
func sentence(err error) string {
	s := err.Error()
	if s != "" && s[0] >= 'a' && s[0] <= 'z' {
		s = string(s[0]-'a'+'A') + s[1:]
	}
	return s + "."
}
