package egress_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Issue 12, item 6: every client hides the body of a refused CONNECT ("CONNECT tunnel failed,
// response 403"), so the reason and the next step are also in the status line's reason phrase
// (which Python's and Go's clients put in their error) and in headers (curl -v shows them); the
// deny-list refusal no longer says "nothing can open it" and then "request it".
func TestRefusalsSayWhyAndWhatToDo(t *testing.T) {
	echo := newEcho(t)
	p := echo.port()
	jit := "127.0.0.1:" + strconv.Itoa(p)
	pol := parsePolicy(t, `"denied.test"`, jitDocs(p))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	tok := r.token("alice")
	refusal := func(target, auth string) *http.Response {
		t.Helper()
		head := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
		if auth != "" {
			head += "Proxy-Authorization: Bearer " + auth + "\r\n"
		}
		c, br := r.sendHead(head + "\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatalf("CONNECT %s: %v", target, err)
		}
		return resp
	}
	type want struct {
		status     int
		has, hasnt []string
	}
	for _, c := range []struct {
		name, target, auth string
		want
	}{
		{"in the catalogue", jit, tok, want{403, []string{"rule: default-deny", "rampart request create --resource egress/" + jit + " --action connect"}, []string{"not in the catalogue"}}},
		{"not in the catalogue", "127.0.0.1:" + strconv.Itoa(p+1), tok, want{403, []string{"not in the catalogue", "Ask the security team to add 127.0.0.1:" + strconv.Itoa(p+1) + " to an EgressPolicy"}, []string{"request create"}}},
		{"deny list", "denied.test:443", tok, want{403, []string{"deny list", "Nothing can be requested", "take it off the deny list"}, []string{"request create", "ask the security team to add"}}},
		{"deny list, anonymous", "denied.test:443", "", want{403, []string{"deny list"}, []string{"Authenticate", "request create"}}},
		{"anonymous", jit, "", want{407, []string{"unidentified", "Authenticate first", "rampart request create --resource egress/" + jit}, nil}},
	} {
		resp := refusal(c.target, c.auth)
		next := resp.Header.Get("X-Rampart-Egress-Next")
		reason := resp.Header.Get("X-Rampart-Egress-Reason")
		body, _ := io.ReadAll(resp.Body)
		for _, where := range []struct{ name, text string }{{"status line", resp.Status}, {"headers", reason + ". " + next}, {"body", string(body)}} {
			for _, s := range c.has {
				if !strings.Contains(where.text, s) {
					t.Errorf("%s: the %s lacks %q: %q", c.name, where.name, s, where.text)
				}
			}
			for _, s := range c.hasnt {
				if strings.Contains(where.text, s) {
					t.Errorf("%s: the %s says %q: %q", c.name, where.name, s, where.text)
				}
			}
		}
		if n := strings.Count(resp.Status, "rampart request create"); n > 1 {
			t.Errorf("%s: the status line gives %d commands: %q", c.name, n, resp.Status)
		}
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Status, strconv.Itoa(c.status)+" Rampart egress: denied ") {
			t.Errorf("%s: status line %q, want %d with the reason", c.name, resp.Status, c.status)
		}
	}
	// Go's Transport puts the reason phrase of a refused CONNECT in its error.
	proxy, _ := url.Parse("http://rampart:" + tok + "@" + r.addr)
	_, err := (&http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}).Get("https://" + jit + "/")
	if err == nil || !strings.Contains(err.Error(), "rampart request create --resource egress/"+jit) {
		t.Fatalf("Go's client error: %v", err)
	}
}
