package scim

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of what a filter or path may be: a directory's queries are short; anything larger is
// refused before it is parsed.
const (
	maxFilterLen   = 4096
	maxFilterDepth = 32
)

// Filter is a parsed SCIM filter (RFC 7644 section 3.4.2.2), evaluated against a resource as a
// JSON object.
type Filter interface {
	// Match reports whether the resource (a JSON object) matches.
	Match(res map[string]any) bool
	// String is the filter in canonical form: lower-case operators, quoted strings.
	String() string
}

// AttrPath names an attribute: an optional schema URN, a name, an optional sub-attribute.
type AttrPath struct {
	URN  string // "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", or ""
	Name string
	Sub  string
}

func (p AttrPath) String() string {
	s := p.Name
	if p.URN != "" {
		s = p.URN + ":" + s
	}
	if p.Sub != "" {
		s += "." + p.Sub
	}
	return s
}

type (
	logical struct {
		and  bool
		l, r Filter
	}
	not     struct{ f Filter }
	present struct{ path AttrPath }
	compare struct {
		path  AttrPath
		op    string
		value any // string, float64, bool or nil
	}
	// valuePath is attr[filter] (a multi-valued attribute with an element matching), optionally
	// followed by .sub op value (an extension some directories send in filters).
	valuePath struct {
		path  AttrPath
		inner Filter
		sub   *compare
	}
)

func (f logical) Match(r map[string]any) bool {
	if f.and {
		return f.l.Match(r) && f.r.Match(r)
	}
	return f.l.Match(r) || f.r.Match(r)
}

func (f logical) String() string {
	op := " or "
	if f.and {
		op = " and "
	}
	return "(" + f.l.String() + op + f.r.String() + ")"
}

func (f not) Match(r map[string]any) bool { return !f.f.Match(r) }
func (f not) String() string              { return "not (" + f.f.String() + ")" }

func (f present) Match(r map[string]any) bool {
	for _, v := range values(r, f.path) {
		if v != nil && v != "" {
			if a, ok := v.([]any); ok && len(a) == 0 {
				continue
			}
			return true
		}
	}
	return false
}

func (f present) String() string { return f.path.String() + " pr" }

func (f compare) Match(r map[string]any) bool {
	exact := caseExact(f.path)
	for _, v := range values(r, f.path) {
		if compareOne(v, f.op, f.value, exact) {
			return true
		}
	}
	// ne over an absent attribute: nothing equals the value.
	return f.op == "ne" && len(values(r, f.path)) == 0
}

func (f compare) String() string { return f.path.String() + " " + f.op + " " + literal(f.value) }

func (f valuePath) Match(r map[string]any) bool {
	for _, el := range values(r, AttrPath{URN: f.path.URN, Name: f.path.Name}) {
		m, ok := el.(map[string]any)
		if !ok || !f.inner.Match(m) {
			continue
		}
		if f.sub == nil || f.sub.Match(m) {
			return true
		}
	}
	return false
}

func (f valuePath) String() string {
	s := AttrPath{URN: f.path.URN, Name: f.path.Name}.String() + "[" + f.inner.String() + "]"
	if f.sub != nil {
		s += "." + f.sub.String()
	}
	return s
}

func literal(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

// caseExact says whether an attribute compares case-sensitively (RFC 7643: id, externalId and
// references do; userName, displayName, emails and the rest do not).
func caseExact(p AttrPath) bool {
	n := strings.ToLower(p.Name)
	return p.Sub == "" && (n == "id" || n == "externalid") || strings.EqualFold(p.Sub, "$ref")
}

func compareOne(have any, op string, want any, exact bool) bool {
	switch h := have.(type) {
	case string:
		w, ok := want.(string)
		if !ok {
			return op == "ne"
		}
		if !exact {
			h, w = strings.ToLower(h), strings.ToLower(w)
		}
		switch op {
		case "eq":
			return h == w
		case "ne":
			return h != w
		case "co":
			return strings.Contains(h, w)
		case "sw":
			return strings.HasPrefix(h, w)
		case "ew":
			return strings.HasSuffix(h, w)
		case "gt":
			return h > w
		case "ge":
			return h >= w
		case "lt":
			return h < w
		case "le":
			return h <= w
		}
	case bool:
		w, ok := want.(bool)
		switch op {
		case "eq":
			return ok && h == w
		case "ne":
			return !ok || h != w
		}
	case float64:
		w, ok := want.(float64)
		if !ok {
			return op == "ne"
		}
		switch op {
		case "eq":
			return h == w
		case "ne":
			return h != w
		case "gt":
			return h > w
		case "ge":
			return h >= w
		case "lt":
			return h < w
		case "le":
			return h <= w
		}
	case nil:
		return (op == "eq" && want == nil) || (op == "ne" && want != nil)
	}
	return false
}

// values returns the values an attribute path reaches in r: a multi-valued attribute
// contributes each element (and a sub-attribute, each element's), so that a comparison matches
// when any does. Names compare without regard to case.
func values(r map[string]any, p AttrPath) []any {
	obj := r
	if p.URN != "" {
		ext, ok := lookup(r, p.URN).(map[string]any)
		if !ok {
			return nil
		}
		obj = ext
	}
	v := lookup(obj, p.Name)
	if v == nil {
		return nil
	}
	var tops []any
	if a, ok := v.([]any); ok {
		tops = a
	} else {
		tops = []any{v}
	}
	if p.Sub == "" {
		return tops
	}
	var out []any
	for _, t := range tops {
		if m, ok := t.(map[string]any); ok {
			if sv := lookup(m, p.Sub); sv != nil {
				out = append(out, sv)
			}
		}
	}
	return out
}

// lookup returns m's value for key, ignoring case (SCIM attribute names are case-insensitive).
func lookup(m map[string]any, key string) any {
	if v, ok := m[key]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// ParseFilter parses a filter. Errors say where the text went wrong.
func ParseFilter(s string) (Filter, error) {
	if len(s) > maxFilterLen {
		return nil, fmt.Errorf("the filter is %d bytes; at most %d are accepted", len(s), maxFilterLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("the filter is not valid UTF-8")
	}
	p := &parser{src: s}
	f, err := p.or(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.src) {
		return nil, p.errorf("unexpected %q after the filter", p.rest(12))
	}
	return f, nil
}

type parser struct {
	src string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) rest(n int) string {
	r := p.src[p.pos:]
	if len(r) > n {
		r = r[:n] + "…"
	}
	return r
}

func (p *parser) space() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t') {
		p.pos++
	}
}

// keyword consumes word (case-insensitively) if it comes next as a whole word.
func (p *parser) keyword(word string) bool {
	p.space()
	end := p.pos + len(word)
	if end > len(p.src) || !strings.EqualFold(p.src[p.pos:end], word) {
		return false
	}
	if end < len(p.src) && isNameByte(p.src[end]) {
		return false
	}
	p.pos = end
	return true
}

func (p *parser) expect(c byte) error {
	p.space()
	if p.pos >= len(p.src) || p.src[p.pos] != c {
		return p.errorf("expected %q, found %q", c, p.rest(12))
	}
	p.pos++
	return nil
}

func (p *parser) or(depth int) (Filter, error) {
	l, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		l = logical{and: false, l: l, r: r}
	}
	return l, nil
}

func (p *parser) and(depth int) (Filter, error) {
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		l = logical{and: true, l: l, r: r}
	}
	return l, nil
}

func (p *parser) unary(depth int) (Filter, error) {
	if depth > maxFilterDepth {
		return nil, p.errorf("the filter nests deeper than %d", maxFilterDepth)
	}
	p.space()
	if p.keyword("not") {
		if err := p.expect('('); err != nil {
			return nil, err
		}
		f, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		return not{f}, p.expect(')')
	}
	if p.pos < len(p.src) && p.src[p.pos] == '(' {
		p.pos++
		f, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		return f, p.expect(')')
	}
	path, err := p.attrPath()
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos < len(p.src) && p.src[p.pos] == '[' {
		if path.Sub != "" {
			return nil, p.errorf("a value filter follows an attribute, not a sub-attribute (%s)", path)
		}
		p.pos++
		inner, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if err := p.expect(']'); err != nil {
			return nil, err
		}
		vp := valuePath{path: path, inner: inner}
		if p.pos < len(p.src) && p.src[p.pos] == '.' {
			p.pos++
			sub, err := p.name()
			if err != nil {
				return nil, err
			}
			c, err := p.comparison(AttrPath{Name: sub})
			if err != nil {
				return nil, err
			}
			cc := c.(compare)
			vp.sub = &cc
		}
		return vp, nil
	}
	return p.comparison(path)
}

var operators = []string{"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"}

func (p *parser) comparison(path AttrPath) (Filter, error) {
	if p.keyword("pr") {
		return present{path}, nil
	}
	for _, op := range operators {
		if p.keyword(op) {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			return compare{path: path, op: op, value: v}, nil
		}
	}
	return nil, p.errorf("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after %s, found %q", path, p.rest(12))
}

func (p *parser) value() (any, error) {
	p.space()
	if p.pos >= len(p.src) {
		return nil, p.errorf("expected a value")
	}
	switch {
	case p.src[p.pos] == '"':
		return p.str()
	case p.keyword("true"):
		return true, nil
	case p.keyword("false"):
		return false, nil
	case p.keyword("null"):
		return nil, nil
	}
	start := p.pos
	for p.pos < len(p.src) && strings.IndexByte("+-0123456789.eE", p.src[p.pos]) >= 0 {
		p.pos++
	}
	f, err := strconv.ParseFloat(p.src[start:p.pos], 64)
	if err != nil || start == p.pos || math.IsInf(f, 0) || math.IsNaN(f) {
		p.pos = start
		return nil, p.errorf("expected a string in double quotes, a number, true, false or null, found %q", p.rest(12))
	}
	return f, nil
}

// str reads a JSON string literal.
func (p *parser) str() (string, error) {
	start := p.pos
	p.pos++
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\\':
			if p.pos+1 >= len(p.src) {
				return "", p.errorf("unfinished escape")
			}
			e := p.src[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if p.pos+4 > len(p.src) {
					return "", p.errorf("unfinished \\u escape")
				}
				n, err := strconv.ParseUint(p.src[p.pos:p.pos+4], 16, 16)
				if err != nil {
					return "", p.errorf("bad \\u escape %q", p.src[p.pos:p.pos+4])
				}
				b.WriteRune(rune(n))
				p.pos += 4
			default:
				return "", p.errorf("unknown escape \\%c", e)
			}
		case c < 0x20:
			return "", p.errorf("a control character in a string")
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	p.pos = start
	return "", p.errorf("unterminated string")
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c == '$' || c < 0x80 && (unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)))
}

func (p *parser) name() (string, error) {
	start := p.pos
	for p.pos < len(p.src) && isNameByte(p.src[p.pos]) {
		p.pos++
	}
	if start == p.pos {
		return "", p.errorf("expected an attribute name, found %q", p.rest(12))
	}
	n := p.src[start:p.pos]
	if c := n[0]; c >= '0' && c <= '9' || c == '-' {
		p.pos = start
		return "", p.errorf("an attribute name starts with a letter, found %q", p.rest(12))
	}
	return n, nil
}

// attrPath reads [URN ":"] name ["." sub].
func (p *parser) attrPath() (AttrPath, error) {
	p.space()
	var a AttrPath
	if len(p.src)-p.pos > 4 && strings.EqualFold(p.src[p.pos:p.pos+4], "urn:") {
		start := p.pos
		for p.pos < len(p.src) && (isNameByte(p.src[p.pos]) || p.src[p.pos] == ':' || p.src[p.pos] == '.') {
			p.pos++
		}
		full := p.src[start:p.pos]
		i := strings.LastIndexByte(full, ':')
		a.URN, full = full[:i], full[i+1:]
		if !strings.Contains(a.URN, ":") || strings.HasSuffix(a.URN, ":") || strings.Contains(a.URN, "::") {
			p.pos = start
			return a, p.errorf("%q is not a schema URN followed by :attribute", p.rest(40))
		}
		name, sub, _ := strings.Cut(full, ".")
		if name == "" || strings.Contains(sub, ".") || !validName(name) || (sub != "" && !validName(sub)) {
			p.pos = start
			return a, p.errorf("%q is not a schema URN followed by :attribute", p.rest(40))
		}
		a.Name, a.Sub = name, sub
		return a, nil
	}
	n, err := p.name()
	if err != nil {
		return a, err
	}
	a.Name = n
	if p.pos < len(p.src) && p.src[p.pos] == '.' {
		p.pos++
		if a.Sub, err = p.name(); err != nil {
			return a, err
		}
	}
	return a, nil
}

func validName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}
