// Package strictjson refuses the JSON that encoding/json accepts by rewriting it or by choosing
// for the caller, before a request body is decoded (invariant 7: bad input is refused, and
// nothing is lost). The API's decoder (api.DecodeJSON) and the sign-in endpoints that read JSON
// run every body through Check:
//
//   - bytes that are not UTF-8, and escapes of unpaired UTF-16 surrogates (\ud800): encoding/json
//     replaces both with U+FFFD, so what is stored would differ from what was sent;
//   - an object that names a member twice: encoding/json keeps the last copy, while a proxy, a
//     log or a signature check in front of Rampart may read the first;
//   - a string, member names included, that breaks the text rule of internal/text (control,
//     bidirectional and invisible format characters, U+FFFD).
//
// Errors name the offending field by its path (checks[2].subject). The body is read with
// jsontext (github.com/go-json-experiment/json, the proposed encoding/json/v2), which itself
// refuses invalid UTF-8, unpaired surrogates and duplicate names; Check adds the paths and the
// text rule. It expects a body whose syntax encoding/json has already accepted, but is safe on
// any input.
package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"rampart.dev/rampart/internal/text"
)

// Error is a refused body: the path of the field ("" for the body or a member name at the top)
// and what is wrong with it, as a sentence for the caller.
type Error struct {
	Path string
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Check returns nil if the JSON text raw is UTF-8, names no object member twice and holds only
// strings that follow the text rule; otherwise an *Error naming the first offending field.
func Check(raw []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(raw))
	var stack []frame
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		var f *frame
		if len(stack) > 0 {
			f = &stack[len(stack)-1]
		}
		naming := f != nil && !f.array && !f.named
		if err != nil {
			return syntaxError(raw, err, stack, naming)
		}
		switch k := tok.Kind(); {
		case k == '}' || k == ']':
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].done()
			}
		case naming:
			name := tok.String()
			if err := text.Check(name, text.SingleLine); err != nil {
				p := pathOf(stack)
				return &Error{Path: p, Msg: fmt.Sprintf("a field name%s %v (field names are plain ASCII; see /v1/openapi.json)", at(p), err)}
			}
			f.name, f.named = name, true
		case k == '{' || k == '[':
			stack = append(stack, frame{array: k == '['})
		case k == '"':
			if err := text.Check(tok.String(), text.SingleLine); err != nil {
				p := pathOf(stack)
				return &Error{Path: p, Msg: fmt.Sprintf("%s %v", fieldName(p), err)}
			}
			f.done()
		default:
			f.done()
		}
	}
}

// frame is an object or array being read.
type frame struct {
	array bool
	name  string // object: the member whose value comes next
	named bool
	index int // array: the element being read
}

func (f *frame) done() {
	switch {
	case f == nil:
	case f.array:
		f.index++
	default:
		f.named = false
	}
}

// pathOf is the path of the value being read: checks[2].subject.
func pathOf(stack []frame) string {
	var b strings.Builder
	for _, f := range stack {
		switch {
		case f.array:
			fmt.Fprintf(&b, "[%d]", f.index)
		case f.named:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.name)
		}
	}
	return b.String()
}

func fieldName(path string) string {
	if path == "" {
		return "the request body"
	}
	return fmt.Sprintf("field %q", path)
}

func at(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

// syntaxError explains an error of jsontext, which on a body encoding/json accepted means
// invalid UTF-8, an unpaired surrogate escape or a duplicate name.
func syntaxError(raw []byte, err error, stack []frame, naming bool) error {
	p := pathOf(stack)
	what := fieldName(p)
	if naming {
		what = "a field name" + at(p)
	}
	var syn *jsontext.SyntacticError
	switch {
	case errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &syn):
		dup := strings.TrimPrefix(p+"."+syn.JSONPointer.LastToken(), ".")
		return &Error{Path: dup, Msg: fmt.Sprintf("field %q appears twice in the same object; send each field once (JSON parsers disagree on which copy counts)", dup)}
	case !utf8.Valid(raw):
		off := 0
		for off < len(raw) {
			r, n := utf8.DecodeRune(raw[off:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			off += n
		}
		return &Error{Path: p, Msg: fmt.Sprintf("%s is not valid UTF-8 (byte %d of the body is 0x%02x); send UTF-8 text: it is refused, not repaired", what, off, raw[off])}
	case strings.Contains(err.Error(), "surrogate"):
		return &Error{Path: p, Msg: fmt.Sprintf(`%s has an unpaired UTF-16 surrogate escape (\ud800-\udfff without its pair); send the character itself or its complete pair`, what)}
	}
	return &Error{Path: p, Msg: fmt.Sprintf("the request body is not valid JSON%s: %v", at(p), err)}
}
