package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/browsertest"
)

// browserSignIn signs user in, in c, through the console's real flow: the console sends the
// browser to /login, the development provider's form, the callback page, and home.
func browserSignIn(t *testing.T, e *env, c *browsertest.Context, user string) {
	t.Helper()
	browsertest.Open(t, c, e.base+"/", "form")
	browsertest.Fill(t, c, "[name=username]", user)
	browsertest.Fill(t, c, "[name=password]", user)
	browsertest.Submit(t, c, "Sign in")
	browsertest.WaitText(t, c, "h1", "Home")
	browsertest.WaitText(t, c, "header", user)
}

// shot saves a screenshot of c's page as docs/console/<name>.png when
// RAMPART_CONSOLE_SCREENSHOTS names the folder (how docs/console.md's pictures are made).
func shot(t *testing.T, c *browsertest.Context, name string) {
	t.Helper()
	if dir := os.Getenv("RAMPART_CONSOLE_SCREENSHOTS"); dir != "" {
		browsertest.Screenshot(t, c, filepath.Join(dir, name+".png"))
	}
}

// TestConsoleInTheBrowser drives the console in headless Chromium against a real server: alice
// asks for a role that needs two approvers, bob and dave approve in their own browser contexts,
// and alice's open page shows the grant by itself. Every page is checked with axe-core (no
// serious or critical violation), on a laptop and a phone, and no page raises a CSP violation
// or a script error.
func TestConsoleInTheBrowser(t *testing.T) {
	e := start(t)
	b := browsertest.Start(t)
	alice, bob, dave, erin := browsertest.NewContext(t, b), browsertest.NewContext(t, b), browsertest.NewContext(t, b), browsertest.NewContext(t, b)
	for user, c := range map[string]*browsertest.Context{"alice": alice, "bob": bob, "dave": dave, "erin": erin} {
		browserSignIn(t, e, c, user)
	}
	for _, ck := range browsertest.Cookies(t, alice, e.base) {
		if strings.HasPrefix(ck.Name, "rampart_") && (!ck.HTTPOnly || ck.SameSite != "Strict") {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %q", ck.Name, ck.HTTPOnly, ck.SameSite)
		}
	}

	// Alice finds the role through the catalogue's suggestion and files the request.
	browsertest.Open(t, alice, e.base+"/request", "form")
	browsertest.NoSeriousA11y(t, alice)
	browsertest.Fill(t, alice, "What do you need to do, or which resource?", "read the frontier-7 weihgts")
	browsertest.Submit(t, alice, "Search")
	browsertest.WaitText(t, alice, "main", "weights-reader-frontier-7")
	browsertest.NoSeriousA11y(t, alice)
	shot(t, alice, "request-search")
	browsertest.Open(t, alice, e.base+"/request?role=weights-reader-frontier-7", "textarea")
	browsertest.WaitText(t, alice, "main", "Who will approve")
	browsertest.NoSeriousA11y(t, alice)
	browsertest.Fill(t, alice, "#reason", "eval run 4411 on the held-out suite")
	browsertest.Fill(t, alice, "#duration", "2h")
	shot(t, alice, "request-form")
	browsertest.Submit(t, alice, "File the request")
	browsertest.WaitText(t, alice, "main", "Approvals")
	u := browsertest.URL(t, alice)
	id := strings.TrimPrefix(strings.SplitN(u, "?", 2)[0], e.base+"/requests/")
	if !strings.HasPrefix(id, "req_") {
		t.Fatalf("alice is on %s, not a request's page", u)
	}
	browsertest.NoSeriousA11y(t, alice)

	// Bob finds it in his inbox and approves it.
	browsertest.Open(t, bob, e.base+"/reviews", "main")
	browsertest.WaitText(t, bob, "main", "alice asks for weights-reader-frontier-7")
	browsertest.NoSeriousA11y(t, bob)
	shot(t, bob, "reviews")
	browsertest.Open(t, bob, e.base+"/requests/"+id, "form.review")
	browsertest.NoSeriousA11y(t, bob)
	shot(t, bob, "review")
	browsertest.Fill(t, bob, "#comment-a", "owner ok")
	browsertest.Submit(t, bob, "Approve")
	browsertest.WaitText(t, bob, "main", "Your approval was recorded")

	// Dave approves last; alice's open page must show the grant within 2 s, by itself.
	browsertest.Open(t, dave, e.base+"/requests/"+id, "form.review")
	browsertest.Fill(t, dave, "#comment-a", "security ok")
	browsertest.Click(t, dave, "Approve")
	t0 := time.Now()
	browsertest.WaitText(t, alice, "main", "Access granted")
	shown := time.Since(t0)
	t.Logf("last approval clicked → the requester's open page shows the grant: %s", shown.Round(time.Millisecond))
	if shown > 2*time.Second {
		t.Errorf("the grant appeared on alice's page %s after the last approval (target < 2 s)", shown)
	}
	browsertest.WaitText(t, dave, "main", "Your approval was recorded")
	shot(t, alice, "request-granted")
	v, err := e.in.Access.Get(context.Background(), id, "alice")
	if err != nil || v.Request.State != access.Approved || v.Grant == nil {
		t.Fatalf("the request is %+v, %v", v.Request, err)
	}

	// Every page, as each person sees it, on a laptop and on a phone.
	pages := map[*browsertest.Context][]string{
		alice: {"/", "/grants", "/grants/" + v.Grant.ID, "/requests"},
		erin:  {"/grants?all=1", "/audit", "/audit?event=request.*", "/admin", "/requests?scope=all", "/requests/" + id},
	}
	names := map[string]string{"/": "home", "/audit": "audit", "/admin": "admin"}
	for c, paths := range pages {
		for _, p := range paths {
			browsertest.Laptop(t, c)
			if st := browsertest.Open(t, c, e.base+p, "main h1"); st != http.StatusOK {
				t.Fatalf("GET %s: %d", p, st)
			}
			browsertest.NoSeriousA11y(t, c)
			if n := names[p]; n != "" {
				shot(t, c, n)
			}
			browsertest.Phone(t, c)
			browsertest.Open(t, c, e.base+p, "main h1")
			browsertest.NoSeriousA11y(t, c)
			if p == "/" {
				shot(t, c, "home-phone")
			}
		}
		browsertest.Laptop(t, c)
	}
	for _, c := range []*browsertest.Context{alice, bob, dave, erin} {
		browsertest.NoCSPViolations(t, c)
		browsertest.NoPageErrors(t, c)
	}
}

// TestCrossSitePageCannotApprove: a page on another site, and a page on another origin of the
// same site (which the SameSite cookie does reach), post an approval form with bob signed in in
// the same browser; neither is recorded.
func TestCrossSitePageCannotApprove(t *testing.T) {
	e := start(t)
	alice := e.signIn("alice")
	id := alice.file("weights-reader-frontier-7", "cross-site target")
	b := browsertest.Start(t)
	bob := browsertest.NewContext(t, b)
	browserSignIn(t, e, bob, "bob")

	// The attacker's page posts itself on load (its own server: no CSP of ours applies).
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><title>win a prize</title><body>
<form id="f" method="post" action="%s/requests/%s/approve"><input name="comment" value="pwned"><input name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script></body></html>`, e.base, id)
	}))
	defer evil.Close()
	for _, attacker := range []string{browsertest.CrossSite(t, evil.URL), evil.URL} {
		browsertest.Open(t, bob, attacker, "")
		// The form posts itself; the console's answer replaces the attacker's page.
		browsertest.WaitText(t, bob, "main", "Nothing was changed")
	}
	v, err := e.in.Access.Get(context.Background(), id, "alice")
	if err != nil || len(v.Reviews) != 0 || v.Request.State != access.Pending {
		t.Fatalf("a cross-site page changed the request: %+v %v", v, err)
	}
	// A GET of the action's address changes nothing either.
	browsertest.Open(t, bob, e.base+"/requests/"+id+"/approve?csrf=x&comment=get", "")
	if v, _ := e.in.Access.Get(context.Background(), id, "alice"); len(v.Reviews) != 0 {
		t.Fatalf("a GET approved: %+v", v.Reviews)
	}
}
