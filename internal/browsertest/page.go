package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Open loads url in c's tab, waits until the page has loaded and, unless sel is empty, until
// an element matching the CSS selector sel is visible, and returns the HTTP status of the
// document.
func Open(t testing.TB, c *Context, url, sel string) int {
	t.Helper()
	var status int64
	within(t, c, "open "+url, func(ctx context.Context) error {
		resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
		if err != nil {
			return err
		}
		status = resp.Status
		if sel == "" {
			return nil
		}
		return chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)))
	})
	return int(status)
}

// find is a JavaScript function that returns the visible elements that what names. For
// kind "field": the controls of the labels whose text is what, and the elements whose
// aria-label is what. For kind "action": the buttons and links whose text, value or aria-label
// is what. Either way, when no element is named so, the elements that match what as a CSS
// selector. Text is compared with its white space collapsed and trimmed.
const find = `(what, kind) => {
  const norm = s => (s || '').replace(/\s+/g, ' ').trim();
  const shown = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  let found = [];
  if (kind === 'field') {
    for (const l of document.querySelectorAll('label')) if (l.control && norm(l.textContent) === what) found.push(l.control);
  } else {
    for (const e of document.querySelectorAll('button, a[href], input[type=submit], input[type=button], input[type=reset], [role=button], summary')) {
      if (norm(e.tagName === 'INPUT' ? e.value : e.textContent) === what) found.push(e);
    }
  }
  for (const e of document.querySelectorAll('[aria-label]')) if (norm(e.getAttribute('aria-label')) === what) found.push(e);
  found = [...new Set(found)].filter(shown);
  if (found.length === 0) {
    try { found = [...document.querySelectorAll(what)].filter(shown); } catch (e) {}
  }
  return found;
}`

// resolve waits until a visible element is named what (see find), and returns its node. More
// than one is a failure at once, not a guess: a test that approves must click the one request
// it means.
func resolve(ctx context.Context, c *Context, kind, what string) (cdp.NodeID, error) {
	q, _ := json.Marshal(what)
	expr := "(" + find + ")(" + string(q) + ", '" + kind + "')"
	for {
		ids, err := chromedp.Run(ctx, chromedp.QueryNodeIDs(chromedp.JSPath(expr), chromedp.AtLeast(0)))
		if err == nil && len(ids) == 1 {
			return ids[0], nil
		}
		if err == nil && len(ids) > 1 {
			return 0, fmt.Errorf("%d visible elements on %s are named %q; name the one you mean (a more specific CSS selector)", len(ids), locationOf(c), what)
		}
		select {
		case <-ctx.Done():
			if kind == "field" {
				return 0, fmt.Errorf("no visible field labelled %q, nor one matching it as a CSS selector, on %s", what, locationOf(c))
			}
			return 0, fmt.Errorf("no visible button or link named %q, nor an element matching it as a CSS selector, on %s", what, locationOf(c))
		case <-time.After(20 * time.Millisecond): // a poll interval; the deadline is the limit
		}
	}
}

// Fill sets the field that field names to value: field is the text of the field's label, its
// aria-label, or else a CSS selector. An input or textarea is cleared and typed into (so the
// page sees the key events); for a select, value is the text or the value of the option to
// choose.
func Fill(t testing.TB, c *Context, field, value string) {
	t.Helper()
	within(t, c, fmt.Sprintf("fill %q with %q", field, value), func(ctx context.Context) error {
		id, err := resolve(ctx, c, "field", field)
		if err != nil {
			return err
		}
		node := chromedp.NodeIDs{id}
		tag, err := chromedp.Run(ctx, chromedp.JavascriptAttribute[string](node, "tagName"))
		if err != nil {
			return err
		}
		if tag == "SELECT" {
			obj, err := chromedp.Call(ctx, dom.ResolveNode, dom.ResolveNodeParams{NodeID: id})
			if err != nil {
				return err
			}
			on := func(p *runtime.CallFunctionOnParams) { p.ObjectID = obj.Object.ObjectID }
			ok, err := chromedp.Run(ctx, chromedp.CallFunctionOn[bool](`function(v) {
  for (const o of this.options) if (o.value === v || o.text.replace(/\s+/g, ' ').trim() === v) {
    this.value = o.value;
    this.dispatchEvent(new Event('input', {bubbles: true}));
    this.dispatchEvent(new Event('change', {bubbles: true}));
    return true;
  }
  return false;
}`, on, value))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("the select %q has no option %q", field, value)
			}
			return nil
		}
		// Cleared by the page's own rules (chromedp.Clear refuses an empty textarea, which has no
		// text node), then typed into.
		obj, err := chromedp.Call(ctx, dom.ResolveNode, dom.ResolveNodeParams{NodeID: id})
		if err != nil {
			return err
		}
		on := func(p *runtime.CallFunctionOnParams) { p.ObjectID = obj.Object.ObjectID }
		if _, err := chromedp.Run(ctx, chromedp.CallFunctionOn[bool](`function() { this.value = ''; this.dispatchEvent(new Event('input', {bubbles: true})); return true; }`, on)); err != nil {
			return err
		}
		return chromedp.Do(ctx, chromedp.SendKeys(node, value))
	})
}

// Click clicks, with the mouse, the button or link named what (its text, value or aria-label,
// or else a CSS selector). It does not wait for what the click causes: Submit does.
func Click(t testing.TB, c *Context, what string) {
	t.Helper()
	within(t, c, fmt.Sprintf("click %q", what), func(ctx context.Context) error {
		id, err := resolve(ctx, c, "action", what)
		if err != nil {
			return err
		}
		return chromedp.Do(ctx, chromedp.Click(chromedp.NodeIDs{id}))
	})
}

// Submit clicks the button or link named what, as Click does, waits until the page it leads
// to has loaded (after any redirects), and returns that document's HTTP status.
func Submit(t testing.TB, c *Context, what string) int {
	t.Helper()
	var status int64
	within(t, c, fmt.Sprintf("submit with %q and wait for the next page", what), func(ctx context.Context) error {
		id, err := resolve(ctx, c, "action", what)
		if err != nil {
			return err
		}
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.NodeIDs{id}))
		if err != nil {
			return err
		}
		status = resp.Status
		return nil
	})
	return int(status)
}

// Text waits until an element matching the CSS selector sel is visible and returns its text
// as the page shows it (innerText).
func Text(t testing.TB, c *Context, sel string) string {
	t.Helper()
	var s string
	within(t, c, "read the text of "+sel, func(ctx context.Context) (err error) {
		s, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		return err
	})
	return s
}

// WaitText waits until the text of the first element matching the CSS selector sel contains
// want, across reloads and navigations of the page (as when the requester's page shows a
// grant once it is approved), and fails the test with the last text seen otherwise.
func WaitText(t testing.TB, c *Context, sel, want string) {
	t.Helper()
	q, _ := json.Marshal(sel)
	expr := `(() => { const e = document.querySelector(` + string(q) + `); return e ? e.innerText : null; })()`
	ctx, cancel := context.WithTimeout(c, c.limit())
	defer cancel()
	var last *string
	for {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[*string](expr))
		if err == nil {
			if got != nil && strings.Contains(*got, want) {
				return
			}
			last = got
		}
		select {
		case <-ctx.Done():
			seen := "no element matched it"
			if last != nil {
				seen = fmt.Sprintf("its text was %q", *last)
			}
			t.Fatalf("%s on %s never contained %q within %v (the failure limit); %s", sel, locationOf(c), want, c.limit(), seen)
		case <-time.After(50 * time.Millisecond): // a poll interval; the deadline is the limit
		}
	}
}

// Screenshot saves a PNG of the whole page c shows now (beyond the window, to its end) at
// path, creating its directory.
func Screenshot(t testing.TB, c *Context, path string) {
	t.Helper()
	var png []byte
	within(t, c, "take a screenshot", func(ctx context.Context) (err error) {
		png, err = chromedp.Run(ctx, chromedp.FullScreenshot(100))
		return err
	})
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// URL returns the address of the page c shows now.
func URL(t testing.TB, c *Context) string {
	t.Helper()
	return location(t, c)
}

func location(t testing.TB, c *Context) string {
	t.Helper()
	var u string
	within(t, c, "read the page's address", func(ctx context.Context) (err error) {
		u, err = chromedp.Run(ctx, chromedp.Location())
		return err
	})
	return u
}

// locationOf is the page's address for an error message, or a placeholder if the browser
// does not say (the error being reported may be that it does not answer).
func locationOf(c *Context) string {
	ctx, cancel := context.WithTimeout(c, 5*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "the page (its address unknown: " + err.Error() + ")"
	}
	return u
}

// Cookies returns the cookies c's browser context holds for url, with their flags (HttpOnly,
// Secure, SameSite), as the browser stored them.
func Cookies(t testing.TB, c *Context, url string) []*network.Cookie {
	t.Helper()
	var cookies []*network.Cookie
	within(t, c, "read the cookies for "+url, func(ctx context.Context) error {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
		cookies = res.Cookies
		return err
	})
	return cookies
}

// Phone makes c's tab a phone's screen (390×844 CSS pixels, a mobile viewport with touch)
// until Laptop; the pages it opens next are laid out for it.
func Phone(t testing.TB, c *Context) {
	t.Helper()
	within(t, c, "emulate a phone's screen", func(ctx context.Context) error {
		return chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	})
}

// Laptop gives c's tab the default laptop screen (ViewportWidth×ViewportHeight) again.
func Laptop(t testing.TB, c *Context) {
	t.Helper()
	within(t, c, "emulate a laptop's screen", func(ctx context.Context) error {
		return chromedp.Do(ctx, chromedp.EmulateViewport(ViewportWidth, ViewportHeight))
	})
}

// CrossSite returns rawURL with its loopback host swapped (127.0.0.1 for localhost and back),
// which makes it another site for the browser: SameSite cookies of the one are not sent from
// a page of the other. Two ports of one host are two origins but one site, whose SameSite
// cookies are sent: a CSRF test that serves its attacker page there tests the CSRF token
// alone; one that serves it at CrossSite(url) tests SameSite as well.
func CrossSite(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := neturl.Parse(rawURL)
	if err != nil {
		t.Fatalf("CrossSite(%q): %v", rawURL, err)
	}
	switch u.Hostname() {
	case "127.0.0.1":
		u.Host = "localhost:" + u.Port()
	case "localhost":
		u.Host = "127.0.0.1:" + u.Port()
	default:
		t.Fatalf("CrossSite(%q): the host is neither 127.0.0.1 nor localhost", rawURL)
	}
	return u.String()
}
