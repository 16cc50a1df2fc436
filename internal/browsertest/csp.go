package browsertest

import (
	"fmt"
	"strings"
	"testing"
)

// CSPViolation is one Content-Security-Policy violation that the browser reported for a page
// of a Context. The browser reports each violation twice, once per source, and both are kept:
// a violation that one source misses still fails the test.
type CSPViolation struct {
	// Source is where the report came from: "audits" (a structured DevTools issue) or "log"
	// (the console message the browser prints, "Refused to ...").
	Source string
	// Directive is the violated directive, such as "script-src-elem" (audits only).
	Directive string
	// Kind is what was blocked: kInlineViolation, kURLViolation, kEvalViolation, ... (audits
	// only).
	Kind string
	// BlockedURL is the resource that was refused, when the violation was a URL.
	BlockedURL string
	// Where is the document or script, with line and column, that did it, when known.
	Where string
	// ReportOnly is true for a violation of a report-only policy (nothing was blocked).
	ReportOnly bool
	// Message is the browser's console message (log only).
	Message string
}

func (v CSPViolation) String() string {
	if v.Source == "log" {
		return fmt.Sprintf("console: %s (at %s)", v.Message, v.Where)
	}
	s := fmt.Sprintf("%s violates %q", v.Kind, v.Directive)
	if v.BlockedURL != "" {
		s += " blocking " + v.BlockedURL
	}
	if v.ReportOnly {
		s += " (report-only)"
	}
	return s + " at " + v.Where
}

// CSPViolations returns every CSP violation the pages of c have raised since c was opened,
// after a round trip to the page: what the page reported before that has arrived.
func CSPViolations(t testing.TB, c *Context) []CSPViolation {
	t.Helper()
	settle(t, c)
	c.events.mu.Lock()
	defer c.events.mu.Unlock()
	return append([]CSPViolation(nil), c.events.csp...)
}

// NoCSPViolations fails the test, listing them, if any page of c raised a
// Content-Security-Policy violation, report-only ones included.
func NoCSPViolations(t testing.TB, c *Context) {
	t.Helper()
	vs := CSPViolations(t, c)
	if len(vs) == 0 {
		return
	}
	var b strings.Builder
	for _, v := range vs {
		b.WriteString("\n  " + v.String())
	}
	t.Errorf("the page raised %d Content-Security-Policy violation reports (fix the page, not the policy):%s", len(vs), b.String())
}
