// Package output prints CLI results as a table for people, or as JSON or YAML for scripts.
package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
		_, err = w.Write(buf.Bytes())
		return err
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
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
