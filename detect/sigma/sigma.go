// Package sigma converts Sigma detection rules (https://sigmahq.io, YAML) into Rampart's
// DetectionRule policy documents, through a field mapping from Sigma field names to the fields of
// the detection event (docs/detection-sigma.md).
//
// Conversion is offline: `rampart detect sigma RULE.yml...` prints DetectionRule YAML that is
// reviewed and committed to the policy repository like any other policy (invariant 10), so what
// runs is what reviewers read. The server never reads Sigma.
//
// Supported: detection maps (field: value, field: [values] as or, a list of maps as or), keyword
// lists (matched against the mapping's keywords field), the modifiers contains, startswith,
// endswith, all, re (with i, m, s), cased, exists, cidr (IPv4), gt, gte, lt, lte; conditions with
// and, or, not, parentheses, 1 of / all of a search or a pattern, 1 of / all of them; and
// timeframe with count() [by field] > N (a threshold), count(field) (distinct values) and
// sum(field). Anything else — another modifier, another aggregation, a correlation or multi-part
// rule, an unmapped field or logsource — is refused with the file, line, column and what to do:
// a construct is never dropped, since a dropped clause makes a rule fire on more, or on nothing.
//
// Values become CEL string literals with every quote, backslash and non-printable character
// escaped (see lit), so a Sigma value can never inject CEL; regular expressions are checked with
// RE2 first. Matching follows Sigma: text is case-insensitive unless |cased.
//
// The condition grammar is parsed by github.com/bradleyjkemp/sigma-go (its AST is translated
// here); the rest of the rule is decoded here from the YAML nodes, so every error has a position
// and values keep the text they were written with.
package sigma

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"rampart.dev/rampart/internal/strictyaml"
)

// File is one Sigma rule file: its name (for messages) and content.
type File struct {
	Name string
	Data []byte
}

// Rule is one converted rule: a DetectionRule document (apiVersion rampart.dev/v1alpha1), ready
// to marshal as YAML.
type Rule struct {
	APIVersion string   `yaml:"apiVersion" json:"apiVersion"`
	Kind       string   `yaml:"kind" json:"kind"`
	Metadata   Metadata `yaml:"metadata" json:"metadata"`
	Spec       Spec     `yaml:"spec" json:"spec"`

	// Source names the Sigma file and rule id it came from (written as a comment).
	Source string `yaml:"-" json:"-"`
}

// Metadata is a converted rule's metadata.
type Metadata struct {
	Name string `yaml:"name" json:"name"`
}

// Spec is a converted rule's spec, in the DetectionRule kind's field names.
type Spec struct {
	Description string     `yaml:"description,omitempty" json:"description,omitempty"`
	Severity    string     `yaml:"severity" json:"severity"`
	Mitre       []string   `yaml:"mitre,omitempty" json:"mitre,omitempty"`
	Condition   string     `yaml:"condition" json:"condition"`
	GroupBy     []string   `yaml:"group_by,omitempty" json:"group_by,omitempty"`
	Threshold   *Threshold `yaml:"threshold,omitempty" json:"threshold,omitempty"`
}

// Threshold is a converted count()/sum() aggregation.
type Threshold struct {
	Count    int    `yaml:"count,omitempty" json:"count,omitempty"`
	Sum      string `yaml:"sum,omitempty" json:"sum,omitempty"`
	Over     int64  `yaml:"over,omitempty" json:"over,omitempty"`
	Distinct string `yaml:"distinct,omitempty" json:"distinct,omitempty"`
	Window   string `yaml:"window" json:"window"`
}

// Limits on input; a Sigma rule is small, and anything larger is a mistake or an attack.
const (
	MaxFileSize = 1 << 20
	// MaxConditionLen bounds a converted condition: the policy loader refuses longer CEL.
	MaxConditionLen = 4096
	maxDescription  = 1000
	maxThreshold    = 1_000_000_000
)

// converter holds one file's conversion state and errors.
type converter struct {
	file string
	m    Mapping
	errs strictyaml.Errors
}

func (c *converter) errorf(n *yaml.Node, format string, args ...any) {
	e := &strictyaml.Error{File: c.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	c.errs = append(c.errs, e)
}

// Convert converts Sigma rule files with mapping m. It converts every rule it can and returns
// all errors (strictyaml.Errors: file:line:col: message) with the rules that did convert; a
// caller that prints rules should print none when err is not nil.
func Convert(files []File, m Mapping) ([]Rule, error) {
	var rules []Rule
	var errs strictyaml.Errors
	seen := map[string]string{}
	for _, f := range files {
		c := &converter{file: f.Name, m: m}
		rs := c.convertFile(f.Data)
		for _, r := range rs {
			if prev, dup := seen[r.Metadata.Name]; dup {
				c.errorf(nil, "rule %q has the same name as the rule from %s (names come from titles); change one title", r.Metadata.Name, prev)
				continue
			}
			seen[r.Metadata.Name] = f.Name
			rules = append(rules, r)
		}
		errs = append(errs, c.errs...)
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].Metadata.Name < rules[j].Metadata.Name })
	if len(errs) == 0 && len(rules) > 0 {
		if _, err := Load(rules); err != nil {
			return nil, fmt.Errorf("the converted rules do not load (a bug in the converter; please report it with the Sigma rule): %w", err)
		}
	}
	return rules, errs.Err()
}

func (c *converter) convertFile(data []byte) []Rule {
	if len(data) > MaxFileSize {
		c.errorf(nil, "the file is %d bytes; the limit is %d", len(data), MaxFileSize)
		return nil
	}
	docs, err := strictyaml.SplitDocuments(c.file, data)
	if err != nil {
		var se *strictyaml.Error
		if errors.As(err, &se) {
			c.errs = append(c.errs, se)
		} else {
			c.errorf(nil, "%v", err)
		}
		return nil
	}
	if len(docs) == 0 {
		c.errorf(nil, "the file holds no Sigma rule")
		return nil
	}
	var out []Rule
	for _, d := range docs {
		if r, ok := c.rule(d); ok {
			out = append(out, r)
		}
	}
	return out
}

// rule converts one YAML document holding a Sigma rule.
func (c *converter) rule(doc *yaml.Node) (Rule, bool) {
	if doc.Kind != yaml.MappingNode {
		c.errorf(doc, "a Sigma rule is a map (title, logsource, detection, …), not a %s", nodeKind(doc))
		return Rule{}, false
	}
	if bad := findAlias(doc); bad != nil {
		c.errorf(bad, "YAML anchors and aliases are not supported in Sigma rules here; write the value out")
		return Rule{}, false
	}
	top := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		top[doc.Content[i].Value] = doc.Content[i+1]
		keys[doc.Content[i].Value] = doc.Content[i]
	}
	for _, k := range []string{"action", "correlation"} {
		if n, ok := keys[k]; ok {
			c.errorf(n, "%s: multi-part (action: global) and correlation rules are not supported; write one self-contained rule per document", k)
			return Rule{}, false
		}
	}
	if t, ok := top["type"]; ok && t.Value == "correlation" {
		c.errorf(t, "correlation rules are not supported; express the correlation as a DetectionRule threshold or sequence")
		return Rule{}, false
	}
	title := scalar(top["title"])
	if strings.TrimSpace(title) == "" {
		c.errorf(doc, "title is required: it names the converted rule")
		return Rule{}, false
	}
	r := Rule{APIVersion: "rampart.dev/v1alpha1", Kind: "DetectionRule"}
	r.Metadata.Name = ruleName(title)
	if r.Metadata.Name == "" {
		c.errorf(keys["title"], "title %q has no letters or digits to name the rule after", title)
		return Rule{}, false
	}
	id := scalar(top["id"])
	r.Source = path.Base(c.file)
	if idPattern.MatchString(id) {
		r.Source += " (Sigma id " + id + ")"
	}
	desc := strings.TrimSpace(title)
	if d := strings.TrimSpace(scalar(top["description"])); d != "" {
		desc += ": " + d
	}
	r.Spec.Description = oneLine(desc, maxDescription)
	r.Spec.Severity = c.severity(top["level"])
	r.Spec.Mitre = mitre(top["tags"])

	logCond, ok := c.logsource(top["logsource"])
	if !ok {
		return Rule{}, false
	}
	det, ok := top["detection"]
	if !ok || det.Kind != yaml.MappingNode {
		c.errorf(doc, "detection is required: a map of searches and a condition")
		return Rule{}, false
	}
	cond, agg, window, ok := c.detection(det)
	if !ok {
		return Rule{}, false
	}
	if logCond != "" {
		cond = logCond + " && " + cond
	}
	if len(cond) > MaxConditionLen {
		c.errorf(det, "the detection converts to %d characters of CEL; the limit is %d; split the rule into several", len(cond), MaxConditionLen)
		return Rule{}, false
	}
	r.Spec.Condition = cond
	if agg != nil {
		if !c.aggregate(&r, det, agg, window) {
			return Rule{}, false
		}
	} else {
		// A Sigma rule without an aggregation detects each matching event. The engine keeps a
		// rule quiet for a key once it fired (dedup); keyed by the actor, each subject gets its
		// own alert, and one subject cannot flood the ledger with one alert per event.
		r.Spec.GroupBy = []string{"actor"}
	}
	return r, true
}

var idPattern = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// ruleName makes a policy name (lowercase letters, digits, '-', at most 63) from a title.
func ruleName(title string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(title) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		cut := max
		for cut > 0 && !isRuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func isRuneStart(b byte) bool { return b&0xc0 != 0x80 }

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return n
	}
	for _, ch := range n.Content {
		if bad := findAlias(ch); bad != nil {
			return bad
		}
	}
	return nil
}

var levels = map[string]string{
	"informational": "informational", "low": "low", "medium": "medium", "high": "high", "critical": "critical",
}

// severity maps a Sigma level (the same five names); a rule without one is medium.
func (c *converter) severity(n *yaml.Node) string {
	if n == nil {
		return "medium"
	}
	if s, ok := levels[strings.ToLower(n.Value)]; ok {
		return s
	}
	c.errorf(n, "level %q is not one of informational, low, medium, high, critical", n.Value)
	return "medium"
}

var techniqueTag = regexp.MustCompile(`^attack\.t([0-9]{4})(\.([0-9]{3}))?$`)

// mitre returns the ATT&CK technique ids of attack.tNNNN[.NNN] tags (tactics and other tags are
// metadata Rampart does not use).
func mitre(n *yaml.Node) []string {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	var out []string
	for _, t := range n.Content {
		m := techniqueTag.FindStringSubmatch(strings.ToLower(t.Value))
		if m == nil {
			continue
		}
		id := "T" + m[1]
		if m[3] != "" {
			id += "." + m[3]
		}
		if !contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// logsource checks the rule's logsource and returns the CEL it adds (a code prefix for a mapped
// service or category).
func (c *converter) logsource(n *yaml.Node) (string, bool) {
	if n == nil {
		return "", true
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "logsource is a map (product, service, category)")
		return "", false
	}
	var conds []string
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "product":
			if !contains(c.m.Products, strings.ToLower(v.Value)) {
				c.errorf(v, "logsource product %q is not one Rampart has (accepted: %s); the rule was written for other logs — map the product in the mapping file's products if its events are Rampart's", v.Value, strings.Join(c.m.Products, ", "))
				ok = false
			}
		case "service", "category":
			table := c.m.Services
			if k.Value == "category" {
				table = c.m.Categories
			}
			prefix, found := table[strings.ToLower(v.Value)]
			if !found {
				c.errorf(v, "logsource %s %q is not mapped (known: %s); add it to the mapping file's %s as %s: <event code prefix>", k.Value, v.Value, strings.Join(sortedKeys(table), ", "), k.Value+"s", v.Value)
				ok = false
				continue
			}
			if prefix != "" {
				conds = append(conds, "event.code.startsWith("+lit(prefix)+")")
			}
		case "definition":
		default:
			c.errorf(k, "logsource %s is not supported (product, service, category)", k.Value)
			ok = false
		}
	}
	return strings.Join(conds, " && "), ok
}

// Marshal writes rules as a stream of YAML documents, each after a comment naming its source.
func Marshal(rules []Rule) ([]byte, error) {
	var b strings.Builder
	for i, r := range rules {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# Converted from Sigma %s by rampart detect sigma; convert again rather than editing.\n", oneLine(strconvQuoteIfNeeded(r.Source), 300))
		out, err := yaml.Marshal(r)
		if err != nil {
			return nil, err
		}
		b.Write(out)
	}
	return []byte(b.String()), nil
}

// strconvQuoteIfNeeded keeps a comment on one printable line whatever the file name holds.
func strconvQuoteIfNeeded(s string) string {
	q := strconv.QuoteToASCII(s)
	if q[1:len(q)-1] == s {
		return s
	}
	return q
}
