package browsertest

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/audits"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// pageLog collects what the pages of one Context report: CSP violations and errors. Its
// listen runs on the goroutine that reads the tab's messages, in their order of arrival, so it
// only appends under its lock.
type pageLog struct {
	mu   sync.Mutex
	csp  []CSPViolation
	errs []PageError
}

func (l *pageLog) listen(ev any) {
	var v *CSPViolation
	var e *PageError
	switch ev := ev.(type) {
	case *audits.EventIssueAdded:
		v = auditViolation(ev.Issue)
	case *log.EventEntryAdded:
		if ev.Entry == nil {
			return
		}
		if strings.Contains(ev.Entry.Text, "Content Security Policy") {
			v = &CSPViolation{Source: "log", Message: ev.Entry.Text, Where: fmt.Sprintf("%s:%d", ev.Entry.URL, ev.Entry.LineNumber+1)}
		} else if ev.Entry.Level == log.EntryLevelError && !favicon(ev.Entry.URL) {
			e = &PageError{Kind: "log " + string(ev.Entry.Source), Text: ev.Entry.Text, Where: ev.Entry.URL}
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		if d == nil {
			return
		}
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		e = &PageError{Kind: "exception", Text: text, Where: fmt.Sprintf("%s:%d:%d", d.URL, d.LineNumber+1, d.ColumnNumber+1)}
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a == nil {
				continue
			}
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
		}
		e = &PageError{Kind: "console." + string(ev.Type), Text: strings.Join(parts, " ")}
		if st := ev.StackTrace; st != nil && len(st.CallFrames) > 0 {
			f := st.CallFrames[0]
			e.Where = fmt.Sprintf("%s:%d:%d", f.URL, f.LineNumber+1, f.ColumnNumber+1)
		}
	}
	if v == nil && e == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v != nil {
		l.csp = append(l.csp, *v)
	}
	if e != nil {
		l.errs = append(l.errs, *e)
	}
}

// favicon reports whether url is a site's /favicon.ico, which the browser asks for by itself
// (at a time of its choosing): its absence is not the page's error.
func favicon(url string) bool {
	u, err := neturl.Parse(url)
	return err == nil && u.Path == "/favicon.ico"
}

func auditViolation(issue *audits.InspectorIssue) *CSPViolation {
	if issue == nil || issue.Code != audits.InspectorIssueCodeContentSecurityPolicyIssue ||
		issue.Details == nil || issue.Details.ContentSecurityPolicyIssueDetails == nil {
		return nil
	}
	d := issue.Details.ContentSecurityPolicyIssueDetails
	v := &CSPViolation{
		Source:     "audits",
		Directive:  d.ViolatedDirective,
		Kind:       string(d.ContentSecurityPolicyViolationType),
		BlockedURL: d.BlockedURL,
		ReportOnly: d.IsReportOnly,
	}
	if loc := d.SourceCodeLocation; loc != nil {
		v.Where = fmt.Sprintf("%s:%d:%d", loc.URL, loc.LineNumber+1, loc.ColumnNumber+1)
	}
	return v
}

// settle makes a round trip to the page, so that what the page reported before it has been
// collected: the browser sends the events before the answer, and they are read in order.
func settle(t testing.TB, c *Context) {
	t.Helper()
	within(t, c, "wait for the page's pending events", func(ctx context.Context) error {
		return chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`0`))
	})
}

// PageError is an error a page of a Context raised: an uncaught exception or unhandled
// rejection, a console.error or failed console.assert, or an error the browser logged (a
// resource that failed to load, a 4xx or 5xx answer included; not the /favicon.ico that the
// browser asks for by itself).
type PageError struct {
	// Kind is "exception", "console.error", "console.assert" or "log SOURCE" (such as "log
	// network").
	Kind string
	// Text is the message, with the exception's stack when there is one.
	Text string
	// Where is the script or resource, with line and column when known.
	Where string
}

func (e PageError) String() string { return e.Kind + ": " + e.Text + " (at " + e.Where + ")" }

// PageErrors returns every error the pages of c have raised since c was opened, after a round
// trip to the page.
func PageErrors(t testing.TB, c *Context) []PageError {
	t.Helper()
	settle(t, c)
	c.events.mu.Lock()
	defer c.events.mu.Unlock()
	return append([]PageError(nil), c.events.errs...)
}

// NoPageErrors fails the test, listing them, if any page of c raised an error (see
// PageError): a console page's script must not throw, and its pages must not link to files
// that fail to load. A context that opens an error page on purpose (a 403, a 404) logs that
// answer as an error too, so check the contexts that should see none.
func NoPageErrors(t testing.TB, c *Context) {
	t.Helper()
	errs := PageErrors(t, c)
	if len(errs) == 0 {
		return
	}
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  " + e.String())
	}
	t.Errorf("the page raised %d errors:%s", len(errs), b.String())
}
