package strictyaml

import (
	"errors"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/text"
)

type doc struct {
	Name   string            `yaml:"name"`
	Items  []string          `yaml:"items"`
	Labels map[string]string `yaml:"labels"`
	Sub    *struct {
		Note string `yaml:"note"`
	} `yaml:"sub"`
}

func decodeAll(data string) (*doc, error) {
	nodes, err := SplitDocuments("f.yaml", []byte(data))
	if err != nil {
		return nil, err
	}
	var v doc
	d := &Document{File: "f.yaml"}
	for _, n := range nodes {
		d.Decode("", n, &v)
	}
	return &v, d.Errs.Err()
}

func TestTextRule(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"name: ok\n", ""},
		{"name: |\n  two\n  lines\n", ""},
		{"\ufeffname: bom\r\nitems: [a]\r\n", ""},
		{"name: 東京\u202e\n", "f.yaml:1:9: the file contains U+202E RIGHT-TO-LEFT OVERRIDE"}, // columns count characters
		{"name: a # \u2066\n", "f.yaml:1:11: the file contains U+2066"},
		{"name: a\n\xff\n", "f.yaml:2:1: the file is not valid UTF-8 here (byte 0xff)"},
		{"name: \"\\u202e\"\n", `f.yaml:1:7: name: the value contains U+202E`},
		{"labels: {\"k\\u200b\": v}\n", `f.yaml:1:10: labels: the key "k\u200b" contains U+200B`},
		{"labels: {k: v, k: w}\n", `f.yaml:1:16: labels.k: key "k" appears twice`},
		{"name: a\nname: b\n", `f.yaml:2:1: name: field "name" appears twice`},
		{"sub: {note: \"\\x1b[31m\"}\n", `f.yaml:1:13: sub.note: the value contains U+001B ESCAPE`},
	} {
		_, err := decodeAll(tc.src)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.src, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

// FuzzDecode: whatever the input, a document that decodes without errors holds only text the
// rule allows (keys on one line, values on several), and no error message carries a character
// the terminal would obey.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"name: ok\n", "items: [a, \"\\u202e\"]\n", "labels: {a: b, a: c}\n", "name: \"\\x9b\"\n", "# \u2066\nname: a\n",
		"\xffname: a", "sub: {note: |\n  x\n  y\n}\n", "labels: {\"\\U000E0041\": x}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeAll(string(data))
		if err != nil {
			msg := strings.ReplaceAll(err.Error(), "\ufffd", "")
			for _, line := range strings.Split(msg, "\n") {
				if text.Check(line, text.SingleLine) != nil {
					t.Fatalf("error message %q carries a refused character", line)
				}
			}
			var es Errors
			var e *Error
			if !errors.As(err, &es) && !errors.As(err, &e) {
				t.Fatalf("%T is neither Errors nor *Error", err)
			}
			return
		}
		strs := append([]string{v.Name}, v.Items...)
		if v.Sub != nil {
			strs = append(strs, v.Sub.Note)
		}
		for k, val := range v.Labels {
			if text.Check(k, text.SingleLine) != nil {
				t.Fatalf("key %q decoded", k)
			}
			strs = append(strs, val)
		}
		for _, s := range strs {
			if text.Check(s, text.Multiline) != nil {
				t.Fatalf("value %q decoded", s)
			}
		}
	})
}
