package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"rampart.dev/rampart/internal/testenv"
)

// AxeVersion is the axe-core release that scripts/browser.sh installs (pinned).
const AxeVersion = "4.14.1"

// AxeTags are the rule sets Axe runs: WCAG 2.0, 2.1 and 2.2, levels A and AA.
var AxeTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"}

// AxeJS is where scripts/browser.sh installs axe.min.js: RAMPART_AXE_JS, or
// ${XDG_CACHE_HOME:-$HOME/.cache}/rampart/axe-core-VERSION/node_modules/axe-core/axe.min.js,
// outside any clone.
func AxeJS() string {
	if p := os.Getenv("RAMPART_AXE_JS"); p != "" {
		return p
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "rampart", "axe-core-"+AxeVersion, "node_modules", "axe-core", "axe.min.js")
}

var axeSource struct {
	once sync.Once
	js   string
	err  error
}

// Violation is one axe-core rule that the page fails, with the elements that fail it.
type Violation struct {
	ID          string          `json:"id"`     // the rule, such as "color-contrast"
	Impact      string          `json:"impact"` // minor, moderate, serious or critical
	Help        string          `json:"help"`
	HelpURL     string          `json:"helpUrl"`
	Description string          `json:"description"`
	Nodes       []ViolationNode `json:"nodes"`
}

// ViolationNode is one element that fails a rule.
type ViolationNode struct {
	// Target is the element's CSS selector; inside an iframe or a shadow root, one selector per
	// level joined by " >>> ".
	Target string `json:"target"`
	// HTML is the start of the element's markup.
	HTML string `json:"html"`
	// Summary is axe's explanation of what to fix.
	Summary string `json:"summary"`
}

// Serious reports whether the violation's impact is serious or critical.
func (v Violation) Serious() bool { return v.Impact == "serious" || v.Impact == "critical" }

// axeRun runs axe on the document and returns its violations in the shape of Violation.
// axe.run returns a promise, which the evaluation awaits.
const axeRun = `(async (tags) => {
  const r = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return r.violations.map(v => ({
    id: v.id, impact: v.impact || '', help: v.help, helpUrl: v.helpUrl, description: v.description,
    nodes: v.nodes.map(n => ({
      target: n.target.map(s => [].concat(s).join(' >>> ')).join(' >>> '),
      html: n.html, summary: n.failureSummary || '',
    })),
  }));
})`

// Axe runs axe-core (AxeJS, pinned to AxeVersion) with the WCAG 2 A and AA rules (AxeTags) on
// the page c shows now, and returns its violations, all impacts. axe is injected through
// DevTools, not as page script, so it runs under the page's strict CSP and raises no violation
// of it. Without an installed axe-core, the test skips, or fails under
// RAMPART_REQUIRE_INTEGRATION=1.
func Axe(t testing.TB, c *Context) []Violation {
	t.Helper()
	path := AxeJS()
	axeSource.once.Do(func() {
		b, err := os.ReadFile(path)
		axeSource.js, axeSource.err = string(b), err
	})
	if axeSource.err != nil {
		testenv.Missing(t, "axe-core "+AxeVersion+" ("+axeSource.err.Error()+")", install)
	}
	var vs []Violation
	within(t, c, "run axe-core", func(ctx context.Context) error {
		loaded, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof axe === 'object'`))
		if err != nil {
			return err
		}
		if !loaded {
			if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](axeSource.js)); err != nil {
				return err
			}
		}
		tags := `["` + strings.Join(AxeTags, `","`) + `"]`
		vs, err = chromedp.Run(ctx, chromedp.Evaluate[[]Violation](axeRun+`(`+tags+`)`, chromedp.EvalAwaitPromise))
		return err
	})
	return vs
}

// NoSeriousA11y runs Axe on the page c shows now and fails the test, listing each rule with
// its help text and the selectors of the elements that fail it, if any violation is serious or
// critical. Minor and moderate ones are logged.
func NoSeriousA11y(t testing.TB, c *Context) {
	t.Helper()
	var serious, other strings.Builder
	for _, v := range Axe(t, c) {
		b := &other
		if v.Serious() {
			b = &serious
		}
		b.WriteString("\n  " + v.Impact + " " + v.ID + ": " + v.Help + " (" + v.HelpURL + ")")
		for _, n := range v.Nodes {
			b.WriteString("\n    " + n.Target + "  " + n.HTML)
		}
	}
	url := location(t, c)
	if other.Len() > 0 {
		t.Logf("axe-core: minor or moderate accessibility violations on %s:%s", url, other.String())
	}
	if serious.Len() > 0 {
		t.Errorf("axe-core: serious accessibility violations on %s (WCAG 2 A/AA):%s", url, serious.String())
	}
}
