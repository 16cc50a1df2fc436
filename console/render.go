package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/text"
)

// page is what every template gets.
type page struct {
	Title string
	// Nav is the navigation entry to mark as current.
	Nav  string
	Me   api.Whoami
	CSRF string
	// Notice is a fixed sentence chosen by the page after an action (never text from the URL).
	Notice string
	Error  string
	// StepUp, if set, is a link that asks for a fresh multi-factor sign-in and comes back.
	StepUp string
	Data   any
}

// notices are the sentences a page may show after an action (?done=…).
var notices = map[string]string{
	"created":   "Your request was filed. Approvers have been notified; this page updates by itself.",
	"granted":   "Access granted.",
	"approved":  "Your approval was recorded.",
	"denied":    "Your denial was recorded.",
	"cancelled": "The request was cancelled.",
	"renewal":   "Renewal requested.",
	"revoked":   "The grant was revoked.",
	"done":      "Done.",
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"left": func(t time.Time) string {
		d := time.Until(t)
		if d <= 0 {
			return "ended"
		}
		return human(d) + " left"
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return human(time.Since(t)) + " ago"
	},
	"join": func(s []string) string {
		if len(s) == 0 {
			return "—"
		}
		return strings.Join(s, ", ")
	},
	"contains": func(s []string, x string) bool {
		for _, v := range s {
			if v == x {
				return true
			}
		}
		return false
	},
	"sub": func(a, b int) int { return a - b },
	// esc shows control, bidirectional and invisible characters escaped, never obeyed (invariant
	// 7), as `rampart audit tail` does: ledger entries from before the text rule, or by a
	// compromised writer, may hold them.
	"esc": text.Escape,
}

// human writes a duration the way people read it: "2 h 5 min", "40 s".
func human(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// parsePages parses each page template together with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[strings.TrimSuffix(base, ".html")] = t
	}
	return out, nil
}

// render writes a page.
func (c *Console) render(v *view, status int, name string, p page) {
	if v != nil {
		p.Me, p.CSRF = v.me, v.csrf
		if p.Notice == "" {
			p.Notice = notices[v.r.URL.Query().Get("done")]
		}
	}
	t := c.pages[name]
	var buf bytes.Buffer
	if err := t.Execute(&buf, p); err != nil {
		c.cfg.Logger.Error("console: render", "page", name, "err", err)
		http.Error(v.w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	v.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	v.w.WriteHeader(status)
	_, _ = v.w.Write(buf.Bytes())
}

// problem renders a page that explains why nothing more can be shown.
func (c *Console) problem(v *view, status int, title, msg string) {
	c.render(v, status, "problem", page{Title: title, Error: msg})
}

// fail renders an API error for people: its status, its message, and the way forward.
func (c *Console) fail(v *view, err error) {
	var se *api.ServerError
	if errors.As(err, &se) {
		p := page{Title: titleFor(se.Status), Error: se.Error()}
		if se.Code == api.CodeStepUpRequired {
			p.Title, p.StepUp = "A fresh second factor is needed", stepUpLink(v.r)
		}
		c.render(v, se.Status, "problem", p)
		return
	}
	c.problem(v, http.StatusServiceUnavailable, "Rampart cannot do this right now", err.Error())
}

func titleFor(status int) string {
	switch status {
	case http.StatusNotFound:
		return "Not found"
	case http.StatusForbidden:
		return "Not allowed"
	case http.StatusConflict:
		return "Already changed"
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return "Please check what you entered"
	case http.StatusTooManyRequests:
		return "Too many attempts"
	}
	return "Rampart cannot do this right now"
}

// stepUpLink asks the sign-in for a fresh multi-factor authentication, coming back to the page
// the action was taken from (a POST's own path without its verb).
func stepUpLink(r *http.Request) string {
	back := r.URL.Path
	if r.Method == http.MethodPost {
		back = path.Dir(back)
	}
	return "/login?step_up=1&return_to=" + url.QueryEscape(back)
}

// seeOther ends an action with a redirect to a page that says what happened.
func seeOther(v *view, to, done string) error {
	http.Redirect(v.w, v.r, to+"?done="+url.QueryEscape(done), http.StatusSeeOther)
	return nil
}
