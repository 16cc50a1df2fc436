// Package text is Rampart's one rule for the text people send it: reasons and comments, every
// string of every JSON body the API decodes, and every string of a policy file (invariant 7).
//
// Text that breaks the rule is refused with the offending character, its byte offset and why,
// never rewritten: a reason is stored, signed into the ledger and shown exactly as its author
// sent it, or not at all. The rule refuses what can make text say something other than what it
// shows, on a terminal or a web page:
//
//   - bytes that are not UTF-8, and U+FFFD, the replacement character (its presence means the
//     text was already damaged by a conversion before it reached Rampart; send the original);
//   - control characters: C0 (U+0000–U+001F) except tab, and line feed where line breaks are
//     allowed (Multiline: policy files); DEL (U+007F); C1 (U+0080–U+009F), which some terminals
//     obey as escape sequences; the line and paragraph separators U+2028 and U+2029;
//   - bidirectional controls, which reorder how a line is displayed ("Trojan Source",
//     CVE-2021-42574): the embeddings and overrides U+202A–U+202E, the isolates U+2066–U+2069,
//     and also the implicit marks U+200E, U+200F and U+061C (they reorder the neutral characters
//     around them, and plain text in any script displays correctly without them);
//   - every other invisible format character (Unicode category Cf: the zero-width space U+200B,
//     the word joiner U+2060, the byte order mark U+FEFF, soft hyphen U+00AD, the tag
//     characters U+E0000–U+E007F that can carry hidden ASCII, …) except the zero-width
//     non-joiner and joiner U+200C and U+200D, which Persian, the Indic scripts and emoji need
//     and which neither reorder nor hide text;
//   - variation selectors other than U+FE0E and U+FE0F (text and emoji presentation), and the
//     Hangul fillers U+115F, U+1160, U+3164 and U+FFA0: invisible characters that can carry a
//     hidden payload or make a reason look blank.
//
// Everything else is accepted: every script, combining marks, emoji, private-use characters.
//
// Escape renders text for a terminal with everything the rule refuses (and tabs and line
// breaks) visibly escaped, for entries recorded before the rule existed; EscapeJSON does the
// same inside JSON text without changing its meaning.
package text

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Lines says whether line breaks are allowed.
type Lines bool

// Line modes of Check.
const (
	// SingleLine allows tab as the only control character: reasons, comments, JSON strings.
	SingleLine Lines = false
	// Multiline also allows line feed (U+000A): the block scalars of policy files.
	Multiline Lines = true
)

// Error is the first character (or byte) of a string that the rule refuses.
type Error struct {
	// Offset is the byte offset of the character in the string.
	Offset int
	// Rune is the character; utf8.RuneError with Byte set when the string is not UTF-8 there.
	Rune rune
	// Invalid is set when the bytes at Offset are not UTF-8; Byte is the first of them.
	Invalid bool
	Byte    byte
	// Kind says what sort of character it is (e.g. "a bidirectional control character").
	Kind string
}

func (e *Error) Error() string {
	if e.Invalid {
		return fmt.Sprintf("is not valid UTF-8 at byte %d (0x%02x); send UTF-8 text", e.Offset, e.Byte)
	}
	return fmt.Sprintf("contains %s at byte %d, %s; remove it", Describe(e.Rune), e.Offset, e.Kind)
}

// Describe names a character for a message: "U+202E RIGHT-TO-LEFT OVERRIDE", or "U+E0041" for
// one without a name here.
func Describe(r rune) string {
	if n := names[r]; n != "" {
		return fmt.Sprintf("%U %s", r, n)
	}
	return fmt.Sprintf("%U", r)
}

// Check returns nil if s follows the rule, or an *Error describing its first offence.
func Check(s string, lines Lines) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f { // printable ASCII: the common case
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return &Error{Offset: i, Rune: r, Invalid: true, Byte: c}
		}
		if kind := Refused(r, lines); kind != "" {
			return &Error{Offset: i, Rune: r, Kind: kind}
		}
		i += size
	}
	return nil
}

// Refused says why the rule refuses the character r ("" if it does not), for text where line
// breaks are or are not allowed.
func Refused(r rune, lines Lines) string {
	switch {
	case r == '\t' || (r == '\n' && lines == Multiline):
		return ""
	case r < 0x20 || r == 0x7f:
		return "a control character"
	case r < 0x80:
		return ""
	case r <= 0x9f:
		return "a C1 control character (some terminals obey it as an escape sequence)"
	case r == 0x2028 || r == 0x2029:
		return "a line or paragraph separator (it breaks a line where none is shown)"
	case isBidi(r):
		return "a bidirectional control character (it reorders how the text is displayed)"
	case r == utf8.RuneError:
		return "the replacement character (the text was damaged by a conversion before it reached Rampart; send the original)"
	case r == 0x200c || r == 0x200d:
		return "" // zero-width non-joiner and joiner: needed by several scripts and emoji
	case unicode.Is(unicode.Cf, r):
		return "an invisible format character"
	case isVariationSelector(r) && r != 0xfe0e && r != 0xfe0f:
		return "an invisible variation selector"
	case r == 0x115f || r == 0x1160 || r == 0x3164 || r == 0xffa0:
		return "an invisible Hangul filler"
	}
	return ""
}

func isBidi(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

func isVariationSelector(r rune) bool {
	return (r >= 0xfe00 && r <= 0xfe0f) || (r >= 0xe0100 && r <= 0xe01ef) || (r >= 0x180b && r <= 0x180d) || r == 0x180f
}

// names of the characters an attacker is most likely to use, for error messages.
var names = map[rune]string{
	0x061c: "ARABIC LETTER MARK",
	0x200b: "ZERO WIDTH SPACE",
	0x200e: "LEFT-TO-RIGHT MARK",
	0x200f: "RIGHT-TO-LEFT MARK",
	0x2028: "LINE SEPARATOR",
	0x2029: "PARAGRAPH SEPARATOR",
	0x202a: "LEFT-TO-RIGHT EMBEDDING",
	0x202b: "RIGHT-TO-LEFT EMBEDDING",
	0x202c: "POP DIRECTIONAL FORMATTING",
	0x202d: "LEFT-TO-RIGHT OVERRIDE",
	0x202e: "RIGHT-TO-LEFT OVERRIDE",
	0x2060: "WORD JOINER",
	0x2066: "LEFT-TO-RIGHT ISOLATE",
	0x2067: "RIGHT-TO-LEFT ISOLATE",
	0x2068: "FIRST STRONG ISOLATE",
	0x2069: "POP DIRECTIONAL ISOLATE",
	0xfeff: "ZERO WIDTH NO-BREAK SPACE (byte order mark)",
	0xfffd: "REPLACEMENT CHARACTER",
	0x001b: "ESCAPE",
	0x0000: "NULL",
	0x000a: "LINE FEED",
	0x000d: "CARRIAGE RETURN",
}

// displayUnsafe reports whether Escape shows r escaped: everything the rule refuses on a single
// line, and tab (it misaligns columns), except U+FFFD, which displays as itself.
func displayUnsafe(r rune) bool {
	return r == '\t' || (r != utf8.RuneError && Refused(r, SingleLine) != "")
}

// Escape returns s with every character the rule refuses, every tab and line break, and every
// byte that is not UTF-8 written as a Go-style escape (\x1b, \u202e, \U000e0041), so that a
// terminal shows them instead of obeying them. Backslashes are not escaped: the result is for
// people to read, not to parse.
func Escape(s string) string {
	var b strings.Builder
	escaped := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1:
			esc = fmt.Sprintf(`\x%02x`, s[i])
		case displayUnsafe(r):
			esc = escapeRune(r)
		}
		if esc != "" && !escaped {
			escaped = true
			b.Grow(len(s) + 16)
			b.WriteString(s[:i])
		}
		switch {
		case esc != "":
			b.WriteString(esc)
		case escaped:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if !escaped {
		return s
	}
	return b.String()
}

func escapeRune(r rune) string {
	switch {
	case r < 0x80:
		return fmt.Sprintf(`\x%02x`, r)
	case r <= 0xffff:
		return fmt.Sprintf(`\u%04x`, r)
	}
	return fmt.Sprintf(`\U%08x`, r)
}

// EscapeJSON returns JSON text with every character Escape would escape written as a JSON
// \u escape (a surrogate pair above U+FFFF), and every byte that is not UTF-8 as \ufffd. The
// value the JSON denotes is unchanged (invalid bytes aside: encoding/json reads them as U+FFFD
// too), but a terminal shows the escapes instead of obeying the characters. Outside strings,
// valid JSON holds only ASCII, so the rewriting touches strings alone.
func EscapeJSON(data []byte) []byte {
	var out []byte
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		var esc string
		switch {
		case r == utf8.RuneError && size == 1:
			esc = `\ufffd`
		case r >= 0x80 && displayUnsafe(r):
			if r > 0xffff {
				hi, lo := utf16Pair(r)
				esc = `\u` + hex4(hi) + `\u` + hex4(lo)
			} else {
				esc = `\u` + hex4(r)
			}
		}
		if esc != "" {
			if out == nil {
				out = append(make([]byte, 0, len(data)+16), data[:i]...)
			}
			out = append(out, esc...)
		} else if out != nil {
			out = append(out, data[i:i+size]...)
		}
		i += size
	}
	if out == nil {
		return data
	}
	return out
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

func hex4(r rune) string {
	s := strconv.FormatInt(int64(r), 16)
	return strings.Repeat("0", 4-len(s)) + s
}
