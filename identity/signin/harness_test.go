package signin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/devop"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

const (
	aliceTOTP = "JBSWY3DPEHPK3PXP"
	// Addresses the tests pretend to come from (through a trusted proxy header).
	anonymousIP = "203.0.113.9"   // on the anonymising-services list: medium risk
	badIP       = "198.51.100.66" // on the known-bad list: high risk
)

// env is a development OpenID provider and a Rampart sign-in service, each on real HTTP, over a
// real SQLite store.
type env struct {
	t        *testing.T
	op       *devop.Provider
	opSrv    *httptest.Server
	issuer   string
	srv      *httptest.Server
	svc      *signin.Service
	store    *sqlstore.DB
	sessions *identity.Sessions
	auth     *identity.Chain
	now      func() time.Time
	// ahead moves Rampart's clock (not the provider's) forward, for tests that need a day to
	// pass.
	ahead atomic.Int64
}

type envOptions struct {
	stepUp   string
	outcomes risk.Outcomes
	// refused, if set, records refusals (aggregated, as the server does).
	refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	// webGrants restricts what the provider lets Rampart's web client do (default: everything);
	// cliClient registers a public client "rampart-cli" for the device flow and names it in
	// Config.CLIClientID, as Okta, Auth0 and Entra ID need.
	webGrants []oidc.GrantType
	cliClient bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t}
	e.now = func() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) }
	opMux := http.NewServeMux()
	e.opSrv = httptest.NewUnstartedServer(opMux)
	e.issuer = "http://" + e.opSrv.Listener.Addr().String() + "/dev-idp"
	mux := http.NewServeMux()
	e.srv = httptest.NewUnstartedServer(mux)
	external := "http://" + e.srv.Listener.Addr().String()
	clients := []devop.Client{{ID: "rampart", Secret: "rampart-secret", RedirectURIs: []string{external + "/callback"}, GrantTypes: o.webGrants}}
	cliID := ""
	if o.cliClient {
		cliID = "rampart-cli"
		clients = append(clients, devop.Client{ID: cliID, GrantTypes: []oidc.GrantType{oidc.GrantTypeDeviceCode}})
	}
	op, err := devop.New(devop.Config{
		Issuer: e.issuer,
		Users: []devop.User{
			{Name: "alice", Password: "alice-pw", Email: "alice@example.com", Groups: []string{"ml-research"}, TOTPSecret: aliceTOTP},
			{Name: "frank", Password: "frank-pw", Groups: []string{"ml-research", "unrelated"}},
			{Name: "Service:CI", Password: "ci-pw"},
		},
		Clients: clients,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.op = op
	opMux.Handle("/dev-idp/", op.Handler())
	e.opSrv.Start()
	t.Cleanup(e.opSrv.Close)

	e.store, err = sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := risk.ParsePrefixList("anonymous.txt", strings.NewReader(anonymousIP+"\n"))
	bad, _ := risk.ParsePrefixList("bad.txt", strings.NewReader(badIP+"\n"))
	engine, err := risk.NewEngine(risk.Config{AnonymousIPs: anon, BadIPs: bad}, nil, e.store)
	if err != nil {
		t.Fatal(err)
	}
	e.sessions = &identity.Sessions{Store: e.store, Now: e.now}
	e.auth = &identity.Chain{Sessions: e.sessions}
	sealer, _ := identity.NewSealer(make([]byte, 32))
	e.svc, err = signin.New(signin.Config{
		Issuer: e.issuer, ClientID: "rampart", ClientSecret: "rampart-secret", CLIClientID: cliID, ExternalURL: external,
		StepUp: o.stepUp, Outcomes: o.outcomes, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, signin.Deps{Sessions: e.sessions, Store: e.store, Auth: e.auth, Risk: engine, Policy: func() *policy.Policy { return pol },
		Record: func(ctx context.Context, ev audit.Event) error {
			return e.store.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
		}, Refused: o.refused, Sealer: sealer, Now: e.now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Register(mux)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a person's web browser: cookies, redirects followed, and the address it appears
// to come from (sent as X-Forwarded-For through the trusted local proxy).
type browser struct {
	e      *env
	c      *http.Client
	from   string
	device string
}

func (e *env) browser(from string) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{e: e, from: from, device: "laptop-1"}
	b.c = &http.Client{Jar: jar, Transport: b, Timeout: 10 * time.Second}
	return b
}

// RoundTrip adds the browser's apparent address and user agent to requests to Rampart.
func (b *browser) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.from != "" && r.URL.Host == b.e.srv.Listener.Addr().String() {
		r.Header.Set("X-Forwarded-For", b.from)
	}
	r.Header.Set("User-Agent", "test-browser/"+b.device)
	return http.DefaultTransport.RoundTrip(r)
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	hiddenID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
	hiddenFlow = regexp.MustCompile(`name="flow" value="([^"]+)"`)
)

// page is a response read to the end.
type page struct {
	status int
	url    *url.URL
	body   string
}

func (b *browser) get(u string) page {
	b.e.t.Helper()
	resp, err := b.c.Get(u)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return read(b.e.t, resp)
}

func read(t *testing.T, resp *http.Response) page {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, url: resp.Request.URL, body: string(body)}
}

// signInAtProvider fills in the provider's login form on p.
func (b *browser) signInAtProvider(p page, user, password, otp string) page {
	b.e.t.Helper()
	m, id := formAction.FindStringSubmatch(p.body), hiddenID.FindStringSubmatch(p.body)
	if m == nil || id == nil {
		b.e.t.Fatalf("expected the provider's login form at %s (%d), got:\n%s", p.url, p.status, p.body)
	}
	action, _ := p.url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
	form := url.Values{"id": {id[1]}, "username": {user}, "password": {password}, "action": {"approve"}}
	if otp != "" {
		form.Set("otp", otp)
	}
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", action.Scheme+"://"+action.Host)
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return read(b.e.t, resp)
}

// postForm posts a form to Rampart (same origin).
func (b *browser) postForm(path string, form url.Values) page {
	b.e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.e.srv.URL)
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return read(b.e.t, resp)
}

func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == identity.SessionCookie {
			return c.Value
		}
	}
	return ""
}

func totp(t *testing.T, at time.Time) string {
	t.Helper()
	c, err := devop.TOTPCode(aliceTOTP, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// loopback is the CLI's local listener for the redirect.
type loopback struct {
	srv *httptest.Server
	mu  sync.Mutex
	got url.Values
}

func newLoopback(t *testing.T) *loopback {
	l := &loopback{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.got = r.URL.Query()
		l.mu.Unlock()
		fmt.Fprint(w, "you can close this window")
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *loopback) redirectURI() string { return l.srv.URL + "/callback" }

func (l *loopback) query() url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got
}

// tokenCall posts to /v1/auth/token as the CLI would.
func (e *env) tokenCall(from string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "rampart-cli/test")
	req.Header.Set(signin.DeviceHeader, "cli-install-1")
	if from != "" {
		req.Header.Set("X-Forwarded-For", from)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatalf("%s %s: %d, not JSON: %s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return resp.StatusCode, out
}

// codes lists the ledger's entry codes in order.
func (e *env) codes() []string {
	e.t.Helper()
	entries, err := e.store.Entries(context.Background(), 0, 10000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		var ev struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
		}
		_ = json.Unmarshal(en.Data, &ev)
		out = append(out, ev.Metadata.EventCode)
	}
	return out
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
