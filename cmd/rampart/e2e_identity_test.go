package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	rserver "rampart.dev/rampart/server"
)

// Sign-in end to end: `rampart server` with the built-in development provider and a risk
// configuration, and the real CLI: the browser flow (the CLI's loopback redirect), the device
// flow, a risky sign-in that must step up, a high-risk one that is blocked, and a disabled person
// and a revoked session refused on the very next call.

const (
	e2eAnonymousIP = "203.0.113.9"
	e2eBadIP       = "198.51.100.66"
)

func startSignInServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	addr := freeAddr(t)
	anon := filepath.Join(dir, "anonymous.txt")
	bad := filepath.Join(dir, "bad.txt")
	_ = os.WriteFile(anon, []byte("# test list\n"+e2eAnonymousIP+"\n"), 0o600)
	_ = os.WriteFile(bad, []byte(e2eBadIP+"/32\n"), 0o600)
	// The demo policy, with approvals of critical access requiring a recent MFA.
	pdir := filepath.Join(dir, "policy")
	_ = os.MkdirAll(pdir, 0o700)
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, _ := os.ReadFile(f)
		if filepath.Base(f) == "approvals.yaml" {
			const exclude = "  exclude: [requester, beneficiary, requester_groups, beneficiary_groups]"
			if !bytes.Contains(b, []byte(exclude)) {
				t.Fatalf("the demo approval policies no longer have the line %q to add require_step_up after", exclude)
			}
			b = bytes.Replace(b, []byte(exclude), []byte(exclude+"\n  require_step_up: 10m"), 1)
		}
		_ = os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600)
	}
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
policy_dir: %s
oidc:
  dev_provider: true
  trusted_proxies: [127.0.0.1/32]
risk:
  anonymous_ips_file: %s
  bad_ips_file: %s
`, addr, filepath.Join(dir, "data"), pdir, anon, bad)
	path := filepath.Join(dir, "rampart.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startServer(t, addr, "server", "--config", path)
	return addr
}

// webBrowser is a person's browser: cookies, and the address it appears to come from (a header
// the server believes from its trusted local proxy).
type webBrowser struct {
	t    *testing.T
	c    *http.Client
	from string
}

func newWebBrowser(t *testing.T, from string) *webBrowser {
	jar, _ := cookiejar.New(nil)
	b := &webBrowser{t: t, from: from}
	b.c = &http.Client{Jar: jar, Timeout: 20 * time.Second, Transport: b}
	return b
}

func (b *webBrowser) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.from != "" {
		r.Header.Set("X-Forwarded-For", b.from)
	}
	r.Header.Set("User-Agent", "e2e-browser")
	return http.DefaultTransport.RoundTrip(r)
}

var (
	e2eFormAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	e2eHiddenID   = regexp.MustCompile(`name="id" value="([^"]+)"`)
)

type webPage struct {
	status int
	url    *url.URL
	body   string
}

func (b *webBrowser) do(req *http.Request) webPage {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return webPage{resp.StatusCode, resp.Request.URL, string(body)}
}

func (b *webBrowser) get(u string) webPage {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	return b.do(req)
}

// signIn fills in the development provider's login form on p.
func (b *webBrowser) signIn(p webPage, user, password, otp string) webPage {
	b.t.Helper()
	m, id := e2eFormAction.FindStringSubmatch(p.body), e2eHiddenID.FindStringSubmatch(p.body)
	if m == nil || id == nil {
		b.t.Fatalf("expected the provider's login form at %s (%d):\n%s", p.url, p.status, p.body)
	}
	action, _ := p.url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
	form := url.Values{"id": {id[1]}, "username": {user}, "password": {password}, "otp": {otp}, "action": {"approve"}}
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// bgCLI is a CLI command running in the background, its stderr readable as it comes.
type bgCLI struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	stdout bytes.Buffer
	done   chan error
}

func (c *cli) start(env []string, args ...string) *bgCLI {
	c.t.Helper()
	b := &bgCLI{done: make(chan error, 1)}
	b.cmd = exec.Command(binary, append([]string{"--addr", c.addr}, args...)...)
	b.cmd.Env = append(append(os.Environ(), c.env...), env...)
	b.cmd.Stdout = &b.stdout
	pr, pw := io.Pipe()
	b.cmd.Stderr = pw
	if err := b.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
		}
	}()
	go func() { err := b.cmd.Wait(); pw.Close(); b.done <- err }()
	c.t.Cleanup(func() { _ = b.cmd.Process.Kill() })
	return b
}

// waitFor waits until stderr matches re and returns the first group.
func (b *bgCLI) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.stderr.String())
		b.mu.Unlock()
		if m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t.Fatalf("CLI never printed %s; stderr:\n%s", re, b.stderr.String())
	return ""
}

func (b *bgCLI) wait(t *testing.T) (string, string, error) {
	t.Helper()
	select {
	case err := <-b.done:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.stdout.String(), b.stderr.String(), err
	case <-time.After(60 * time.Second):
		t.Fatal("the CLI did not finish")
	}
	return "", "", nil
}

var loginURL = regexp.MustCompile(`(http://\S+/login\?\S+)`)

// browserLogin runs `rampart login` and plays the person in the browser; it returns the CLI's
// result.
func browserLogin(t *testing.T, c *cli, from, user string, otp func() string, extra ...string) (string, string, error) {
	t.Helper()
	run := c.start(nil, append([]string{"login", "--browser", "--no-open"}, extra...)...)
	u := run.waitFor(t, loginURL)
	b := newWebBrowser(t, from)
	p := b.signIn(b.get(u), user, user, "")
	if otp != nil && e2eFormAction.MatchString(p.body) {
		// The server sent the browser back to the provider for a second factor.
		p = b.signIn(p, user, user, otp())
	}
	return run.wait(t)
}

// approveDeviceCode plays user approving a device sign-in on the provider's page at where.
func approveDeviceCode(t *testing.T, where, code, user string) {
	t.Helper()
	b := newWebBrowser(t, "")
	device := b.get(where)
	m := e2eFormAction.FindStringSubmatch(device.body)
	if m == nil {
		t.Fatalf("device page: %d %s", device.status, device.body)
	}
	action, _ := device.url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(url.Values{"user_code": {code}, "username": {user}, "password": {user}, "action": {"approve"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.do(req); p.status != 200 {
		t.Fatalf("device approval: %d %s", p.status, p.body)
	}
}

func devCode(t *testing.T) string {
	key, err := identity.DecodeTOTPSecret(rserver.DevTOTPSecret)
	if err != nil {
		t.Fatal(err)
	}
	return identity.TOTPAt(key, identity.TOTPStepAt(time.Now()))
}

func whoami(t *testing.T, c *cli) map[string]any {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(c.ok("whoami", "-o", "json")), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestSignInEndToEnd(t *testing.T) {
	addr := startSignInServer(t)
	alice := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}

	// The browser flow: the CLI's loopback redirect receives a one-time code.
	out, errOut, err := browserLogin(t, alice, "", "alice", nil)
	if err != nil || !strings.Contains(out, "Signed in to "+addr+" as alice") {
		t.Fatalf("browser login: %v\n%s%s", err, out, errOut)
	}
	w := whoami(t, alice)
	if w["subject"] != "alice" || w["session_id"] == nil || !strings.Contains(fmt.Sprint(w["groups"]), "researchers") {
		t.Fatalf("whoami after sign-in: %v", w)
	}

	// The device flow: a code entered on another device, the default where no browser can be
	// opened.
	erin := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	run := erin.start(noBrowser, "login")
	code := run.waitFor(t, regexp.MustCompile(`enter the code (\S+)\.`))
	where := run.waitFor(t, regexp.MustCompile(`(http://\S+/device\S*)`))
	approveDeviceCode(t, where, code, "erin")
	if out, errOut, err := run.wait(t); err != nil || !strings.Contains(out, "as erin") {
		t.Fatalf("device login: %v\n%s%s", err, out, errOut)
	}
	if w := whoami(t, erin); w["admin"] != true {
		t.Fatalf("erin is not admin through the provider's groups: %v", w)
	}

	// A risky sign-in (an anonymising service) must step up at the provider.
	risky := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	out, errOut, err = browserLogin(t, risky, e2eAnonymousIP, "alice", func() string { return devCode(t) })
	if err != nil || !strings.Contains(out, "multi-factor") {
		t.Fatalf("risky login: %v\n%s%s", err, out, errOut)
	}
	if w := whoami(t, risky); w["mfa_at"] == nil {
		t.Fatalf("a stepped-up session without mfa_at: %v", w)
	}

	// A high-risk sign-in is blocked: the CLI says why and saves nothing.
	blocked := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	out, errOut, err = browserLogin(t, blocked, e2eBadIP, "alice", nil)
	if err == nil || !strings.Contains(errOut, "too risky") {
		t.Fatalf("blocked login: %v\n%s%s", err, out, errOut)
	}
	if r := blocked.run(nil, "whoami"); r.code == 0 {
		t.Fatal("a blocked sign-in left a session")
	}

	// Approving critical access needs a recent MFA (require_step_up: 10m): bob's password-only
	// session gets a step-up challenge; after `rampart login --step-up` his approval counts.
	created := alice.ok("request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "1h")
	id := reqID.FindString(created)
	bob := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	if out, errOut, err := browserLogin(t, bob, "", "bob", nil); err != nil {
		t.Fatalf("bob login: %v\n%s%s", err, out, errOut)
	}
	r := bob.run(nil, "request", "approve", id)
	if r.code == 0 || !strings.Contains(r.err, "step-up") {
		t.Fatalf("approval without a recent MFA: %+v", r)
	}
	if out, errOut, err := browserLogin(t, bob, "", "bob", func() string { return devCode(t) }, "--step-up"); err != nil || !strings.Contains(out, "multi-factor") {
		t.Fatalf("bob step-up: %v\n%s%s", err, out, errOut)
	}
	bob.ok("request", "approve", id)

	// A revoked session is refused on the next call.
	var sessions []map[string]any
	if err := json.Unmarshal([]byte(erin.ok("session", "list", "--subject", "alice", "-o", "json")), &sessions); err != nil {
		t.Fatal(err)
	}
	aliceSession := w["session_id"].(string)
	found := false
	for _, s := range sessions {
		found = found || s["id"] == aliceSession
	}
	if !found {
		t.Fatalf("alice's session %s not listed: %v", aliceSession, sessions)
	}
	erin.ok("session", "revoke", aliceSession, "--reason", "laptop stolen")
	if r := alice.run(nil, "whoami"); r.code == 0 || !strings.Contains(r.err, "revoked") {
		t.Fatalf("revoked session: %+v", r)
	}

	// A disabled person is refused on the next call, and her pending request is cancelled
	// (bob's approval of it counts no more); enabled again, she may sign in anew, but the session
	// from before stays dead (issue 11, item 5).
	if out, errOut, err := browserLogin(t, alice, "", "alice", nil); err != nil {
		t.Fatalf("alice signs in again: %v\n%s%s", err, out, errOut)
	}
	if out := erin.ok("user", "disable", "alice", "--reason", "left the company"); !strings.Contains(out, "1 pending request(s) cancelled") {
		t.Fatalf("disable: %s", out)
	}
	if r := alice.run(nil, "whoami"); r.code == 0 || !strings.Contains(r.err, "revoked") {
		t.Fatalf("disabled alice: %+v", r)
	}
	if r := erin.run(nil, "check", "alice", "read", "weights/frontier-7"); r.code != 3 || !strings.Contains(r.out, "disabled") {
		t.Fatalf("check of disabled alice: %+v", r)
	}
	erin.ok("user", "enable", "alice")
	if r := alice.run(nil, "whoami"); r.code == 0 || !strings.Contains(r.err, "revoked") {
		t.Fatalf("alice's session came back when she was enabled: %+v", r)
	}
	if out := erin.ok("request", "show", id); !strings.Contains(out, "cancelled") {
		t.Fatalf("alice's request after she was enabled: %s", out)
	}

	// Everything above is in the ledger and verifies.
	erin.ok("audit", "checkpoint")
	if out := erin.ok("audit", "verify"); !strings.Contains(out, "verifies") {
		t.Fatalf("audit verify: %s", out)
	}
}
