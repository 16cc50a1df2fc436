package devop

import (
	"net/url"
	"testing"
)

func TestRedirectAllowed(t *testing.T) {
	c := &client{Client: Client{ID: "c", RedirectURIs: []string{
		"http://127.0.0.1/callback",
		"http://[::1]:9000/cb?x=1",
		"https://rampart.example/oidc/callback",
		"http://rampart.internal/callback",
	}}}
	for _, tc := range []struct {
		uri  string
		want bool
	}{
		{"http://127.0.0.1/callback", true},
		{"http://127.0.0.1:53682/callback", true},       // RFC 8252: any port on loopback
		{"http://[::1]:1234/cb?x=1", true},              // IPv6 loopback, same query
		{"https://rampart.example/oidc/callback", true}, // exact
		{"http://rampart.internal/callback", true},      // exact; not loopback, so no other port
		{"http://rampart.internal:8080/callback", false},
		{"https://rampart.example:8443/oidc/callback", false},
		{"http://127.0.0.1:53682/callback/", false},
		{"http://127.0.0.1:53682/other", false},
		{"http://127.0.0.1:53682/callback?x=1", false},
		{"http://127.0.0.1:53682/callback#frag", false},
		{"http://localhost:53682/callback", false}, // a different host than registered
		{"https://127.0.0.1:53682/callback", false},
		{"http://127.0.0.1:80@evil.example/callback", false},
		{"http://evil.example@127.0.0.1:80/callback", false},
		{"http://127.0.0.1:abc/callback", false},
		{"http://[::1]:1234/cb", false},
		{"", false},
	} {
		if got := c.redirectAllowed(tc.uri); got != tc.want {
			t.Errorf("redirectAllowed(%q) = %v, want %v", tc.uri, got, tc.want)
		}
	}
}

func FuzzRedirectAllowed(f *testing.F) {
	f.Add("http://127.0.0.1:1/callback")
	f.Add("http://127.0.0.1:80@evil.example/callback")
	c := &client{Client: Client{RedirectURIs: []string{"http://127.0.0.1/callback"}}}
	f.Fuzz(func(t *testing.T, uri string) {
		if !c.redirectAllowed(uri) {
			return
		}
		// Whatever is allowed goes to the registered loopback host and path.
		if !isLoopbackRedirectTo(uri, "127.0.0.1", "/callback") {
			t.Fatalf("allowed %q", uri)
		}
	})
}

func isLoopbackRedirectTo(uri, host, path string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "http" && u.Hostname() == host && u.Path == path && u.User == nil
}
