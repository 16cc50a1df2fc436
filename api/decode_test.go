package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/text"
)

// TestDecodeRefusesWhatEncodingJSONRewrites: three things encoding/json accepts by rewriting
// the text or choosing for the caller are refused with 400 and the path of the field.
func TestDecodeRefusesWhatEncodingJSONRewrites(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"invalid UTF-8", "{\"role\":\"r\",\"reason\":\"caf\xe9 run\"}", `field "reason" is not valid UTF-8 (byte 25 of the body is 0xe9)`},
		{"invalid UTF-8 in a name", "{\"role\":\"r\",\"re\xffason\":\"x\"}", `a field name is not valid UTF-8`},
		{"lone surrogate", `{"role":"r","reason":"x\ud800y"}`, `field "reason" has an unpaired UTF-16 surrogate escape`},
		{"lone low surrogate", `{"role":"r","reason":"\udc00"}`, `field "reason" has an unpaired UTF-16 surrogate escape`},
		{"escaped replacement", `{"role":"r","reason":"\ufffd"}`, `field "reason" contains U+FFFD REPLACEMENT CHARACTER`},
		{"duplicate key", `{"role":"r","reason":"benign","reason":"evil"}`, `field "reason" appears twice in the same object`},
		{"duplicate key, escaped", `{"role":"r","reason":"a","re\u0061son":"b"}`, `field "reason" appears twice`},
		{"bidi override", `{"role":"r","reason":"ok \u202eevil"}`, `field "reason" contains U+202E RIGHT-TO-LEFT OVERRIDE at byte 3, a bidirectional control character`},
		{"bidi raw", "{\"role\":\"r\",\"reason\":\"ok \u2067x\u2069\"}", `field "reason" contains U+2067 RIGHT-TO-LEFT ISOLATE`},
		{"bidi in a name", `{"role":"r","rea\u202eson":"x"}`, `a field name contains U+202E`},
		{"escape sequence", `{"role":"r","reason":"\u001b[2J"}`, `field "reason" contains U+001B ESCAPE`},
		{"newline", `{"role":"r","reason":"a\nb"}`, `field "reason" contains U+000A LINE FEED`},
		{"line separator", `{"role":"r","reason":"a\u2028b"}`, `field "reason" contains U+2028 LINE SEPARATOR`},
		{"tag characters", `{"role":"r","reason":"a\udb40\udc41"}`, `field "reason" contains U+E0041`},
	} {
		var b api.CreateRequestBody
		err := api.DecodeJSON(strings.NewReader(tc.body), &b)
		var e *api.Error
		if !errors.As(err, &e) || e.Status != 400 || e.Code != api.CodeInvalid || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want 400 containing %q", tc.name, err, tc.want)
		}
	}
	// Paths name nested fields and list items.
	var batch api.BatchBody
	err := api.DecodeJSON(strings.NewReader(`{"checks":[{"subject":"alice","action":"read","resource":"a"},{"subject":"bob\u200b","action":"read","resource":"a"}]}`), &batch)
	if err == nil || !strings.Contains(err.Error(), `field "checks[1].subject" contains U+200B ZERO WIDTH SPACE`) {
		t.Errorf("nested path: %v", err)
	}
	err = api.DecodeJSON(strings.NewReader(`{"checks":[{"subject":"a","subject":"b","action":"read","resource":"a"}]}`), &batch)
	if err == nil || !strings.Contains(err.Error(), `field "checks[0].subject" appears twice`) {
		t.Errorf("nested duplicate: %v", err)
	}
	// What the rule allows still decodes, byte for byte.
	var ok api.CreateRequestBody
	want := "Ünïcödé, 東京, שלום, 👩\u200d💻, tab\there"
	body, _ := json.Marshal(map[string]string{"role": "r", "reason": want})
	if err := api.DecodeJSON(bytes.NewReader(body), &ok); err != nil || ok.Reason != want {
		t.Fatalf("ordinary text: %q, %v", ok.Reason, err)
	}
}

// FuzzDecodeJSON holds DecodeJSON to a reference built differently: encoding/json alone, plus a
// separate scan for duplicate names over encoding/json's tokens, a check that the body is UTF-8,
// and the text rule over every string encoding/json decoded (an unpaired surrogate escape
// decodes to U+FFFD, which the rule refuses). Both must accept the same bodies, decode them to
// the same value, and refuse the rest with a 4xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `[]`, `"x"`, `1`, `null`, `{"a":"b"}`, `{"a":1,"a":2}`, `{"a":{"b":[1,"\u202e"]}}`, "\"\xff\"", `"\ud800"`,
		`"\ud83d\ude00"`, `{"a":"\ufffd"}`, `{"a":[{"b":1},{"b":1,"b":2}]}`, `{"\u0061":1,"a":2}`, `[1,2] 3`, ` {"x":"y"} `,
		`{"reason":"a\u0000b"}`, `1e999`, `{"a":"\udbff\udfff"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got any
		err := api.DecodeJSON(bytes.NewReader(data), &got)
		want, ok := referenceDecode(data)
		switch {
		case ok && err != nil:
			t.Fatalf("DecodeJSON(%q) refused what the reference accepts: %v", data, err)
		case !ok && err == nil:
			t.Fatalf("DecodeJSON(%q) accepted what the reference refuses (decoded %#v)", data, got)
		case ok && !reflect.DeepEqual(got, want):
			t.Fatalf("DecodeJSON(%q) = %#v, the reference %#v", data, got, want)
		}
		if err != nil {
			var e *api.Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("DecodeJSON(%q): %v is not a 4xx API error", data, err)
			}
		}
	})
}

// referenceDecode is the fuzz reference: encoding/json's Unmarshal, then the three checks.
func referenceDecode(data []byte) (any, bool) {
	var v any
	if json.Unmarshal(data, &v) != nil || !utf8.Valid(data) || hasDuplicateNames(data) {
		return nil, false
	}
	var bad bool
	var walk func(any)
	walk = func(x any) {
		switch x := x.(type) {
		case string:
			bad = bad || text.Check(x, text.SingleLine) != nil
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				bad = bad || text.Check(k, text.SingleLine) != nil
				walk(e)
			}
		}
	}
	walk(v)
	return v, !bad
}

// hasDuplicateNames scans encoding/json's tokens, keeping the names seen in each open object.
func hasDuplicateNames(data []byte) bool {
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
			return false
		}
		if err != nil {
			return false // a syntax error; Unmarshal already refused it
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
				stack[len(stack)-1].wantKey = true // the object's member value ended
			}
			continue
		}
		if top != nil && top.wantKey {
			k := tok.(string)
			if top.seen[k] {
				return true
			}
			top.seen[k] = true
		}
		if top != nil {
			top.wantKey = !top.wantKey
		}
	}
}
