package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"
)

// Issue 12, item 12: an empty list printed `null` under -o json, which scripts iterating over it
// cannot take.
func TestEmptyListIsNotNull(t *testing.T) {
	var none []struct{ Name string }
	var noMap map[string]int
	for _, tc := range []struct {
		v    any
		json string
	}{{none, "[]"}, {noMap, "{}"}, {[]int{}, "[]"}, {struct{ A []int }{}, `{"A":null}`}} {
		var out bytes.Buffer
		if err := Print(&out, JSON, tc.v, nil); err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, out.Bytes()); err != nil || compact.String() != tc.json {
			t.Errorf("Print(%#v, json) = %q (%v); want %s", tc.v, out.String(), err, tc.json)
		}
		out.Reset()
		if err := Print(&out, YAML, tc.v, nil); err != nil {
			t.Fatal(err)
		}
		var back any
		if err := yaml.Unmarshal(out.Bytes(), &back); err != nil || back == nil {
			t.Errorf("Print(%#v, yaml) = %q, which reads back as %v (%v)", tc.v, out.String(), back, err)
		}
	}
}

// Stream's items: one JSON line each, YAML documents, or the table's lines.
func TestStream(t *testing.T) {
	items := []string{`{"a":1,"b":"x: y"}`, `{"a":2,"b":"z"}`}
	for _, format := range []string{JSON, YAML, Table} {
		var out bytes.Buffer
		for _, it := range items {
			if err := Stream(&out, format, []byte(it), func() (string, error) { return "line " + it[5:6], nil }); err != nil {
				t.Fatal(err)
			}
		}
		switch format {
		case JSON:
			dec := json.NewDecoder(&out)
			for i := range items {
				var v map[string]any
				if err := dec.Decode(&v); err != nil || v["a"] != float64(i+1) {
					t.Fatalf("json item %d: %v %v", i, v, err)
				}
			}
		case YAML:
			dec := yaml.NewDecoder(&out)
			for i := range items {
				var v map[string]any
				if err := dec.Decode(&v); err != nil || v["a"] != i+1 {
					t.Fatalf("yaml document %d: %v %v", i, v, err)
				}
			}
		case Table:
			if out.String() != "line 1\nline 2\n" {
				t.Fatalf("table: %q", out.String())
			}
		}
	}
	var out bytes.Buffer
	_ = Print(&out, Table, nil, func(tw *tabwriter.Writer) { tw.Write([]byte("a\tb\n")) })
	if !strings.HasPrefix(out.String(), "a") {
		t.Fatalf("table: %q", out.String())
	}
}
