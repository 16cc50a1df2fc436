package console_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/net/html"

	"rampart.dev/rampart/identity/devop"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/server"
)

// clock is the server's injected clock.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// env is a real `rampart dev`-style server (SQLite, the demo policy, the development OpenID
// provider) serving the console on a loopback port.
type env struct {
	t    *testing.T
	base string
	in   *server.Instance
	clk  *clock
}

func start(t *testing.T) *env { return startWith(t, demo.Policy()) }

// startWith starts the server with the policy in pol.
func startWith(t *testing.T, pol fs.FS) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clk := &clock{}
	cfg := server.Config{Listen: ln.Addr().String(), DataDir: dir, Dev: true, PolicyFS: pol, Ledger: server.LedgerConfig{Origin: "rampart-console-test"},
		OIDC: server.OIDCConfig{DevProvider: true}}
	cfg.Store.Path = filepath.Join(dir, "rampart.db")
	ctx, cancel := context.WithCancel(context.Background())
	in, err := server.Start(ctx, cfg, server.Options{Now: clk.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = in.Close()
	})
	return &env{t: t, base: "http://" + ln.Addr().String(), in: in, clk: clk}
}

// browser is a cookie-keeping HTTP client that does not follow redirects by itself.
type browser struct {
	e  *env
	c  *http.Client
	ua string
}

func (e *env) browser(ua string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, ua: ua, c: &http.Client{Jar: jar, Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values, hdr map[string]string) reply {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = b.e.base + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("User-Agent", b.ua)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.e.base)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (b *browser) get(path string) reply { return b.do(http.MethodGet, path, nil, nil) }

// follow GETs path and follows redirects (and the sign-in's meta refresh) to the end.
func (b *browser) follow(path string) reply {
	b.e.t.Helper()
	r := b.get(path)
	for i := 0; i < 10; i++ {
		if loc := r.header.Get("Location"); r.status >= 300 && r.status < 400 && loc != "" {
			r = b.get(loc)
			continue
		}
		if m := metaRefresh.FindStringSubmatch(r.body); m != nil {
			r = b.get(m[1])
			continue
		}
		return r
	}
	b.e.t.Fatalf("too many redirects from %s", path)
	return r
}

var (
	metaRefresh = regexp.MustCompile(`<meta http-equiv="refresh" content="0;url=([^"]+)">`)
	hiddenID    = regexp.MustCompile(`name="id" value="([^"]+)"`)
	csrfField   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn signs user in through the real browser flow: the console sends the browser to /login,
// the development provider's form, the callback, and back.
func (e *env) signIn(user string) *browser {
	e.t.Helper()
	b := e.browser("console-test/" + user)
	r := b.providerForm(b.follow("/"), user, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, "<h1>Home</h1>") || !strings.Contains(r.body, ">"+user+"<") {
		e.t.Fatalf("%s did not land on the console's home page: %d\n%s", user, r.status, r.body)
	}
	return b
}

// providerForm fills the development provider's sign-in form shown in r (with a one-time code
// when otp is set) and follows the sign-in back into the console.
func (b *browser) providerForm(r reply, user, otp string) reply {
	b.e.t.Helper()
	m := hiddenID.FindStringSubmatch(r.body)
	if m == nil {
		b.e.t.Fatalf("no sign-in form for %s: %d %s", user, r.status, r.body)
	}
	r = b.do(http.MethodPost, "/dev-idp/login", url.Values{"id": {m[1]}, "username": {user}, "password": {user}, "otp": {otp}, "action": {"approve"}}, nil)
	for i := 0; i < 10 && r.status >= 300 && r.status < 400; i++ {
		r = b.get(r.header.Get("Location"))
	}
	if m := metaRefresh.FindStringSubmatch(r.body); m != nil {
		r = b.follow(m[1])
	}
	return r
}

// csrf reads the CSRF token from the home page.
func (b *browser) csrf() string {
	b.e.t.Helper()
	m := csrfField.FindStringSubmatch(b.get("/").body)
	if m == nil {
		b.e.t.Fatal("no CSRF token on the home page")
	}
	return m[1]
}

func (b *browser) post(path string, form url.Values) reply {
	b.e.t.Helper()
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf())
	}
	return b.do(http.MethodPost, path, form, nil)
}

// ledgerSize is how many entries the ledger holds.
func (e *env) ledgerSize() int64 {
	e.t.Helper()
	n, err := e.in.Store.LedgerSize(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

var requestPath = regexp.MustCompile(`^/requests/(req_[a-z0-9]+)\?done=`)

// file files a request for alice through the console and returns its id.
func (b *browser) file(role, reason string) string {
	b.e.t.Helper()
	r := b.post("/request", url.Values{"role": {role}, "reason": {reason}, "duration": {"1h"}})
	m := requestPath.FindStringSubmatch(r.header.Get("Location"))
	if r.status != http.StatusSeeOther || m == nil {
		b.e.t.Fatalf("filing %s: %d %s\n%s", role, r.status, r.header.Get("Location"), r.body)
	}
	return m[1]
}

// TestTwoApproversInTheConsole: alice asks, bob and dave approve in their own sessions, and
// alice's page shows the grant, which the decision engine honours.
func TestTwoApproversInTheConsole(t *testing.T) {
	e := start(t)
	alice, bob, dave := e.signIn("alice"), e.signIn("bob"), e.signIn("dave")
	id := alice.file("weights-reader-frontier-7", "eval run 42")
	for _, who := range []*browser{bob, dave} {
		inbox := who.get("/reviews")
		if !strings.Contains(inbox.body, "/requests/"+id) {
			t.Fatalf("%s's inbox does not list %s:\n%s", who.ua, id, inbox.body)
		}
		if r := who.post("/requests/"+id+"/approve", url.Values{"comment": {"ok"}}); r.status != http.StatusSeeOther {
			t.Fatalf("%s approving: %d\n%s", who.ua, r.status, r.body)
		}
		// Answered: no longer in the inbox.
		if strings.Contains(who.get("/reviews").body, "/requests/"+id) {
			t.Fatalf("%s's inbox still lists %s after approving it", who.ua, id)
		}
	}
	page := alice.get("/requests/" + id)
	if !strings.Contains(page.body, `id="grant"`) || !strings.Contains(page.body, "state active") {
		t.Fatalf("alice's page shows no active grant:\n%s", page.body)
	}
	if !strings.Contains(alice.get("/").body, "weights-reader-frontier-7") {
		t.Fatal("alice's home page does not list the grant")
	}
	v, err := e.in.Access.Get(context.Background(), id, "alice")
	if err != nil || v.Request.State != access.Approved || len(v.Reviews) != 2 {
		t.Fatalf("the request is %+v, %v", v, err)
	}
	// Each review spoke for its approver's own sign-in session (invariant 8).
	for _, rv := range v.Reviews {
		if rv.SessionID == "" {
			t.Fatalf("review by %s carries no session", rv.Approver)
		}
	}
}

// TestChangesNeedTheSessionsToken: a form without the CSRF token, with another session's token,
// or sent from another site changes nothing.
func TestChangesNeedTheSessionsToken(t *testing.T) {
	e := start(t)
	alice, mallory := e.signIn("alice"), e.signIn("bob")
	before := e.ledgerSize()
	form := func() url.Values {
		return url.Values{"role": {"weights-reader-frontier-7"}, "reason": {"forged"}}
	}
	cases := []struct {
		name string
		csrf string
		hdr  map[string]string
		says string
	}{
		{"no token", "", nil, "security token"},
		{"another session's token", mallory.csrf(), nil, "security token"},
		{"a made-up token", "AAAA", nil, "security token"},
		{"from another site", alice.csrf(), map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, "another site"},
		{"from another origin without fetch metadata", alice.csrf(), map[string]string{"Origin": "https://evil.example"}, "another site"},
	}
	for _, c := range cases {
		f := form()
		if c.csrf != "" {
			f.Set("csrf", c.csrf)
		} else {
			f.Set("csrf", "")
		}
		r := alice.do(http.MethodPost, "/request", f, c.hdr)
		if r.status != http.StatusForbidden || !strings.Contains(r.body, c.says) {
			t.Errorf("%s: got %d, want 403 saying %q:\n%s", c.name, r.status, c.says, r.body)
		}
	}
	if after := e.ledgerSize(); after != before {
		t.Fatalf("refused forms wrote %d ledger entries", after-before)
	}
	rs, err := e.in.Access.List(context.Background(), "alice", access.ScopeMine, access.RequestFilter{})
	if err != nil || len(rs) != 0 {
		t.Fatalf("requests were filed: %v %v", rs, err)
	}
}

// TestGetNeverChangesState: every console path, asked with GET (and with the parameters a form
// would send), leaves the ledger as it was.
func TestGetNeverChangesState(t *testing.T) {
	e := start(t)
	alice, bob := e.signIn("alice"), e.signIn("bob")
	id := alice.file("weights-reader-frontier-7", "eval")
	before := e.ledgerSize()
	q := "?csrf=" + url.QueryEscape(bob.csrf()) + "&comment=x&reason=x&role=weights-reader-frontier-7"
	for _, p := range []string{"/request", "/requests/" + id + "/approve", "/requests/" + id + "/deny", "/requests/" + id + "/cancel",
		"/grants/grt_x/revoke", "/grants/grt_x/renew", "/admin/users/alice/disable", "/logout", "/requests/" + id, "/requests/" + id + "/state"} {
		for _, who := range []*browser{alice, bob} {
			who.get(p + q)
		}
	}
	if after := e.ledgerSize(); after != before {
		t.Fatalf("GET requests wrote %d ledger entries", after-before)
	}
	v, _ := e.in.Access.Get(context.Background(), id, "alice")
	if v.Request.State != access.Pending || len(v.Reviews) != 0 {
		t.Fatalf("the request changed: %+v", v)
	}
}

// TestCookieIsNotAnAPICredential: the console's cookies open no API route, not even a GET.
func TestCookieIsNotAnAPICredential(t *testing.T) {
	e := start(t)
	alice := e.signIn("alice")
	for _, p := range []string{"/v1/whoami", "/v1/weights", "/v1/grants", "/v1/audit/entries", "/v1/requests"} {
		if r := alice.get(p); r.status != http.StatusUnauthorized {
			t.Errorf("GET %s with the console's cookies: %d, want 401", p, r.status)
		}
	}
}

// inlineCode lists what a strict CSP would refuse in a page: a script element without src, a
// style element, an event-handler or style attribute, a javascript: URL.
func inlineCode(page string) []string {
	var out []string
	z := html.NewTokenizer(strings.NewReader(page))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return out
		case html.StartTagToken, html.SelfClosingTagToken:
			t := z.Token()
			hasSrc := false
			for _, a := range t.Attr {
				k := strings.ToLower(a.Key)
				switch {
				case k == "src":
					hasSrc = true
				case strings.HasPrefix(k, "on"), k == "style":
					out = append(out, t.String())
				case (k == "href" || k == "action") && strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:"):
					out = append(out, t.String())
				}
			}
			if (t.Data == "script" && !hasSrc) || t.Data == "style" {
				out = append(out, t.String())
			}
		}
	}
}

// TestPagesAreLockedDown: every page carries the headers, and no inline script or style (which
// the CSP would refuse); text a requester wrote is escaped.
func TestPagesAreLockedDown(t *testing.T) {
	e := start(t)
	alice, erin := e.signIn("alice"), e.signIn("erin")
	id := alice.file("weights-reader-frontier-7", `<script>alert("x")</script><img src=x onerror=alert(1)>`)
	for _, p := range []string{"/", "/request", "/request?q=eval", "/request?role=weights-reader-frontier-7", "/request?resource=datasets/eval-suite-v3",
		"/requests", "/requests/" + id, "/reviews", "/grants", "/audit", "/admin", "/audit?event=request.*"} {
		r := erin.get(p)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p, r.status, r.body)
			continue
		}
		csp := r.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", p, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("GET %s: Content-Security-Policy allows inline code: %q", p, csp)
		}
		if r.header.Get("X-Frame-Options") != "DENY" || r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", p, r.header)
		}
		if bad := inlineCode(r.body); len(bad) > 0 {
			t.Errorf("GET %s: inline code a strict CSP refuses: %v", p, bad)
		}
		if strings.Contains(r.body, `<script>alert`) || strings.Contains(r.body, `<img src=x`) {
			t.Errorf("GET %s: the reason was not escaped:\n%s", p, r.body)
		}
	}
}

// TestSuggestionOutcomes: the catalogue page shows the suggested role, and for a request it
// cannot answer "No role fits" with the words not understood and the nearest resources, never a
// role.
func TestSuggestionOutcomes(t *testing.T) {
	e := start(t)
	alice := e.signIn("alice")
	r := alice.get("/request?q=" + url.QueryEscape("read the frontier-7 weights"))
	if r.status != http.StatusOK || !strings.Contains(r.body, "Request weights-reader-frontier-7") || strings.Contains(r.body, "No role fits") {
		t.Fatalf("suggested: %d\n%s", r.status, r.body)
	}
	r = alice.get("/request?q=" + url.QueryEscape("read the zephyr-9 weights"))
	if r.status != http.StatusOK || !strings.Contains(r.body, "No role fits") || !strings.Contains(r.body, "Not understood: <strong>zephyr") || strings.Contains(r.body, `class="button" href="/request?role=`) {
		t.Fatalf("not understood: %d\n%s", r.status, r.body)
	}
	r = alice.get("/request?q=" + url.QueryEscape("read the frontier-7 weights and read the eval suite dataset"))
	if r.status != http.StatusOK || !strings.Contains(r.body, "for each need") || !strings.Contains(r.body, "Request weights-reader-frontier-7") || !strings.Contains(r.body, "Request dataset-reader-eval-suite-v3") {
		t.Fatalf("two needs: %d\n%s", r.status, r.body)
	}
}

// TestExpiredAccessTokenIsRefreshed: past the access token's life the console refreshes the
// session through the token endpoint (one refresh for two tabs at once, which would otherwise be
// a replay that revokes the session); a revoked session sends the browser to sign in again.
func TestExpiredAccessTokenIsRefreshed(t *testing.T) {
	e := start(t)
	alice := e.signIn("alice")
	e.clk.advance(20 * time.Minute)
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.base+"/grants", nil)
			req.Header.Set("User-Agent", alice.ua)
			resp, err := alice.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("tab %d after the access token expired: %d", i, s)
		}
	}
	if r := alice.get("/"); r.status != http.StatusOK {
		t.Fatalf("after the refresh: %d", r.status)
	}
	sessions, err := e.in.Store.ListSessions(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if !s.RevokedAt.IsZero() {
			t.Fatalf("the refresh revoked session %s: %s", s.ID, s.RevokedReason)
		}
	}
	// Revoked: the next page goes to the sign-in, and a form is refused.
	for _, s := range sessions {
		if err := e.in.Sessions.Revoke(context.Background(), s.ID, "erin", "test"); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	if r := alice.get("/"); r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?return_to=") {
		t.Fatalf("a revoked session still opens the console: %d %s", r.status, r.header.Get("Location"))
	}
}

// TestAuditPage: the ledger page filters by request, actor and event, pages back through older
// entries, and verifies the newest checkpoint; it is for admins and auditors only.
func TestAuditPage(t *testing.T) {
	e := start(t)
	alice, erin := e.signIn("alice"), e.signIn("erin")
	id := alice.file("weights-reader-frontier-7", "audited")
	other := alice.file("weights-writer-frontier-7", "also audited")
	if _, _, err := e.in.Ledger.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := alice.get("/audit"); r.status != http.StatusForbidden {
		t.Fatalf("alice reads the ledger: %d", r.status)
	}
	r := erin.get("/audit?request=" + id)
	if r.status != http.StatusOK || !strings.Contains(r.body, "/requests/"+id) || strings.Contains(r.body, "/requests/"+other) {
		t.Fatalf("filter by request:\n%s", r.body)
	}
	if !strings.Contains(r.body, "signature valid") {
		t.Fatalf("no verified checkpoint on the page:\n%s", r.body)
	}
	if r := erin.get("/audit?actor=bob"); strings.Contains(r.body, "/requests/"+id) {
		t.Fatalf("filter by actor shows alice's entries:\n%s", r.body)
	}
	if r := erin.get("/audit?event=request.*&actor=alice"); !strings.Contains(r.body, "/requests/"+id) || !strings.Contains(r.body, "/requests/"+other) {
		t.Fatalf("filter by event prefix:\n%s", r.body)
	}
	if r := erin.get("/audit?from=not-a-time"); !strings.Contains(r.body, "is not a time") {
		t.Fatalf("a bad time is not explained:\n%s", r.body)
	}
	// Paging: "before" continues below the entries shown.
	r = erin.get("/audit?before=1")
	if strings.Contains(r.body, "/requests/"+id) {
		t.Fatalf("before=1 shows later entries:\n%s", r.body)
	}
}

// TestStepUpInTheConsole: where the approval policy requires a recent second factor, the
// console says so, sends the approver through a fresh multi-factor sign-in and back to the
// request, and the approval then counts.
func TestStepUpInTheConsole(t *testing.T) {
	pol := fstest.MapFS{}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		if p == "approvals.yaml" {
			b = []byte(strings.Replace(string(b), "  description: Two-party approval, an owner AND security, for critical resources.\n",
				"  description: Two-party approval, an owner AND security, for critical resources.\n  require_step_up: 10m\n", 1))
		}
		pol[p] = &fstest.MapFile{Data: b}
		return err
	}))
	e := startWith(t, pol)
	alice, bob := e.signIn("alice"), e.signIn("bob")
	id := alice.file("weights-reader-frontier-7", "needs a fresh factor")
	page := bob.get("/requests/" + id)
	if !strings.Contains(page.body, "Verify it is you") {
		t.Fatalf("the request page does not offer the step-up:\n%s", page.body)
	}
	r := bob.post("/requests/"+id+"/approve", url.Values{})
	link := regexp.MustCompile(`href="(/login\?step_up=1&amp;return_to=[^"]+)"`).FindStringSubmatch(r.body)
	if (r.status != http.StatusUnauthorized && r.status != http.StatusForbidden) || link == nil {
		t.Fatalf("approving without a fresh factor: %d\n%s", r.status, r.body)
	}
	code, err := devop.TOTPCode(server.DevTOTPSecret, time.Now())
	must(err)
	back := bob.providerForm(bob.follow(strings.ReplaceAll(link[1], "&amp;", "&")), "bob", code)
	if back.status != http.StatusOK || !strings.Contains(back.body, "Request "+id) {
		t.Fatalf("the step-up did not come back to the request: %d\n%s", back.status, back.body)
	}
	if r := bob.post("/requests/"+id+"/approve", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("approving after the step-up: %d\n%s", r.status, r.body)
	}
	v, _ := e.in.Access.Get(context.Background(), id, "alice")
	if len(v.Reviews) != 1 || v.Reviews[0].Approver != "bob" {
		t.Fatalf("reviews: %+v", v.Reviews)
	}
}

// TestSignOutRevokesTheSession: signing out ends the session itself, not only the cookies: the
// old cookies, replayed, open nothing.
func TestSignOutRevokesTheSession(t *testing.T) {
	e := start(t)
	alice := e.signIn("alice")
	u, _ := url.Parse(e.base)
	saved := alice.c.Jar.Cookies(u)
	if r := alice.post("/logout", url.Values{}); r.status != http.StatusOK || !strings.Contains(r.body, "signed out") {
		t.Fatalf("sign out: %d\n%s", r.status, r.body)
	}
	sessions, err := e.in.Store.ListSessions(context.Background(), "alice")
	if err != nil || len(sessions) == 0 {
		t.Fatal(sessions, err)
	}
	for _, s := range sessions {
		if s.RevokedAt.IsZero() {
			t.Fatalf("session %s is still active after signing out", s.ID)
		}
	}
	replay := e.browser(alice.ua)
	replay.c.Jar.SetCookies(u, saved)
	if r := replay.get("/"); r.status != http.StatusSeeOther {
		t.Fatalf("the old cookies still open the console: %d", r.status)
	}
}
