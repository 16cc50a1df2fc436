package main

import (
	"errors"
	"slices"
	"testing"
)

// Which flow `rampart login` picks depends on whether a browser can be opened here.
func TestCanOpenBrowser(t *testing.T) {
	found := func(string) (string, error) { return "/usr/bin/xdg-open", nil }
	missing := func(string) (string, error) { return "", errors.New("not found") }
	for _, tc := range []struct {
		name string
		goos string
		env  map[string]string
		look func(string) (string, error)
		want bool
	}{
		{"macOS", "darwin", nil, missing, true},
		{"Windows", "windows", nil, missing, true},
		{"Linux desktop (X11)", "linux", map[string]string{"DISPLAY": ":0"}, found, true},
		{"Linux desktop (Wayland)", "linux", map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, found, true},
		{"a display but no xdg-open", "linux", map[string]string{"DISPLAY": ":0"}, missing, false},
		{"$BROWSER over SSH", "linux", map[string]string{"BROWSER": "w3m", "SSH_CONNECTION": "x"}, missing, true},
		{"$BROWSER of spaces and colons only", "linux", map[string]string{"BROWSER": " : "}, missing, false},
		{"SSH session, no display", "linux", map[string]string{"SSH_CONNECTION": "198.51.100.1 5000 10.0.0.1 22"}, found, false},
		{"container or server", "linux", nil, found, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := canOpenBrowser(tc.goos, func(k string) string { return tc.env[k] }, tc.look); got != tc.want {
				t.Fatalf("canOpenBrowser = %v, want %v", got, tc.want)
			}
		})
	}
}

// $BROWSER is read as xdg-open and Python read it: the first of a colon-separated list, "%s"
// standing for the URL, else the URL last. No shell is involved.
func TestBrowserCommand(t *testing.T) {
	const u = "http://127.0.0.1:8470/login?x=1&y=2"
	for env, want := range map[string][]string{
		"firefox":              {"firefox", u},
		"firefox --new-window": {"firefox", "--new-window", u},
		"open -a Safari %s":    {"open", "-a", "Safari", u},
		":chromium:firefox":    {"chromium", u},
		"sh -c 'rm -rf /' %s":  {"sh", "-c", "'rm", "-rf", "/'", u}, // words, not a shell line
		"":                     nil,
		"  ":                   nil,
	} {
		if got := browserCommand(env, u); !slices.Equal(got, want) {
			t.Errorf("BROWSER=%q: %q, want %q", env, got, want)
		}
	}
}
