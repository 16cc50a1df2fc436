package signin_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// approveDevice plays the person approving a device sign-in at the provider's page.
func (e *env) approveDevice(dev map[string]any, user, password string) {
	e.t.Helper()
	b := e.browser("")
	b.get(dev["verification_uri"].(string))
	form := url.Values{"user_code": {dev["user_code"].(string)}, "username": {user}, "password": {password}, "action": {"approve"}}
	req, _ := http.NewRequest(http.MethodPost, dev["verification_uri"].(string), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		e.t.Fatalf("device approval: %v %v", resp, err)
	}
	resp.Body.Close()
}

// pollDevice polls at the interval the server gave until the sign-in ends (a minute is a limit
// for failures only).
func (e *env) pollDevice(dev map[string]any) (int, map[string]any) {
	e.t.Helper()
	poll := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {dev["device_code"].(string)}}
	interval := time.Duration(dev["interval"].(float64)) * time.Second
	for deadline := time.Now().Add(time.Minute); ; {
		time.Sleep(interval) // the protocol's own pace (RFC 8628): one second at the development provider
		st, out := e.tokenCall("", poll)
		switch {
		case out["error"] == "slow_down":
			interval += 5 * time.Second
		case out["error"] != "authorization_pending" || time.Now().After(deadline):
			return st, out
		}
	}
}

// Okta and Auth0 let only native applications use the device flow, and Entra ID refuses a
// client secret on the device polls of a public client: the web application Rampart signs
// browsers in with cannot do it. With oidc.cli_client_id, the device flow goes through a second,
// public application that sends no secret (the provider here refuses one from it, as Entra ID
// does), and the person signs in through it; its ID token, whose audience is the CLI's
// application, is verified as such.
func TestDeviceFlowThroughPublicCLIClient(t *testing.T) {
	e := newEnv(t, envOptions{webGrants: []oidc.GrantType{oidc.GrantTypeCode}, cliClient: true})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/device", nil)
	st, dev := e.do(req)
	if st != 200 || dev["user_code"] == nil {
		t.Fatalf("device start through the public CLI client: %d %v", st, dev)
	}
	e.approveDevice(dev, "frank", "frank-pw")
	st, out := e.pollDevice(dev)
	if st != 200 {
		t.Fatalf("device sign-in through the public CLI client: %d %v", st, out)
	}
	if ses := out["session"].(map[string]any); ses["subject"] != "frank" || ses["method"] != "oidc-device" {
		t.Fatalf("session %v", ses)
	}
	// The browser flow still uses the web application.
	b := e.browser("")
	if done := b.signInAtProvider(b.get(e.srv.URL+"/login"), "alice", "alice-pw", ""); done.status != 200 || !strings.Contains(done.body, "Signed in to Rampart as alice") {
		t.Fatalf("browser sign-in beside the CLI client: %d %s", done.status, done.body)
	}
}

// Without a CLI client, a provider that keeps the device grant from Rampart's web application
// is answered unsupported_grant_type (so the CLI falls back to the browser) with what to
// configure, not a bare error from the provider.
func TestDeviceFlowRefusedForTheWebClientSaysWhatToDo(t *testing.T) {
	e := newEnv(t, envOptions{webGrants: []oidc.GrantType{oidc.GrantTypeCode}})
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/auth/device", nil)
	st, out := e.do(req)
	desc, _ := out["error_description"].(string)
	if st != 400 || out["error"] != "unsupported_grant_type" || !strings.Contains(desc, "oidc.cli_client_id") ||
		!strings.Contains(desc, `client "rampart"`) || !strings.Contains(desc, "rampart login --browser") {
		t.Fatalf("device start with a web client the provider refuses it to: %d %v", st, out)
	}
}
