// Package output prints CLI results as a table for people, or as JSON or YAML for scripts.
//
// What scripts may rely on: under -o json, standard output holds exactly one JSON value (Print)
// or one JSON value per line (Stream), and nothing else; under -o yaml, one YAML document (Print)
// or a stream of documents separated by "---" (Stream); an empty list is [] and an absent map
// {}, never null.
package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// Formats accepted by -o.
const (
	Table = "table"
	JSON  = "json"
	YAML  = "yaml"
)

// Check validates a -o value.
func Check(format string) error {
	switch format {
	case Table, JSON, YAML:
		return nil
	}
	return fmt.Errorf("-o %q: use table, json or yaml", format)
}

// Print writes v as JSON or YAML, or calls table with a tab writer for the table format.
func Print(w io.Writer, format string, v any, table func(tw *tabwriter.Writer)) error {
	v = empty(v)
	switch format {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	case YAML:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return writeYAML(w, b)
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
}

// Stream writes one item of a stream that may go on (a followed ledger): under JSON, raw as one
// line (it must be one JSON value without line breaks); under YAML, raw as a YAML document after
// "---"; under the table format, the line table returns.
func Stream(w io.Writer, format string, raw []byte, table func() (string, error)) error {
	switch format {
	case JSON:
		_, err := fmt.Fprintf(w, "%s\n", raw)
		return err
	case YAML:
		if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
		return writeYAML(w, raw)
	default:
		line, err := table()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, line)
		return err
	}
}

// writeYAML writes JSON text as block-style YAML.
func writeYAML(w io.Writer, b []byte) error {
	// JSON is YAML; decoding into a node keeps the field order of the JSON.
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return err
	}
	clearStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// empty turns a nil slice into an empty one and a nil map into an empty one, so that a list
// with nothing in it prints as [] (scripts iterate over it) rather than null.
func empty(v any) any {
	rv := reflect.ValueOf(v)
	switch {
	case rv.Kind() == reflect.Slice && rv.IsNil():
		return reflect.MakeSlice(rv.Type(), 0, 0).Interface()
	case rv.Kind() == reflect.Map && rv.IsNil():
		return reflect.MakeMap(rv.Type()).Interface()
	}
	return v
}

// clearStyle turns JSON's flow style into block style.
func clearStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle | yaml.DoubleQuotedStyle
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && needsQuotes(n.Value) {
		n.Style |= yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		clearStyle(c)
	}
}

func needsQuotes(s string) bool {
	return s == "" || strings.ContainsAny(s, ":#{}[]&*!|>'\"%@`\n") || s == "true" || s == "false" || s == "null"
}

// When prints a time for people: RFC 3339 in UTC with the distance from now.
func When(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "in " + d.String()
	switch {
	case d == 0:
		rel = "now"
	case d < 0:
		rel = (-d).String() + " ago"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}
