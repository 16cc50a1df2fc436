package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signInAs signs user in at the server's development identity provider (oidc.dev_provider) with
// the device flow, over HTTP as `rampart login` does, and returns the session's access token.
// Approvals need a person's own session (invariant 8), so every end-to-end test whose people
// approve signs them in like this, and `rampart admin token` is left to bootstrap admins.
func signInAs(t *testing.T, addr, user string) string {
	t.Helper()
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm("http://"+addr+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	st, d := post("/v1/auth/device", url.Values{})
	where, _ := d["verification_uri_complete"].(string)
	code, _ := d["user_code"].(string)
	if st != http.StatusOK || where == "" || code == "" {
		t.Fatalf("device sign-in of %s did not start (is oidc.dev_provider set in the server configuration?): %d %v", user, st, d)
	}
	b := newWebBrowser(t, "")
	page := b.get(where)
	m := e2eFormAction.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("device page: %d %s", page.status, page.body)
	}
	action, _ := page.url.Parse(strings.ReplaceAll(m[1], "&amp;", "&"))
	req, _ := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(url.Values{"user_code": {code}, "username": {user}, "password": {user}, "action": {"approve"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.do(req); p.status != http.StatusOK {
		t.Fatalf("device approval of %s: %d %s", user, p.status, p.body)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {d["device_code"].(string)}}
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, out := post("/v1/auth/token", form)
		if tok, _ := out["access_token"].(string); st == http.StatusOK && tok != "" {
			return tok
		}
		if e := out["error"]; (e != "authorization_pending" && e != "slow_down") || time.Now().After(deadline) {
			t.Fatalf("device sign-in of %s: %d %v", user, st, out)
		}
		time.Sleep(time.Second) // the development provider's poll interval
	}
}

// Disabling a person withdraws their approvals of requests still pending (issue 11, item 5;
// invariant 8): bob approves alice's request for critical weights and is disabled; the ledger
// records request.approval_withdrawn, naming him, and the request needs an owner's approval
// again — dave's (security) alone does not activate it, carol's (another owner) does.
func TestDisableWithdrawsApprovalsEndToEnd(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"), "--egress-addr", "")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	login := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, carol, dave, erin := login("alice"), login("bob"), login("carol"), login("dave"), login("erin")
	must := func(tok string, args ...string) string {
		t.Helper()
		r := c.as(tok, args...)
		if r.code != 0 {
			t.Fatalf("rampart %s: %+v", strings.Join(args, " "), r)
		}
		return r.out
	}
	state := func(id string) string {
		t.Helper()
		var v struct {
			Request struct {
				State string `json:"state"`
			} `json:"request"`
		}
		out := must(alice, "-o", "json", "request", "show", id)
		if err := json.Unmarshal([]byte(out), &v); err != nil || v.Request.State == "" {
			t.Fatalf("request show %s: %v\n%s", id, err, out)
		}
		return v.Request.State
	}
	id := reqID.FindString(must(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4413", "--duration", "1h"))
	if id == "" {
		t.Fatal("request create printed no request id")
	}
	must(bob, "request", "approve", id)
	if out := must(erin, "user", "disable", "bob", "--reason", "left the company"); !strings.Contains(out, "1 approval(s) withdrawn") {
		t.Fatalf("disable bob: %s", out)
	}
	must(dave, "request", "approve", id)
	if s := state(id); s != "pending" {
		t.Fatalf("bob's withdrawn approval still counted: the request is %s after dave's", s)
	}
	must(carol, "request", "approve", id)
	if s := state(id); s != "approved" {
		t.Fatalf("after carol's approval the request is %s", s)
	}
	w := ledgerEntries(t, c, erin, "request.approval_withdrawn")["request.approval_withdrawn"]
	if len(w) != 1 || w[0].Unmapped["approver"] != "bob" || w[0].Unmapped["request_id"] != id || w[0].Actor.User.Name != "erin" {
		t.Fatalf("request.approval_withdrawn entries: %+v", w)
	}
}
