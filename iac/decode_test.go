package iac

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	in := "# leading comment\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ml}\n" +
		"--- # second\n" +
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n" +
		"---\n# only a comment\n" +
		"---\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"d\"}}\n" +
		"...\n"
	objs, err := Decode("m.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.ID()+"@"+o.Source.String())
	}
	want := "ConfigMap ml/a@m.yaml:1 ConfigMap b@m.yaml:6 ConfigMap c@m.yaml:6 ConfigMap d@m.yaml:14"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("got  %s\nwant %s", s, want)
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"duplicate key", "apiVersion: v1\nkind: Pod\nkind: Secret\nmetadata: {name: a}\n", "m.yaml:1: not valid YAML"},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", "kind is missing"},
		{"no apiVersion", "kind: Pod\nmetadata: {name: a}\n", "apiVersion is missing"},
		{"no name", "apiVersion: v1\nkind: Pod\nmetadata: {generateName: a-}\n", "generateName is not enough"},
		{"scalar", "---\nhello\n", "m.yaml:2: the document is not a Kubernetes object"},
		{"sequence", "- a\n- b\n", "not a Kubernetes object"},
		{"wrong type", "apiVersion: v1\nkind: Pod\nmetadata: {name: [a]}\n", "metadata.name"},
		{"nested list", "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n", "inside a List"},
		{"line of the second document", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {}\n", "m.yaml:5: Pod: metadata.name is missing"},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n", "excessive aliasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode("m.yaml", []byte(tc.in))
			if err == nil || !errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode: %v; want an ErrDecode containing %q", err, tc.want)
			}
		})
	}
}

func TestDecodeTooLarge(t *testing.T) {
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {a: \"" + strings.Repeat("x", MaxDocumentBytes) + "\"}\n"
	if _, err := Decode("m.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Decode: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
		"---\n--- # c\n...\napiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Secret, metadata: {name: s}}]\n",
		"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"}}",
		"a: &a [x]\nb: [*a, *a]\n",
		"--- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := Decode("f.yaml", data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error not ErrDecode: %v", err)
			}
			return
		}
		for _, o := range objs {
			if o.APIVersion == "" || o.Kind == "" || o.Name == "" || o.Source.Line < 1 || len(o.JSON) == 0 {
				t.Fatalf("incomplete object: %+v", o)
			}
		}
	})
}
