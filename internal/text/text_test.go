package text

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckRefuses(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lines  Lines
		offset int
		want   string // in the message
	}{
		{"ok \u202e fdp.exe", SingleLine, 3, "U+202E RIGHT-TO-LEFT OVERRIDE at byte 3, a bidirectional control character"},
		{"\u202aa", SingleLine, 0, "LEFT-TO-RIGHT EMBEDDING"},
		{"a\u202b", SingleLine, 1, "RIGHT-TO-LEFT EMBEDDING"},
		{"\u202c", SingleLine, 0, "POP DIRECTIONAL FORMATTING"},
		{"\u202d", SingleLine, 0, "LEFT-TO-RIGHT OVERRIDE"},
		{"\u2066", SingleLine, 0, "LEFT-TO-RIGHT ISOLATE"},
		{"\u2067", SingleLine, 0, "RIGHT-TO-LEFT ISOLATE"},
		{"\u2068", SingleLine, 0, "FIRST STRONG ISOLATE"},
		{"\u2069", SingleLine, 0, "POP DIRECTIONAL ISOLATE"},
		{"\u200e", SingleLine, 0, "LEFT-TO-RIGHT MARK"},
		{"\u200f", SingleLine, 0, "RIGHT-TO-LEFT MARK"},
		{"\u061c", SingleLine, 0, "ARABIC LETTER MARK"},
		{"bad \xff byte", SingleLine, 4, "not valid UTF-8 at byte 4 (0xff)"},
		{"\xed\xa0\x80", SingleLine, 0, "not valid UTF-8 at byte 0 (0xed)"}, // an encoded surrogate
		{"\xc0\xaf", SingleLine, 0, "not valid UTF-8"},                      // an overlong '/'
		{"lost \ufffd", SingleLine, 5, "REPLACEMENT CHARACTER"},
		{"a\x1b[2Jb", SingleLine, 1, "U+001B ESCAPE at byte 1, a control character"},
		{"a\x00", SingleLine, 1, "NULL"},
		{"two\nlines", SingleLine, 3, "LINE FEED"},
		{"cr\r", Multiline, 2, "CARRIAGE RETURN"},
		{"del\x7f", SingleLine, 3, "a control character"},
		{"csi\u009b", SingleLine, 3, "C1 control"},
		{"sep\u2028", Multiline, 3, "LINE SEPARATOR"},
		{"sep\u2029", SingleLine, 3, "PARAGRAPH SEPARATOR"},
		{"zw\u200bsp", SingleLine, 2, "ZERO WIDTH SPACE at byte 2, an invisible format character"},
		{"\ufeffbom", SingleLine, 0, "byte order mark"},
		{"wj\u2060", SingleLine, 2, "WORD JOINER"},
		{"soft\u00adhyphen", SingleLine, 4, "invisible format character"},
		{"tag\U000E0041", SingleLine, 3, "U+E0041 at byte 3, an invisible format character"},
		{"vs\ufe01", SingleLine, 2, "variation selector"},
		{"vs\U000E0100", SingleLine, 2, "variation selector"},
		{"\u3164", SingleLine, 0, "Hangul filler"},
	} {
		err := Check(tc.in, tc.lines)
		var te *Error
		if !errors.As(err, &te) || te.Offset != tc.offset || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v, want an error at byte %d containing %q", tc.in, err, tc.offset, tc.want)
		}
	}
}

func TestCheckAccepts(t *testing.T) {
	for _, s := range []string{
		"", "eval run 4411 for the Q3 report", "tab\tseparated", "naïve café", "Grüße, 東京, Москва",
		"שלום עולם", "مرحبا بالعالم", // right-to-left scripts need no marks
		"می\u200cخواهم",                          // Persian needs the zero-width non-joiner
		"क्\u200dष",                              // Devanagari, with a joiner
		"👩\u200d💻 on call", "❤\ufe0f", "☺\ufe0e", // emoji sequences
		"\ue000 private use", "e\u0301 combining", "\u00a0non-breaking",
	} {
		if err := Check(s, SingleLine); err != nil {
			t.Errorf("Check(%q) = %v, want nil", s, err)
		}
	}
	if err := Check("line one\nline two\n\tindented", Multiline); err != nil {
		t.Errorf("multiline text refused: %v", err)
	}
}

// TestEveryCodePoint holds the rule and the escaping to each other over every code point:
// Check refuses exactly what Refused names, Escape changes exactly what it shows escaped, and
// EscapeJSON never changes what the JSON means.
func TestEveryCodePoint(t *testing.T) {
	refused := 0
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue // not encodable in UTF-8; string(r) would be U+FFFD
		}
		s := "a" + string(r) + "b"
		why := Refused(r, SingleLine)
		err := Check(s, SingleLine)
		if (why != "") != (err != nil) {
			t.Fatalf("%U: Refused says %q, Check says %v", r, why, err)
		}
		if why != "" {
			refused++
		}
		if m := Refused(r, Multiline); m != why && r != '\n' {
			t.Fatalf("%U: only line feed differs between the modes (%q vs %q)", r, m, why)
		}
		esc := Escape(s)
		if (esc != s) != displayUnsafe(r) {
			t.Fatalf("%U: Escape gave %q", r, esc)
		}
		if displayUnsafe(r) {
			if Check(esc, SingleLine) != nil {
				t.Fatalf("%U: the escaped form %q is itself refused", r, esc)
			}
		}
		b, _ := json.Marshal(s)
		var back string
		if err := json.Unmarshal(EscapeJSON(b), &back); err != nil || back != s {
			t.Fatalf("%U: EscapeJSON changed the value: %q, %v", r, back, err)
		}
		if displayUnsafe(r) && r >= 0x80 && strings.ContainsRune(string(EscapeJSON(b)), r) {
			t.Fatalf("%U: EscapeJSON left the character raw", r)
		}
	}
	// The rule is narrow: a few hundred code points of more than a million.
	if refused < 200 || refused > 1000 {
		t.Fatalf("%d code points refused; the rule has drifted", refused)
	}
}

func TestEscapeShowsWhatTheTerminalWouldObey(t *testing.T) {
	for in, want := range map[string]string{
		"plain":                      "plain",
		"approved \u202e4321 \u202c": `approved \u202e4321 \u202c`,
		"\x1b[31mred":                `\x1b[31mred`,
		"bad\xffbyte":                `bad\xffbyte`,
		"two\nlines\tand tab":        `two\x0alines\x09and tab`,
		"tag\U000E0041":              `tag\U000e0041`,
		"keep \ufffd and é":          "keep \ufffd and é",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	got := string(EscapeJSON([]byte(`{"m":"a` + "\u202e" + `b` + "\U000E0041" + `","n":1}`)))
	if want := `{"m":"a\u202eb\udb40\udc41","n":1}`; got != want {
		t.Errorf("EscapeJSON = %s, want %s", got, want)
	}
}

// FuzzText: Check agrees with Refused character by character, Escape's output is always
// accepted (but for U+FFFD, which it leaves as is), and EscapeJSON preserves what JSON means.
func FuzzText(f *testing.F) {
	for _, s := range []string{"", "ok", "a\u202eb", "\xff", "\x1b[0m", "tag\U000E0041", "\ufffd", "x\ny"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Check(s, SingleLine)
		var first *Error
		for i, r := range s {
			bad := r == utf8.RuneError && !strings.HasPrefix(s[i:], "\ufffd")
			if bad || Refused(r, SingleLine) != "" {
				first = &Error{Offset: i}
				break
			}
		}
		var te *Error
		switch {
		case first == nil && err != nil:
			t.Fatalf("Check(%q) = %v, but every character is allowed", s, err)
		case first != nil && (!errors.As(err, &te) || te.Offset != first.Offset):
			t.Fatalf("Check(%q) = %v, want the offence at byte %d", s, err, first.Offset)
		}
		esc := Escape(s)
		if err := Check(strings.ReplaceAll(esc, "\ufffd", ""), SingleLine); err != nil {
			t.Fatalf("Escape(%q) = %q, which is refused: %v", s, esc, err)
		}
		b, _ := json.Marshal(s)
		var a, c string
		if json.Unmarshal(b, &a) != nil || json.Unmarshal(EscapeJSON(b), &c) != nil || a != c {
			t.Fatalf("EscapeJSON changed %q: %q vs %q", s, a, c)
		}
	})
}
