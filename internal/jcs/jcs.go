// Package jcs writes JSON in the canonical form of RFC 8785 (the JSON Canonicalization Scheme):
// object members sorted by the UTF-16 code units of their names, numbers as ECMAScript spells
// them, strings with the minimal escaping JSON.stringify uses, no insignificant white space. Two
// parties that canonicalize the same data get the same bytes, which is what makes the ledger's
// entries hashable by anyone (invariant 5).
//
// It is strict where the RFC leaves a choice to the implementation, and fails rather than
// writing something that is not what was meant:
//
//   - invalid UTF-8 in a string is refused (encoding/json would silently write U+FFFD), and so
//     is a lone UTF-16 surrogate written as an escape;
//   - an object with two members of the same name is refused (I-JSON, RFC 7493);
//   - an integer written without fraction or exponent, beyond 2^53, whose canonical spelling
//     would differ from it (2^53 + 1, most int64 values beyond 2^53) is refused: whoever reads
//     the canonical form would read another number;
//   - nesting deeper than MaxDepth is refused.
//
// Errors say where, as a path of member names and array indexes ("unmapped.tally.steps[0]").
package jcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 200

// maxSafeInteger is 2^53: every integer up to it is exactly a double; beyond, few are.
const maxSafeInteger = 1 << 53

// Error is a value that has no canonical form, and where it is.
type Error struct {
	Path   string // "" for the top level
	Reason string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "canonical JSON: " + e.Reason
	}
	return fmt.Sprintf("canonical JSON: at %s: %s", e.Path, e.Reason)
}

// ErrInvalidUTF8 is wrapped by the error for text that is not valid UTF-8.
var ErrInvalidUTF8 = errors.New("invalid UTF-8")

// Marshal returns the canonical JSON of v, which is first encoded as encoding/json encodes it
// (struct tags, MarshalJSON and all). Strings holding invalid UTF-8 are refused.
func Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// encoding/json writes the escape \ufffd exactly where its input had invalid UTF-8 (a valid
	// U+FFFD is written as itself), so refusing that escape refuses invalid input.
	return canonicalize(b, true)
}

// Canonicalize returns the canonical form of the JSON text b.
func Canonicalize(b []byte) ([]byte, error) {
	return canonicalize(b, false)
}

func canonicalize(b []byte, fromGo bool) ([]byte, error) {
	p := &parser{in: b, fromGo: fromGo}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.pos != len(p.in) {
		return nil, p.fail("data after the JSON value")
	}
	out := make([]byte, 0, len(b))
	return v.append(out), nil
}

// value is a parsed JSON value, ready to be written canonically.
type value interface {
	append([]byte) []byte
}

type literal string // true, false, null, or a number already in canonical form

func (l literal) append(b []byte) []byte { return append(b, l...) }

type str string

func (s str) append(b []byte) []byte { return AppendString(b, string(s)) }

type array []value

func (a array) append(b []byte) []byte {
	b = append(b, '[')
	for i, v := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = v.append(b)
	}
	return append(b, ']')
}

type member struct {
	name  string
	key   []uint16 // name in UTF-16 code units: the sort key
	value value
}

type object []member

func (o object) append(b []byte) []byte {
	b = append(b, '{')
	for i, m := range o {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, m.name)
		b = append(b, ':')
		b = m.value.append(b)
	}
	return append(b, '}')
}

type parser struct {
	in     []byte
	pos    int
	fromGo bool
	path   []string
}

func (p *parser) fail(format string, args ...any) error {
	return &Error{Path: strings.Join(p.path, ""), Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) ws() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) (value, error) {
	if p.pos >= len(p.in) {
		return nil, p.fail("unexpected end of input")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		if depth >= MaxDepth {
			return nil, p.fail("nested deeper than %d", MaxDepth)
		}
		return p.object(depth + 1)
	case c == '[':
		if depth >= MaxDepth {
			return nil, p.fail("nested deeper than %d", MaxDepth)
		}
		return p.array(depth + 1)
	case c == '"':
		s, err := p.string()
		return str(s), err
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(p.in[p.pos:], []byte(lit)) {
				p.pos += len(lit)
				return literal(lit), nil
			}
		}
		return nil, p.fail("unexpected character %q at byte %d", c, p.pos)
	}
}

func (p *parser) object(depth int) (value, error) {
	p.pos++ // {
	var o object
	p.ws()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		return o, nil
	}
	for {
		p.ws()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return nil, p.fail("expected a member name at byte %d", p.pos)
		}
		name, err := p.string()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return nil, p.fail("expected ':' after member name %q", name)
		}
		p.pos++
		p.ws()
		p.path = append(p.path, pathName(name, len(p.path) == 0))
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		o = append(o, member{name: name, key: utf16.Encode([]rune(name)), value: v})
		p.ws()
		if p.pos >= len(p.in) {
			return nil, p.fail("unterminated object")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] != '}' {
			return nil, p.fail("expected ',' or '}' at byte %d", p.pos)
		}
		p.pos++
		break
	}
	slices.SortFunc(o, func(a, b member) int { return slices.Compare(a.key, b.key) })
	for i := 1; i < len(o); i++ {
		if o[i].name == o[i-1].name {
			return nil, p.fail("member %q appears twice", o[i].name)
		}
	}
	return o, nil
}

func pathName(name string, top bool) string {
	if top {
		return name
	}
	return "." + name
}

func (p *parser) array(depth int) (value, error) {
	p.pos++ // [
	a := array{}
	p.ws()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		return a, nil
	}
	for {
		p.ws()
		p.path = append(p.path, "["+strconv.Itoa(len(a))+"]")
		v, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		a = append(a, v)
		p.ws()
		if p.pos >= len(p.in) {
			return nil, p.fail("unterminated array")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] != ']' {
			return nil, p.fail("expected ',' or ']' at byte %d", p.pos)
		}
		p.pos++
		return a, nil
	}
}

// string reads a string token, decoding its escapes.
func (p *parser) string() (string, error) {
	p.pos++ // "
	var sb strings.Builder
	for {
		if p.pos >= len(p.in) {
			return "", p.fail("unterminated string")
		}
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			return sb.String(), nil
		case c == '\\':
			if err := p.escape(&sb); err != nil {
				return "", err
			}
		case c < 0x20:
			return "", p.fail("control character %#02x in a string must be escaped", c)
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.in[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", fmt.Errorf("%w: %w", p.fail("byte %#02x is not valid UTF-8", c), ErrInvalidUTF8)
			}
			sb.Write(p.in[p.pos : p.pos+size])
			p.pos += size
		}
	}
}

func (p *parser) escape(sb *strings.Builder) error {
	if p.pos+1 >= len(p.in) {
		return p.fail("unterminated escape")
	}
	e := p.in[p.pos+1]
	p.pos += 2
	switch e {
	case '"', '\\', '/':
		sb.WriteByte(e)
	case 'b':
		sb.WriteByte('\b')
	case 'f':
		sb.WriteByte('\f')
	case 'n':
		sb.WriteByte('\n')
	case 'r':
		sb.WriteByte('\r')
	case 't':
		sb.WriteByte('\t')
	case 'u':
		r, err := p.hex4()
		if err != nil {
			return err
		}
		switch {
		case r == utf8.RuneError && p.fromGo:
			return fmt.Errorf("%w: %w", p.fail("the text holds invalid UTF-8 (refused, not replaced by U+FFFD)"), ErrInvalidUTF8)
		case utf16.IsSurrogate(r):
			if r >= 0xdc00 || p.pos+1 >= len(p.in) || p.in[p.pos] != '\\' || p.in[p.pos+1] != 'u' {
				return fmt.Errorf("%w: %w", p.fail("lone UTF-16 surrogate \\u%04x", r), ErrInvalidUTF8)
			}
			p.pos += 2
			lo, err := p.hex4()
			if err != nil {
				return err
			}
			pair := utf16.DecodeRune(r, lo)
			if pair == utf8.RuneError {
				return fmt.Errorf("%w: %w", p.fail("lone UTF-16 surrogate \\u%04x", r), ErrInvalidUTF8)
			}
			sb.WriteRune(pair)
		default:
			sb.WriteRune(r)
		}
	default:
		return p.fail("unknown escape \\%c", e)
	}
	return nil
}

func (p *parser) hex4() (rune, error) {
	if p.pos+4 > len(p.in) {
		return 0, p.fail("short \\u escape")
	}
	n, err := strconv.ParseUint(string(p.in[p.pos:p.pos+4]), 16, 16)
	if err != nil {
		return 0, p.fail("bad \\u escape %q", p.in[p.pos:p.pos+4])
	}
	p.pos += 4
	return rune(n), nil
}

// number reads a number token and returns it in canonical form.
func (p *parser) number() (value, error) {
	start := p.pos
	integer := true
	if p.in[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	intStart := p.pos
	if n := digits(); n == 0 || (n > 1 && p.in[intStart] == '0') {
		return nil, p.fail("malformed number %q", p.in[start:p.pos])
	}
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		integer = false
		p.pos++
		if digits() == 0 {
			return nil, p.fail("malformed number %q", p.in[start:p.pos])
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		integer = false
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.fail("malformed number %q", p.in[start:p.pos])
		}
	}
	text := string(p.in[start:p.pos])
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, p.fail("number %s is out of the range of a double", text)
	}
	if canon := FormatNumber(f); integer && math.Abs(f) >= maxSafeInteger && canon != strings.TrimPrefix(text, "+") {
		return nil, p.fail("integer %s would be read back as %s (beyond 2^53 a double keeps about 16 digits); write it as a string", text, canon)
	}
	return literal(FormatNumber(f)), nil
}

// FormatNumber spells a finite double as ECMAScript's Number.prototype.toString does (RFC 8785
// section 3.2.2.3): the shortest digits that round-trip, in positional notation from 1e-6 up to
// 1e21 and in exponent notation ("1e+21", "1.5e-7") outside. Negative zero is "0".
func FormatNumber(f float64) string {
	if f == 0 {
		return "0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	// strconv's shortest round-trip digits are the digits ECMAScript chooses.
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1 // value = 0.digits × 10^n
	var s string
	switch {
	case k <= n && n <= 21:
		s = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		s = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		s = "0." + strings.Repeat("0", -n) + digits
	default:
		es := "+"
		if n-1 < 0 {
			es = "-"
		}
		s = digits[:1]
		if k > 1 {
			s += "." + digits[1:]
		}
		s += "e" + es + strconv.Itoa(abs(n-1))
	}
	return sign + s
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// AppendString appends s as a JSON string the way RFC 8785 section 3.2.2.2 writes it: '"' and
// '\' escaped with a backslash, the control characters U+0000 to U+001F as \b, \t, \n, \f, \r or
// \u00xx (lowercase hex), everything else as itself. s must be valid UTF-8.
func AppendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
