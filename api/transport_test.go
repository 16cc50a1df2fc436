package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"rampart.dev/rampart/api"
)

// A bare host:port means https unless the host is this machine, where rampart dev serves plain
// http. (docs/operations.md once showed `--addr rampart.example.com:8470` for a TLS server,
// which the CLI turned into http:// and so would have sent the token in clear.)
func TestBareAddressMeansHTTPSOffThisMachine(t *testing.T) {
	for addr, want := range map[string]string{
		"rampart.example.com:8470":     "https://rampart.example.com:8470",
		"rampart.example.com":          "https://rampart.example.com",
		"10.1.2.3:8470":                "https://10.1.2.3:8470",
		"[2001:db8::1]:8470":           "https://[2001:db8::1]:8470",
		"127.0.0.1:8470":               "http://127.0.0.1:8470",
		"127.8.9.10:8470":              "http://127.8.9.10:8470",
		"localhost:8470":               "http://localhost:8470",
		"[::1]:8470":                   "http://[::1]:8470",
		"https://rampart.example.com/": "https://rampart.example.com",
		"http://127.0.0.1:8470":        "http://127.0.0.1:8470",
	} {
		if got := api.NewClient(addr, "").BaseURL; got != want {
			t.Errorf("NewClient(%q).BaseURL = %q, want %q", addr, got, want)
		}
	}
}

// recorder is an http.RoundTripper that answers every request itself (no network) and remembers
// what it was asked, so a test can see what would have left the machine.
type recorder struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req)
	r.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: http.NoBody, Request: req}, nil
}

// The client refuses to send anything over plain http to another machine, whatever the address
// says: not the bearer token, not a refresh token, not a sign-in (whose answer is a session).
// Nothing is sent: the refusal comes before any connection.
func TestNoCredentialInClearToAnotherMachine(t *testing.T) {
	ctx := context.Background()
	for _, addr := range []string{"http://rampart.example.com:8470", "http://10.1.2.3:8470", "http://[2001:db8::1]:8470"} {
		rec := &recorder{}
		c := api.NewClient(addr, "rpt_secret")
		c.HTTP = &http.Client{Transport: rec}
		calls := map[string]func() error{
			"whoami": func() error { _, err := c.Whoami(ctx); return err },
			"refresh token": func() error {
				_, err := c.AuthToken(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rpr_x"}})
				return err
			},
			"device start": func() error { _, err := c.DeviceAuthorization(ctx); return err },
		}
		for name, call := range calls {
			err := call()
			if !errors.Is(err, api.ErrPlaintext) || !strings.Contains(err.Error(), "use https://") {
				t.Errorf("%s %s: %v, want a refusal saying to use https", addr, name, err)
			}
		}
		if len(rec.seen) != 0 {
			t.Errorf("%s: %d request(s) left in clear, the first with Authorization %q", addr, len(rec.seen), rec.seen[0].Header.Get("Authorization"))
		}
	}
}

// A redirect from the server to plain http elsewhere is refused too, before the token follows
// it (net/http keeps Authorization on a redirect to the same host under another scheme).
func TestNoRedirectToClearText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://rampart.example.com/v1/whoami", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	rec := &recorder{}
	c := api.NewClient(srv.URL, "rpt_secret")
	loopback := http.DefaultTransport
	c.HTTP = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == strings.TrimPrefix(srv.URL, "http://") {
			return loopback.RoundTrip(r)
		}
		return rec.RoundTrip(r)
	})}
	if _, err := c.Whoami(context.Background()); !errors.Is(err, api.ErrPlaintext) {
		t.Fatalf("redirected to plain http elsewhere: %v", err)
	}
	if len(rec.seen) != 0 {
		t.Fatalf("the redirect was followed in clear with Authorization %q", rec.seen[0].Header.Get("Authorization"))
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
