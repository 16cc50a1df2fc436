package browsertest

import (
	"bytes"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// strictCSP is the policy of every test page, as strict as the console's.
const strictCSP = "default-src 'self'; script-src 'self'; frame-ancestors 'none'"

func page(title, body string) string {
	return `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
		`<meta name="viewport" content="width=device-width, initial-scale=1"><title>` + title +
		`</title><link rel="stylesheet" href="/app.css"><script src="/app.js" defer></script></head><body>` +
		body + `</body></html>`
}

// site serves the test pages, each with strictCSP. Styles and scripts are files of the site:
// an inline style attribute would itself be a CSP violation.
func site(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	posted := map[string]string{}
	mux := http.NewServeMux()
	serve := func(path, contentType, body string) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			_, _ = w.Write([]byte(body))
		})
	}
	serve("/app.css", "text/css", `body { font-family: sans-serif; color: #111; background: #fff; }
.faint { color: #c8c8c8; }`)
	serve("/app.js", "text/javascript", `document.addEventListener('DOMContentLoaded', () => {
  const b = document.getElementById('later');
  if (b) b.addEventListener('click', () => setTimeout(() => { document.getElementById('status').textContent = 'approved'; }, 100));
});`)
	serve("/tall", "text/html", page("Tall", "<main><h1>Tall</h1>"+strings.Repeat("<p>A line of a long page.</p>\n", 100)+"<p id=end>The end</p></main>"))
	serve("/throw.js", "text/javascript", `console.error('the console script failed', 42); throw new Error('boom from throw.js');`)
	serve("/broken", "text/html", `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Broken</title>
<script src="/throw.js"></script></head><body><main><h1>Broken</h1><img src="/missing.png" alt="missing"></main></body></html>`)
	serve("/inline", "text/html", page("Inline script", `<main><h1>Inline</h1><script>document.title = 'ran';</script></main>`))
	serve("/clean", "text/html", page("Clean", `<main><h1>Clean</h1><p>Nothing inline here.</p></main>`))
	serve("/inaccessible", "text/html", page("Inaccessible", `<main><h1>Inaccessible</h1>
<form action="/submit" method="post"><input id="unlabeled" name="q"></form>
<p class="faint" id="faint">This grey text is hard to read.</p></main>`))
	serve("/accessible", "text/html", page("Accessible", `<main><h1>Request access</h1>
<form action="/submit" method="post">
<label for="reason">Reason</label> <input id="reason" name="reason" value="old">
<label for="duration">Duration</label> <select id="duration" name="duration"><option value="1h">One hour</option><option value="8h">Eight hours</option></select>
<button type="submit">Request access</button>
</form>
<p id="status">pending</p> <button type="button" id="later">Approve later</button>
<button type="button">Twin</button> <button type="button">Twin</button>
</main>`))
	mux.HandleFunc("POST /submit", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posted["reason"], posted["duration"] = r.PostFormValue("reason"), r.PostFormValue("duration")
		mu.Unlock()
		http.Redirect(w, r, "/done", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /done", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, page("Done", `<main><h1>Done</h1><p id="posted">`+
			html.EscapeString(posted["reason"]+"|"+posted["duration"])+`</p></main>`))
	})
	// /signin sets a session cookie; /whoami shows the cookie this browser context sent.
	mux.HandleFunc("GET /signin", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: r.URL.Query().Get("as"), Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/whoami", http.StatusSeeOther)
	})
	// /attack is a page whose form posts to /whoami of the site given in ?target=.
	mux.HandleFunc("GET /attack", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, page("Attack", `<main><h1>Win a prize</h1><form method="post" action="`+
			html.EscapeString(r.URL.Query().Get("target"))+`/whoami"><button>Claim</button></form></main>`))
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		who := "nobody"
		if c, err := r.Cookie("session"); err == nil {
			who = c.Value
		}
		w.Header().Set("Content-Type", "text/html")
		_, _ = fmt.Fprint(w, page("Who", `<main><h1>Who</h1><p id="who">`+html.EscapeString(who)+`</p></main>`))
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// failure runs check with a testing.TB that records failures instead of failing t, and
// returns what check reported; it fails t if check did not fail. It proves a check can fail.
func failure(t *testing.T, check func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.failed {
		t.Fatal("the check passed; it should have failed")
	}
	return strings.Join(r.msgs, "\n")
}

type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) Helper() {}
func (r *recorder) fail(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, msg)
}
func (r *recorder) Errorf(format string, args ...any) { r.fail(fmt.Sprintf(format, args...)) }
func (r *recorder) Error(args ...any)                 { r.fail(fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.fail(fmt.Sprintf(format, args...))
	runtime.Goexit()
}
func (r *recorder) Fatal(args ...any) { r.fail(fmt.Sprint(args...)); runtime.Goexit() }

func TestStart(t *testing.T) {
	b := Start(t)
	t.Logf("Chromium started and answered in %v", b.StartTime)
	c := NewContext(t, b)
	srv := site(t)
	if status := Open(t, c, srv.URL+"/clean", "h1"); status != 200 {
		t.Fatalf("GET /clean: status %d", status)
	}
	if got := Text(t, c, "h1"); got != "Clean" {
		t.Fatalf("h1 = %q, want Clean", got)
	}
	if got, want := URL(t, c), srv.URL+"/clean"; got != want {
		t.Fatalf("URL = %q, want %q", got, want)
	}
	// An error page is a page: Open returns its status (a console test checks a refusal so).
	if status := Open(t, c, srv.URL+"/no-such-page", ""); status != http.StatusNotFound {
		t.Fatalf("GET /no-such-page: status %d, want 404", status)
	}
}

func TestCSPViolations(t *testing.T) {
	srv := site(t)
	b := Start(t)

	clean := NewContext(t, b)
	Open(t, clean, srv.URL+"/clean", "h1")
	Axe(t, clean) // axe is injected through DevTools: it must not count as page script
	NoCSPViolations(t, clean)

	inline := NewContext(t, b)
	Open(t, inline, srv.URL+"/inline", "h1")
	var audit, console bool
	for _, v := range CSPViolations(t, inline) {
		t.Logf("reported: %+v", v)
		switch v.Source {
		case "audits":
			audit = audit || v.Kind == "kInlineViolation" && strings.HasPrefix(v.Directive, "script-src")
		case "log":
			console = console || strings.Contains(v.Message, "inline script")
		}
	}
	if !audit || !console {
		t.Errorf("the inline script's violation: reported as a DevTools issue %v, as a console message %v; want both", audit, console)
	}
	// A *Context is a chromedp context: chromedp's own actions run on it.
	if title, err := chromedp.Run(inline, chromedp.Title()); err != nil || title != "Inline script" {
		t.Errorf("title %q (%v): the inline script ran, or the page did not load", title, err)
	}
	msg := failure(t, func(tb testing.TB) { NoCSPViolations(tb, inline) })
	if !strings.Contains(msg, "kInlineViolation") || !strings.Contains(msg, srv.URL+"/inline") {
		t.Errorf("NoCSPViolations' message does not say what and where:\n%s", msg)
	}
	t.Logf("NoCSPViolations reports:\n%s", msg)

	// The violations are the context's, not the browser's: the clean one still has none.
	NoCSPViolations(t, clean)
}

func TestAxe(t *testing.T) {
	srv := site(t)
	b := Start(t)
	c := NewContext(t, b)

	Open(t, c, srv.URL+"/accessible", "h1")
	NoSeriousA11y(t, c)

	Open(t, c, srv.URL+"/inaccessible", "h1")
	found := map[string]string{}
	for _, v := range Axe(t, c) {
		for _, n := range v.Nodes {
			found[v.ID+" "+n.Target] = v.Impact
		}
	}
	for _, want := range []string{"label #unlabeled", "color-contrast #faint"} {
		if impact := found[want]; impact != "serious" && impact != "critical" {
			t.Errorf("axe did not report %s as serious or critical (impact %q); it found %v", want, impact, found)
		}
	}
	msg := failure(t, func(tb testing.TB) { NoSeriousA11y(tb, c) })
	for _, want := range []string{"label", "color-contrast", "#unlabeled", "#faint", "dequeuniversity.com"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NoSeriousA11y's message lacks %q:\n%s", want, msg)
		}
	}
	t.Logf("NoSeriousA11y reports:\n%s", msg)
	NoCSPViolations(t, c)
}

func TestContextsAreIsolated(t *testing.T) {
	srv := site(t)
	b := Start(t)
	alice, bob, dave := NewContext(t, b), NewContext(t, b), NewContext(t, b)
	Open(t, alice, srv.URL+"/signin?as=alice", "#who")
	Open(t, bob, srv.URL+"/signin?as=bob", "#who")
	Open(t, dave, srv.URL+"/whoami", "#who")
	Open(t, alice, srv.URL+"/whoami", "#who")
	for c, want := range map[*Context]string{alice: "alice", bob: "bob", dave: "nobody"} {
		if got := Text(t, c, "#who"); got != want {
			t.Errorf("the context that signed in as %s is %q", want, got)
		}
	}
	cookies := Cookies(t, alice, srv.URL)
	if len(cookies) != 1 || cookies[0].Value != "alice" || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteStrict {
		t.Errorf("alice's cookies: %+v, want one HttpOnly SameSite=Strict session cookie", cookies)
	}
	if cookies := Cookies(t, dave, srv.URL); len(cookies) != 0 {
		t.Errorf("dave, who never signed in, holds cookies: %+v", cookies)
	}
}

func TestPageErrors(t *testing.T) {
	srv := site(t)
	b := Start(t)

	clean := NewContext(t, b)
	Open(t, clean, srv.URL+"/accessible", "h1")
	Click(t, clean, "Approve later")
	WaitText(t, clean, "#status", "approved")
	NoPageErrors(t, clean)

	broken := NewContext(t, b)
	Open(t, broken, srv.URL+"/broken", "h1")
	kinds := map[string]bool{}
	for _, e := range PageErrors(t, broken) {
		t.Logf("reported: %s", e)
		kinds[e.Kind] = true
	}
	for _, want := range []string{"exception", "console.error", "log network"} {
		if !kinds[want] {
			t.Errorf("no %s reported; got %v", want, kinds)
		}
	}
	msg := failure(t, func(tb testing.TB) { NoPageErrors(tb, broken) })
	for _, want := range []string{"boom from throw.js", srv.URL + "/throw.js:1", "the console script failed 42", "/missing.png"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NoPageErrors' message lacks %q:\n%s", want, msg)
		}
	}
	t.Logf("NoPageErrors reports:\n%s", msg)
}

func TestForms(t *testing.T) {
	srv := site(t)
	b := Start(t)
	c := NewContext(t, b)
	Open(t, c, srv.URL+"/accessible", "form")
	Fill(t, c, "Reason", "debug the eval job")
	Fill(t, c, "Duration", "Eight hours")
	if status := Submit(t, c, "Request access"); status != 200 {
		t.Fatalf("submit: the page after the redirect has status %d", status)
	}
	if got, want := Text(t, c, "#posted"), "debug the eval job|8h"; got != want {
		t.Fatalf("posted %q, want %q", got, want)
	}

	Open(t, c, srv.URL+"/accessible", "form")
	Fill(t, c, "#reason", "by selector")
	if got, err := chromedp.Run(c, chromedp.Value(chromedp.CSS("#reason"))); err != nil || got != "by selector" {
		t.Fatalf("#reason holds %q (%v), want the text filled in", got, err)
	}
	Click(t, c, "Approve later")
	WaitText(t, c, "#status", "approved")

	c.Timeout = 2 * time.Second // the failures below wait for the limit
	msg := failure(t, func(tb testing.TB) { Click(tb, c, "Twin") })
	if !strings.Contains(msg, `2 visible elements`) {
		t.Errorf("an ambiguous name: %s", msg)
	}
	msg = failure(t, func(tb testing.TB) { Fill(tb, c, "No such field", "x") })
	if !strings.Contains(msg, `no visible field labelled "No such field"`) {
		t.Errorf("a missing field: %s", msg)
	}
	msg = failure(t, func(tb testing.TB) { WaitText(tb, c, "#status", "denied") })
	if !strings.Contains(msg, `its text was "approved"`) {
		t.Errorf("a text that never comes: %s", msg)
	}
}

func TestScreenshot(t *testing.T) {
	srv := site(t)
	b := Start(t)
	c := NewContext(t, b)
	Open(t, c, srv.URL+"/tall", "h1")
	path := filepath.Join(t.TempDir(), "shots", "tall.png")
	Screenshot(t, c, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the screenshot is not a PNG: %v", err)
	}
	// The whole page, beyond the window: 100 paragraphs are much taller than it.
	if cfg.Width != ViewportWidth || cfg.Height < 2*ViewportHeight {
		t.Fatalf("the screenshot is %dx%d, want %d wide and the page's full height (over %d)", cfg.Width, cfg.Height, ViewportWidth, 2*ViewportHeight)
	}

	Phone(t, c)
	Open(t, c, srv.URL+"/accessible", "h1")
	Screenshot(t, c, path)
	if data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if cfg, err = png.DecodeConfig(bytes.NewReader(data)); err != nil || cfg.Width != 390 {
		t.Fatalf("on a phone, the screenshot is %d wide (%v), want 390 (a page without a viewport meta tag is laid out 980 wide)", cfg.Width, err)
	}
	Laptop(t, c)
	Open(t, c, srv.URL+"/accessible", "h1")
	if w, err := chromedp.Run(c, chromedp.Evaluate[int](`window.innerWidth`)); err != nil || w != ViewportWidth {
		t.Fatalf("back on a laptop, the window is %d wide (%v), want %d", w, err, ViewportWidth)
	}
}

func TestCrossSite(t *testing.T) {
	srv, other := site(t), site(t) // two origins of one site: 127.0.0.1, two ports
	b := Start(t)
	alice := NewContext(t, b)
	Open(t, alice, srv.URL+"/signin?as=alice", "#who")

	// From another origin of the same site, the browser sends alice's SameSite=Strict cookie:
	// only a CSRF token can refuse this post.
	Open(t, alice, other.URL+"/attack?target="+srv.URL, "form")
	Submit(t, alice, "Claim")
	if got := Text(t, alice, "#who"); got != "alice" {
		t.Errorf("a post from another origin of the same site carried the session %q, want alice's", got)
	}

	// From another site, it does not.
	attacker := CrossSite(t, other.URL)
	if !strings.HasPrefix(attacker, "http://localhost:") || CrossSite(t, attacker) != other.URL {
		t.Fatalf("CrossSite(%s) = %s", other.URL, attacker)
	}
	Open(t, alice, attacker+"/attack?target="+srv.URL, "form")
	Submit(t, alice, "Claim")
	if got := Text(t, alice, "#who"); got != "nobody" {
		t.Errorf("a post from another site carried the session %q; SameSite=Strict should have kept it", got)
	}
}
