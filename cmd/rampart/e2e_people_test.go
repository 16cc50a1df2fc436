package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
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
