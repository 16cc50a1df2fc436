package sigma

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file turns one Sigma field match into CEL. Every value from a Sigma rule reaches CEL only
// through lit, as a string literal in which every byte outside printable ASCII, every quote and
// every backslash is escaped: a value can hold anything and still be one constant, never code.
// Values used as regular expressions are checked with Go's RE2 (the engine CEL uses) first.

// lit returns s as a CEL string literal. s must be valid UTF-8 (callers check).
func lit(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// piece is one part of a Sigma value: literal text, or a wildcard ('*' any run, '?' one
// character).
type piece struct {
	text string
	wild byte
}

// wildcards splits a Sigma value on its unescaped wildcards. Sigma's escapes: \* and \? are the
// characters themselves, \\ is one backslash, and a backslash before anything else is itself.
func wildcards(v string) []piece {
	var out []piece
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, piece{text: cur.String()})
			cur.Reset()
		}
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && (v[i+1] == '*' || v[i+1] == '?' || v[i+1] == '\\'):
			cur.WriteByte(v[i+1])
			i++
		case c == '*' || c == '?':
			flush()
			out = append(out, piece{wild: c})
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

// foldLower maps each character of s to the lowercase form a lowercase field could hold and
// that case-insensitive matching (simple folding, as RE2's (?i)) would equate with it: the ASCII
// letter of its folding orbit when it has one (so the Kelvin sign and the long s become k and
// s), else its lowercase.
func foldLower(s string) string {
	return strings.Map(func(r rune) rune {
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f >= 'a' && f <= 'z' {
				return f
			}
		}
		if r >= 'a' && r <= 'z' {
			return r
		}
		return unicode.ToLower(r)
	}, s)
}

// caseless reports whether case-insensitive matching of s is the same as exact matching: no
// character of s has another case (in the sense of RE2's (?i), simple case folding).
func caseless(s string) bool {
	for _, r := range s {
		if unicode.SimpleFold(r) != r {
			return false
		}
	}
	return true
}

// strOp is how a value is compared with a text field.
type strOp int

const (
	opEqual strOp = iota
	opContains
	opPrefix
	opSuffix
)

// textMatch is the CEL (over the string expression t) for one value: exact or wildcard match as
// op says, case-insensitive unless cased. lower says t only ever holds lowercase ASCII.
func textMatch(t string, lower, cased bool, op strOp, v string) string {
	ps := wildcards(v)
	switch op {
	case opContains:
		ps = append(append([]piece{{wild: '*'}}, ps...), piece{wild: '*'})
	case opPrefix:
		ps = append(ps, piece{wild: '*'})
	case opSuffix:
		ps = append([]piece{{wild: '*'}}, ps...)
	}
	fold := !cased
	if fold && lower {
		// The field holds lowercase ASCII only: a value with other letters cannot match it
		// case-insensitively unless lowering it makes it lowercase ASCII too.
		for i := range ps {
			ps[i].text = foldLower(ps[i].text)
		}
		fold = false
	}
	if fold {
		fold = false
		for _, p := range ps {
			if !caseless(p.text) {
				fold = true
			}
		}
	}
	// Collapse runs of '*' (they mean the same) so "**x**" is a plain contains.
	ps = collapseStars(ps)
	if !fold {
		if s, ok := plain(t, ps); ok {
			return s
		}
	}
	return t + ".matches(" + lit(globRegexp(ps, fold)) + ")"
}

func collapseStars(ps []piece) []piece {
	out := ps[:0:0]
	for _, p := range ps {
		if p.wild == '*' && len(out) > 0 && out[len(out)-1].wild == '*' {
			continue
		}
		out = append(out, p)
	}
	return out
}

// plain returns the exact-case CEL for pieces that need no regular expression: a literal,
// optionally with one '*' before and/or after it.
func plain(t string, ps []piece) (string, bool) {
	starBefore := len(ps) > 0 && ps[0].wild == '*'
	if starBefore {
		ps = ps[1:]
	}
	starAfter := len(ps) > 0 && ps[len(ps)-1].wild == '*'
	if starAfter {
		ps = ps[:len(ps)-1]
	}
	switch {
	case len(ps) == 0 && (starBefore || starAfter):
		return "true", true // '*' matches every value, the empty one too
	case len(ps) == 0:
		return t + ` == ""`, true
	case len(ps) > 1 || ps[0].wild != 0:
		return "", false
	}
	l := lit(ps[0].text)
	switch {
	case starBefore && starAfter:
		return t + ".contains(" + l + ")", true
	case starBefore:
		return t + ".endsWith(" + l + ")", true
	case starAfter:
		return t + ".startsWith(" + l + ")", true
	}
	return t + " == " + l, true
}

// globRegexp is the RE2 expression matching the whole of a value against pieces. A leading or
// trailing '*' leaves that end unanchored instead of writing ".*" (the same language, and RE2
// need not backtrack over it).
func globRegexp(ps []piece, fold bool) string {
	var b strings.Builder
	b.WriteString("(?s")
	if fold {
		b.WriteString("i")
	}
	b.WriteString(")")
	end := "$"
	if len(ps) > 0 && ps[len(ps)-1].wild == '*' {
		ps, end = ps[:len(ps)-1], ""
	}
	if len(ps) > 0 && ps[0].wild == '*' {
		ps = ps[1:]
	} else {
		b.WriteString("^")
	}
	for _, p := range ps {
		switch p.wild {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(p.text))
		}
	}
	b.WriteString(end)
	return b.String()
}

// userRegexp is the CEL for a Sigma |re value (flags from |re|i, |re|m, |re|s).
func userRegexp(t, re, flags string) (string, error) {
	if flags != "" {
		re = "(?" + flags + ")" + re
	}
	if _, err := regexp.Compile(re); err != nil {
		return "", fmt.Errorf("the regular expression does not compile in RE2 (Go's syntax, which CEL uses; no lookaround or backreferences): %v", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	return t + ".matches(" + lit(re) + ")", nil
}

// cidrMatch is the CEL matching a dotted-quad IPv4 address in prefix p, as an RE2 expression
// (CEL has no address type): whole octets literally, the partial octet as the list of its values.
func cidrMatch(t, v string) (string, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return "", fmt.Errorf("%q is not a CIDR prefix such as 10.0.0.0/8: %v", v, err)
	}
	if !p.Addr().Is4() {
		return "", fmt.Errorf("%q: only IPv4 prefixes are supported by |cidr; match IPv6 addresses with |startswith on their canonical text", v)
	}
	p = p.Masked()
	o := p.Addr().As4()
	bits := p.Bits()
	parts := make([]string, 4)
	for i := range 4 {
		switch {
		case bits >= 8*(i+1):
			parts[i] = strconv.Itoa(int(o[i]))
		case bits > 8*i:
			keep := bits - 8*i
			lo := int(o[i])
			hi := lo | (0xff >> keep)
			alts := make([]string, 0, hi-lo+1)
			for n := lo; n <= hi; n++ {
				alts = append(alts, strconv.Itoa(n))
			}
			parts[i] = "(?:" + strings.Join(alts, "|") + ")"
		default:
			parts[i] = "[0-9]{1,3}"
		}
	}
	return t + ".matches(" + lit("^"+strings.Join(parts, `\.`)+"$") + ")", nil
}

// validText reports whether a value can become a CEL literal.
func validText(s string) bool { return utf8.ValidString(s) }
