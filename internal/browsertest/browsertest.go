// Package browsertest drives a real headless Chromium for the web console's tests: one browser
// per test (Start), an isolated browser context per person (NewContext: alice, bob and dave
// each have their own cookies), short steps (Open, Fill, Click, Submit, Text, WaitText,
// Cookies, Phone, Screenshot), and checks that fail a test with what a reviewer needs to see —
// every Content-Security-Policy violation a page raised (NoCSPViolations), every script error
// and failed load (NoPageErrors), and axe-core's serious and critical accessibility violations
// (NoSeriousA11y). It talks to the browser over the Chrome DevTools Protocol
// (github.com/chromedp/chromedp), so everything it injects or collects works under the
// console's strict CSP: a DevTools evaluation is not page script.
//
// A missing Chromium or axe-core skips the test, or fails it under
// RAMPART_REQUIRE_INTEGRATION=1 (see internal/testenv); scripts/browser.sh installs both, and
// scripts/test.sh runs it. Every wait is bounded by Timeout, a failure limit on a busy machine,
// never a delay: nothing here sleeps for a duration that assumes an idle one.
//
//	b := browsertest.Start(t)
//	alice := browsertest.NewContext(t, b)
//	browsertest.Open(t, alice, srv.URL+"/request", "form")
//	browsertest.Fill(t, alice, "Reason", "debug the eval job")
//	browsertest.Submit(t, alice, "Request access")
//	browsertest.WaitText(t, alice, "main", "pending")
//	browsertest.NoCSPViolations(t, alice)
//	browsertest.NoPageErrors(t, alice)
//	browsertest.NoSeriousA11y(t, alice)
//	browsertest.Screenshot(t, alice, "../../docs/console/request.png")
//
// A *Context is a context.Context of chromedp, so any chromedp action runs on it directly:
// chromedp.Run(alice, chromedp.Title()).
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/audits"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"rampart.dev/rampart/internal/testenv"
)

// Timeout bounds every wait of this package, the browser's start included. It is a failure
// limit, generous for two busy CI cores; a passing test waits only as long as the page takes.
// A Context's Timeout field overrides it for the waits on that context.
const Timeout = 60 * time.Second

// Viewport is the window size of every context: a laptop screen, which is also the size of the
// screenshots. A test of the phone layout sets its own with chromedp.EmulateViewport.
const (
	ViewportWidth  = 1280
	ViewportHeight = 800
)

const install = "run ./scripts/browser.sh install (Debian chromium and npm axe-core), or ./scripts/test.sh, which does"

// Chromium returns the browser executable the tests run: RAMPART_CHROMIUM (which
// scripts/browser.sh exports), else chromium on PATH. Without one, the test skips, or fails under
// RAMPART_REQUIRE_INTEGRATION=1.
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RAMPART_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			testenv.Missing(t, "Chromium (RAMPART_CHROMIUM="+p+": "+err.Error()+")", install)
		}
		return p
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Missing(t, "Chromium (no chromium on PATH, RAMPART_CHROMIUM unset)", install)
	}
	return p
}

// Browser is one headless Chromium process, started for one test and stopped when it ends.
type Browser struct {
	ctx context.Context // the chromedp context of the browser's first tab
	out *testenv.Tail

	// StartTime is how long the browser took from exec to answering its first command.
	StartTime time.Duration
}

// Start starts a headless Chromium for this test, with its own temporary profile, and stops
// it when the test ends. chromedp makes the profile (--user-data-dir) under the temporary
// directory and removes it once every process of that browser has ended: it kills the
// children that outlive the main process, which a t.TempDir removal could race. It runs with
// --no-sandbox: the tests run as root in CI, where Chromium's sandbox cannot start, and they
// load only the test's own pages.
func Start(t testing.TB) *Browser {
	t.Helper()
	exe := Chromium(t)
	b := &Browser{out: &testenv.Tail{}}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.WindowSize(ViewportWidth, ViewportHeight),
		chromedp.CombinedOutput(b.out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()      // stops the browser: this is its first context
		cancelAlloc() // and waits for its processes to exit and its profile to be removed
		if t.Failed() {
			t.Logf("Chromium's output (last 64 KiB):\n%s", b.out.String())
		}
	})
	begin := time.Now()
	// The first run starts the browser and binds its life to ctx, so it cannot run under a
	// timeout context: wait for it with the failure limit beside it instead.
	if err := first(ctx, cancel, func() error { return chromedp.Do(ctx) }); err != nil {
		t.Fatalf("start Chromium (%s): %v\nits output:\n%s", exe, err, b.out.String())
	}
	b.StartTime = time.Since(begin)
	b.ctx = ctx
	return b
}

// first runs the first chromedp call of a context, which must get that context itself (the
// browser or tab lives as long as the context of its first run), bounded by Timeout: past it,
// the context is canceled and the call's error returned.
func first(ctx context.Context, cancel context.CancelFunc, run func() error) error {
	done := make(chan error, 1)
	go func() { done <- run() }()
	timer := time.NewTimer(Timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		cancel()
		return fmt.Errorf("no answer within %v (the failure limit): %w", Timeout, <-done)
	case <-ctx.Done():
		return <-done
	}
}

// Context is a browser context with one tab: its own cookies, storage and cache, as a
// separate person's browser would have. It is a chromedp context.Context, so chromedp actions
// run on it directly. It records every CSP violation and every error its pages raise. Use it
// from one goroutine at a time (its actions share one tab).
type Context struct {
	context.Context
	events *pageLog

	// Timeout, when not zero, replaces the package's Timeout for the waits on this context
	// (a test that expects a wait to fail shortens it).
	Timeout time.Duration
}

func (c *Context) limit() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return Timeout
}

// NewContext opens a new isolated browser context of b, with a tab, for this test; it is
// closed when the test ends.
func NewContext(t testing.TB, b *Browser) *Context {
	t.Helper()
	events := &pageLog{}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext(), chromedp.WithListener(events.listen))
	t.Cleanup(cancel)
	c := &Context{Context: ctx, events: events}
	err := first(ctx, cancel, func() error {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(ViewportWidth, ViewportHeight)); err != nil {
			return err
		}
		// The Audits domain reports each CSP violation as a structured issue (the Log domain,
		// which chromedp enables, reports it as a console message).
		_, err := chromedp.Call(ctx, audits.Enable, cdp.Empty{})
		return err
	})
	if err != nil {
		t.Fatalf("open a browser context: %v\nChromium's output:\n%s", err, b.out.String())
	}
	return c
}

// within runs f with a context that ends after Timeout, and fails the test with what was being
// done if f fails.
func within(t testing.TB, c *Context, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(c, c.limit())
	defer cancel()
	if err := f(ctx); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("%s: not done within %v (the failure limit): %v", what, c.limit(), err)
		}
		t.Fatalf("%s: %v", what, err)
	}
}
