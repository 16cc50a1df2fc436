package signin

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
)

// Fuzz tests for the parsers of untrusted input in sign-in. Each checks properties of what is
// accepted, not only that nothing panics.

// browserURL is how a browser (the WHATWG URL standard, for the special scheme http and https)
// reads the parts of a URL that decide where it goes. It is deliberately independent of
// net/url, whose reading is what is being checked: it strips leading and trailing C0 controls
// and spaces, drops tabs and newlines anywhere, treats '\' as '/', and takes the host after the
// last '@' of the authority.
type browserURL struct {
	scheme    string // "" for a relative reference
	authority bool   // the reference names a host (absolute, or scheme-relative //host)
	host      string // lowercased, percent-decoded, port removed
	port      string
}

func parseLikeABrowser(raw string) browserURL {
	raw = strings.TrimFunc(raw, func(r rune) bool { return r <= 0x20 })
	raw = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, raw)
	var b browserURL
	if i := strings.IndexByte(raw, ':'); i > 0 && isScheme(raw[:i]) {
		b.scheme, raw = strings.ToLower(raw[:i]), raw[i+1:]
	}
	slashes := len(raw) - len(strings.TrimLeft(raw, `/\`))
	switch {
	case b.scheme == "http" || b.scheme == "https":
		b.authority = true // a special scheme's authority follows any number of slashes
	case b.scheme == "" && slashes >= 2:
		b.authority = true
	case b.scheme != "":
		return b // javascript:, data:, … : not a network location at all
	}
	if !b.authority {
		return b
	}
	auth := raw[slashes:]
	if i := strings.IndexAny(auth, `/\?#`); i >= 0 {
		auth = auth[:i]
	}
	if i := strings.LastIndexByte(auth, '@'); i >= 0 {
		auth = auth[i+1:]
	}
	host := auth
	if i := strings.LastIndexByte(auth, ':'); i >= 0 && !strings.HasSuffix(auth, "]") {
		host, b.port = auth[:i], auth[i+1:]
	}
	if h, err := url.PathUnescape(host); err == nil {
		host = h
	}
	b.host = strings.ToLower(host)
	return b
}

func isScheme(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// loopbackForBrowser reports whether a browser sends a request for raw to an http loopback IP
// literal with a valid port.
func loopbackForBrowser(raw string) bool {
	b := parseLikeABrowser(raw)
	p, err := strconv.Atoi(b.port)
	return b.scheme == "http" && (b.host == "127.0.0.1" || b.host == "[::1]") && err == nil && p >= 1 && p <= 65535 &&
		strings.Trim(b.port, "0123456789") == ""
}

// parseCLI accepts only an http loopback IP literal with a port (as both net/url and a browser
// read it), an S256 challenge of the right form and a bounded state; the redirect Rampart then
// sends the browser to goes to that same loopback address.
func FuzzParseCLI(f *testing.F) {
	ch := strings.Repeat("A", 43)
	for _, s := range [][4]string{
		{"http://127.0.0.1:8080/callback", "s", ch, "S256"},
		{"http://[::1]:1/", "s", ch, "S256"},
		{"http://127.0.0.1/", "s", ch, "S256"},
		{"http://localhost:80/", "s", ch, "S256"},
		{"https://127.0.0.1:443/", "s", ch, "S256"},
		{"http://127.0.0.1:80@evil.example/", "s", ch, "S256"},
		{"http://user:pw@127.0.0.1:8080/cb", "s", ch, "S256"},
		{"http://evil.example\\@127.0.0.1:80/", "s", ch, "S256"},
		{"http://127.0.0.1:80\\@evil.example/", "s", ch, "S256"},
		{"http://127.0.0.1:0/", "s", ch, "S256"},
		{"http://127.0.0.1:65536/", "s", ch, "S256"},
		{"http://127.0.0.1:0080/x?y=z", "s", ch, "S256"},
		{"http://[::1%25eth0]:80/", "s", ch, "S256"},
		{"http://127.0.0.1:80/#frag", "s", ch, "S256"},
		{"http:/\\127.0.0.1:80/", "s", ch, "S256"},
		{"http://127.0.0.1:80/", "", ch, "S256"},
		{"http://127.0.0.1:80/", "s", ch, "plain"},
		{"http://127.0.0.1:80/", "s", ch[:42] + "=", "S256"},
		{"", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, redirect, state, challenge, method string) {
		q := url.Values{"redirect_uri": {redirect}, "state": {state}, "code_challenge": {challenge}, "code_challenge_method": {method}}
		c, err := parseCLI(q)
		switch {
		case redirect == "":
			if c != nil || err != nil {
				t.Fatalf("no redirect_uri: %+v %v", c, err)
			}
			return
		case err != nil:
			if c != nil || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("refusal %v with %+v", err, c)
			}
			return
		case c == nil:
			t.Fatal("neither parameters nor an error")
		}
		if c.RedirectURI != redirect || c.State != state || c.Challenge != challenge {
			t.Fatalf("parameters changed: %+v", c)
		}
		if method != "S256" || len(challenge) != 43 || strings.Trim(challenge, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("accepted challenge %q (%q)", challenge, method)
		}
		if state == "" || len(state) > 256 {
			t.Fatalf("accepted a state of %d bytes", len(state))
		}
		u, err := url.Parse(redirect)
		if err != nil || u.Scheme != "http" || (u.Hostname() != "127.0.0.1" && u.Hostname() != "::1") || u.User != nil || u.Fragment != "" {
			t.Fatalf("accepted %q (%v)", redirect, err)
		}
		if !loopbackForBrowser(redirect) {
			t.Fatalf("accepted %q, which a browser reads as %+v", redirect, parseLikeABrowser(redirect))
		}
		// Where Rampart actually sends the browser (an error redirect is built like the code one).
		rec := httptest.NewRecorder()
		(&Service{}).browserError(rec, httptest.NewRequest(http.MethodGet, "/callback", nil), c, http.StatusBadRequest, ErrBadRequest)
		loc := rec.Header().Get("Location")
		if rec.Code != http.StatusFound || !loopbackForBrowser(loc) {
			t.Fatalf("%q sent the browser to %q (%+v)", redirect, loc, parseLikeABrowser(loc))
		}
		if lu, err := url.Parse(loc); err != nil || lu.Query().Get("state") != state || lu.Host != u.Host {
			t.Fatalf("redirect %q for %q: %v", loc, redirect, err)
		}
	})
}

// safeReturn returns only references a browser resolves on Rampart's own origin, and so does
// the redirect Rampart makes with them.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/v1/whoami", "/", "//evil.example", "/\\evil.example", "\\/evil.example", "https://evil.example/",
		"/%2fevil.example", "/./evil.example", "/.//evil.example", "/..//evil.example", " //evil.example", "/\t/evil.example",
		"javascript:alert(1)", "/?next=//evil.example", "/#//evil.example", "/a/../../evil", "http:evil.example", "/\x00/evil"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://rampart.example/callback")
	sameOrigin := func(ref string) bool {
		b := parseLikeABrowser(ref)
		if b.scheme != "" || b.authority {
			return false
		}
		u, err := base.Parse(ref)
		return err == nil && u.Scheme == base.Scheme && u.Host == base.Host
	}
	f.Fuzz(func(t *testing.T, p string) {
		ret, err := safeReturn(p)
		switch {
		case p == "":
			if ret != "" || err != nil {
				t.Fatalf("empty: %q %v", ret, err)
			}
			return
		case err != nil:
			if ret != "" || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("refusal %v with %q", err, ret)
			}
			return
		}
		if ret != p || !strings.HasPrefix(ret, "/") {
			t.Fatalf("%q became %q", p, ret)
		}
		if !sameOrigin(ret) {
			t.Fatalf("accepted %q, which a browser reads as %+v", ret, parseLikeABrowser(ret))
		}
		rec := httptest.NewRecorder()
		http.Redirect(rec, httptest.NewRequest(http.MethodGet, "/callback", nil), ret, http.StatusFound)
		if loc := rec.Header().Get("Location"); !sameOrigin(loc) {
			t.Fatalf("accepted %q, redirected to %q, which a browser reads as %+v", ret, loc, parseLikeABrowser(loc))
		}
	})
}

// clientOf believes X-Forwarded-For only from trusted proxies, and then only up to the first
// address that is not one: the address it returns is the caller's, the closest untrusted hop,
// never one an untrusted party could have written to the left of it.
func FuzzClientOf(f *testing.F) {
	for _, s := range [][3]string{
		{"127.0.0.1:1234", "203.0.113.9", ""},
		{"127.0.0.1:1234", "198.51.100.1, 203.0.113.9", ""},
		{"127.0.0.1:1234", "198.51.100.1, 10.0.0.2", "10.0.0.3"},
		{"127.0.0.1:1234", "garbage, 10.0.0.2", ""},
		{"127.0.0.1:1234", "10.0.0.2", ""},
		{"[::1]:1", "::ffff:203.0.113.9", ""},
		{"[::ffff:127.0.0.1]:1", "203.0.113.9", ""},
		{"192.0.2.1:1", "10.0.0.2", ""},
		{"garbage", "203.0.113.9", ""},
		{"127.0.0.1", " 203.0.113.9 ,", ""},
		{"127.0.0.1:1", "fe80::1%eth0", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	s := &Service{cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/8")}}}
	trusted := func(a netip.Addr) bool {
		for _, p := range s.cfg.TrustedProxies {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, remote, xff1, xff2 string) {
		r := httptest.NewRequest(http.MethodGet, "/callback", nil)
		r.RemoteAddr = remote
		for _, v := range []string{xff1, xff2} {
			if v != "" {
				r.Header.Add("X-Forwarded-For", v)
			}
		}
		got := s.clientOf(r)
		if got.IP.Is4In6() {
			t.Fatalf("a mapped address: %v", got.IP)
		}
		if len(got.Fingerprint) != 24 || strings.Trim(got.Fingerprint, "0123456789abcdef") != "" {
			t.Fatalf("fingerprint %q", got.Fingerprint)
		}
		host := remote
		if h, _, err := net.SplitHostPort(remote); err == nil {
			host = h
		}
		peer, _ := netip.ParseAddr(host)
		peer = peer.Unmap()
		if !trusted(peer) {
			if got.IP != peer {
				t.Fatalf("from untrusted %q the header was believed: %v", remote, got.IP)
			}
			return
		}
		// From a trusted proxy: hops from the right; want is the first that is not a trusted
		// address (when it parses), else the last trusted one before it, else the proxy.
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
		if len(hops) == 0 {
			hops = []string{""}
		}
		want := peer
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			want = a.Unmap()
			if !trusted(want) {
				break
			}
		}
		if got.IP != want {
			t.Fatalf("remote %q, X-Forwarded-For %q: got %v, want %v", remote, hops, got.IP, want)
		}
		// The property the above serves: every hop to the right of the chosen one is a trusted
		// proxy, so no untrusted party chose it.
		if got.IP != peer {
			seen := false
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err == nil && a.Unmap() == got.IP {
					seen = true
					break
				}
				if err != nil || !trusted(a.Unmap()) {
					t.Fatalf("%v chosen from the left of untrusted hop %q", got.IP, hops[i])
				}
			}
			if !seen {
				t.Fatalf("%v is neither the peer nor a hop of %q", got.IP, hops)
			}
		}
	})
}

// FuzzTokenEndpoint posts arbitrary bodies to POST /v1/auth/token through the real handler,
// over a real store that holds flows and a revoked session whose handles the corpus knows:
// no body gets a token or opens a session, answers are OAuth JSON errors, and the only 5xx is
// temporarily_unavailable (502, the provider being unreachable).
func FuzzTokenEndpoint(f *testing.F) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(f.TempDir(), "r.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		f.Fatal(err)
	}
	engine, err := risk.NewEngine(risk.Config{}, nil, st)
	if err != nil {
		f.Fatal(err)
	}
	sessions := &identity.Sessions{Store: st, Now: time.Now}
	sealer, _ := identity.NewSealer(make([]byte, 32))
	record := func(ctx context.Context, ev audit.Event) error {
		return st.Update(ctx, func(tx access.Tx) error { _, err := tx.Append(ctx, ev); return err })
	}
	svc, err := New(Config{Issuer: "http://127.0.0.1:1/unreachable", ClientID: "rampart", ExternalURL: "http://rampart.test",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Deps{Sessions: sessions, Store: st, Auth: &identity.Chain{Sessions: sessions}, Risk: engine, Policy: func() *policy.Policy { return pol },
			Record: record, Sealer: sealer})
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)

	// A revoked session: its refresh token is known to the corpus and must stay dead.
	iss, err := sessions.Create(ctx, identity.NewSession{Subject: "frank", Method: "oidc", AuthTime: time.Now(), IP: "127.0.0.1",
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, Time: time.Now(), Actor: "frank", User: "frank"}})
	if err != nil {
		f.Fatal(err)
	}
	// Tokens of it with fixed values, so that every fuzzing process (each has its own store)
	// knows them: a refresh token, a used one, an access token.
	knownRefresh, usedRefresh, knownAccess := identity.RefreshPrefix+"fuzz-known-refresh", identity.RefreshPrefix+"fuzz-used-refresh", identity.AccessPrefix+"fuzz-known-access"
	err = st.UpdateSessions(ctx, func(tx identity.SessionTx) error {
		now := time.Now()
		for _, tk := range []identity.SessionToken{
			{Hash: identity.HashToken(knownRefresh), Kind: "refresh"},
			{Hash: identity.HashToken(usedRefresh), Kind: "refresh", UsedAt: now},
			{Hash: identity.HashToken(knownAccess), Kind: "access"},
		} {
			tk.SessionID, tk.IssuedAt, tk.ExpiresAt = iss.Session.ID, now, now.Add(time.Hour)
			if err := tx.InsertSessionToken(ctx, tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	if err := sessions.Revoke(ctx, iss.Session.ID, "test", "fuzz"); err != nil {
		f.Fatal(err)
	}
	// Flows whose handles the corpus knows, put back before each input: a CLI code whose
	// verifier nobody knows, a second-factor step for someone with no factor, a device sign-in
	// at an unreachable provider.
	cli := pending{ID: identityClaims{Subject: "frank"}, Method: "oidc", CLI: &cliParams{RedirectURI: "http://127.0.0.1:9/cb", State: "s", Challenge: s256(handle())}}
	cli.Decision.Outcome = risk.Allow
	mfa := pending{ID: identityClaims{Subject: "frank"}, Method: "oidc"}
	mfa.Decision.Outcome = risk.StepUp
	pendingCLI, _ := json.Marshal(cli)
	pendingMFA, _ := json.Marshal(mfa)
	device, _ := json.Marshal(deviceFlow{DeviceCode: "provider-device-code", Interval: 5})
	flows := []identity.Flow{
		{ID: identity.HashToken("known-code"), Kind: "code", Data: pendingCLI},
		{ID: identity.HashToken("known-mfa"), Kind: "mfa", Data: pendingMFA},
		{ID: identity.HashToken("known-device"), Kind: "device", Data: device},
	}

	v := strings.Repeat("v", 43)
	for _, s := range []string{
		"grant_type=authorization_code&code=known-code&code_verifier=" + v + "&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb",
		"grant_type=authorization_code&code=known-code&code_verifier=&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcb",
		"grant_type=refresh_token&refresh_token=" + knownRefresh,
		"grant_type=refresh_token&refresh_token=" + usedRefresh,
		"grant_type=refresh_token&refresh_token=" + knownAccess,
		"grant_type=urn%3Arampart%3Aparams%3Aoauth%3Agrant-type%3Aotp&mfa_token=known-mfa&otp=123456",
		"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=known-device",
		"grant_type=authorization_code&grant_type=refresh_token&code=known-code",
		"grant_type=%zz", "a=" + strings.Repeat("b", 17<<10), "", "&&&===", "grant_type=password&username=frank&password=x",
	} {
		f.Add(s, "application/x-www-form-urlencoded", "203.0.113.9")
	}
	f.Add(`{"grant_type":"refresh_token"}`, "application/json", "")
	f.Add("grant_type=refresh_token", "multipart/form-data; boundary=x", "")

	f.Fuzz(func(t *testing.T, body, contentType, xff string) {
		now := time.Now()
		for _, fl := range flows {
			fl.CreatedAt, fl.ExpiresAt = now, now.Add(time.Hour)
			_ = st.PutFlow(ctx, fl) // already there unless the last input took it
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/auth/token", strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-Forwarded-For", xff)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)

		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%d, not a JSON object: %q", rec.Code, rec.Body.String())
		}
		code, _ := out["error"].(string)
		switch {
		case rec.Code == http.StatusOK:
			t.Fatalf("a token for %q: %v", body, out)
		case out["access_token"] != nil || out["refresh_token"] != nil || out["session"] != nil:
			t.Fatalf("credentials in an error: %v", out)
		case code == "":
			t.Fatalf("%d without an OAuth error code: %v", rec.Code, out)
		case rec.Code >= 500 && (rec.Code != http.StatusBadGateway || code != "temporarily_unavailable"):
			// The store is healthy: the only 5xx is the unreachable provider of the device flow.
			t.Fatalf("%d %s for %q: %v", rec.Code, code, body, out)
		case rec.Code != 400 && rec.Code != 401 && rec.Code != 403 && rec.Code < 500:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("headers %v", rec.Header())
		}
		s, err := st.ListSessions(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != 1 || s[0].ID != iss.Session.ID || s[0].RevokedAt.IsZero() {
			t.Fatalf("sessions after %q: %+v", body, s)
		}
	})
}
