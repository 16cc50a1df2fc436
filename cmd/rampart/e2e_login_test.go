package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// noBrowser is the environment of a machine where no browser can be opened: no $BROWSER, no
// graphical session (a server, a container, an SSH session).
var noBrowser = []string{"BROWSER=", "DISPLAY=", "WAYLAND_DISPLAY="}

// `rampart login` without a flag opens the browser when one can be opened here, and signs in
// through it with the loopback redirect: Okta and Auth0 give the device flow only to native
// applications and Entra ID only to public clients, so the browser is the default that works
// everywhere. Before, the CLI chose the device flow whenever the provider offered it. The
// "browser" is $BROWSER, a script that hands the URL to the test, which plays the person.
func TestLoginOpensTheBrowserWhenItCan(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the choice on macOS and Windows is always the browser; this drives $BROWSER on Linux")
	}
	addr := startSignInServer(t)
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "url")
	script := filepath.Join(dir, "browser.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" > "+urlFile+".tmp && mv "+urlFile+".tmp "+urlFile+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	alice := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	run := alice.start([]string{"BROWSER=" + script, "DISPLAY=", "WAYLAND_DISPLAY="}, "login")
	var opened string
	for deadline := time.Now().Add(time.Minute); opened == ""; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(urlFile); err == nil {
			opened = strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			run.mu.Lock()
			t.Fatalf("`rampart login` with $BROWSER set never opened the browser; it printed:\n%s", run.stderr.String())
		}
	}
	if !loginURL.MatchString(opened) || !strings.Contains(opened, "redirect_uri=http%3A%2F%2F127.0.0.1") || !strings.Contains(opened, "code_challenge_method=S256") {
		t.Fatalf("the browser was opened at %s, not Rampart's /login with a loopback redirect and PKCE", opened)
	}
	b := newWebBrowser(t, "")
	b.signIn(b.get(opened), "alice", "alice", "")
	out, errOut, err := run.wait(t)
	if err != nil || !strings.Contains(out, "Signed in to "+addr+" as alice") || strings.Contains(errOut, "enter the code") {
		t.Fatalf("login through the browser it opened: %v\n%s%s", err, out, errOut)
	}
	if w := whoami(t, alice); w["subject"] != "alice" {
		t.Fatalf("whoami: %v", w)
	}
}

// Where no browser can be opened, `rampart login` uses the device flow, which goes through the
// provider's public CLI client (the development provider, like Okta, refuses the device grant to
// Rampart's web application, and, like Entra ID, a secret from the public client).
func TestLoginWithoutABrowserUsesTheDeviceFlow(t *testing.T) {
	addr := startSignInServer(t)
	erin := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	run := erin.start(noBrowser, "login")
	code := run.waitFor(t, regexp.MustCompile(`enter the code (\S+)\.`))
	where := run.waitFor(t, regexp.MustCompile(`(http://\S+/device\S*)`))
	approveDeviceCode(t, where, code, "erin")
	if out, errOut, err := run.wait(t); err != nil || !strings.Contains(out, "as erin") {
		t.Fatalf("device login: %v\n%s%s", err, out, errOut)
	}
	if w := whoami(t, erin); w["subject"] != "erin" || w["admin"] != true {
		t.Fatalf("whoami after the device flow: %v", w)
	}
}
