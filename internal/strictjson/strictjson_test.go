package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"rampart.dev/rampart/internal/text"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct{ body, path, want string }{
		{`{"reason":"ok"}`, "", ""},
		{`[1,"two",{"three":[4]}]`, "", ""},
		{`"\ud83d\ude00 \u00e9"`, "", ""},
		{"{\"reason\":\"caf\xe9\"}", "reason", `field "reason" is not valid UTF-8 (byte 14 of the body is 0xe9)`},
		{`{"reason":"\ud800"}`, "reason", `field "reason" has an unpaired UTF-16 surrogate escape`},
		{`{"a":{"b":[0,{"c":"x","c":"y"}]}}`, "a.b[1].c", `field "a.b[1].c" appears twice`},
		{`{"checks":[{"subject":"a"},{"subject":"b\u202e"}]}`, "checks[1].subject", `field "checks[1].subject" contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 1`},
		{`{"a":{"x\u200b":1}}`, "a", `a field name in a contains U+200B ZERO WIDTH SPACE`},
		{`"\u001b[0m"`, "", `the request body contains U+001B ESCAPE at byte 0`},
		{`[{"a":1},{"a":1}]`, "", ""}, // the same name in two objects is fine
	} {
		err := Check([]byte(tc.body))
		if tc.want == "" {
			if err != nil {
				t.Errorf("Check(%s) = %v, want nil", tc.body, err)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || e.Path != tc.path || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("Check(%s) = %#v, want path %q and %q", tc.body, err, tc.path, tc.want)
		}
	}
}

// FuzzCheck holds Check, on every body encoding/json accepts, to a reference built from
// encoding/json alone: a UTF-8 check of the bytes, a scan of encoding/json's tokens for a name
// repeated in one object, and the text rule over every string encoding/json decoded (an
// unpaired surrogate escape decodes to U+FFFD, which the rule refuses).
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `"x"`, `{"a":"b"}`, `{"a":1,"a":2}`, `{"a":{"b":[1,"\u202e"]}}`, "\"\xff\"", `"\ud800"`, `"\ud83d\ude00"`,
		`{"a":"\ufffd"}`, `{"a":[{"b":1},{"b":1,"b":2}]}`, `{"\u0061":1,"a":2}`, `{"a":{"a":1},"b":{"a":1}}`, `{"x\u2066":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data) // any input: no panic
		if !json.Valid(data) {
			return
		}
		if want := referenceOK(data); want != (err == nil) {
			t.Fatalf("Check(%q) = %v; the reference says ok=%v", data, err, want)
		}
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("Check(%q) returned %T, not *Error", data, err)
		}
	})
}

func referenceOK(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type obj struct {
		seen    map[string]bool
		wantKey bool
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &obj{seen: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1] != nil {
				stack[len(stack)-1].wantKey = true
			}
			continue
		}
		if s, ok := tok.(string); ok && text.Check(s, text.SingleLine) != nil {
			return false
		}
		if top != nil && top.wantKey {
			if top.seen[tok.(string)] {
				return false
			}
			top.seen[tok.(string)] = true
		}
		if top != nil {
			top.wantKey = !top.wantKey
		}
	}
}
