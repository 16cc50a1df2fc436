// Package strictyaml decodes YAML into Go structs strictly, for files that people write by hand
// and that decide security: policy and server configuration.
//
// Unknown fields, wrong types, duplicate keys, aliases and multi-line surprises are errors, and
// every error carries the file, line, column and field path (spec.steps[0].from[1]) so the author
// can go straight to it. All errors of a document are collected, not only the first.
//
// Text follows the one rule of internal/text (invariant 7), in two places: the file itself must
// be UTF-8 and hold no character the rule refuses, comments included (a right-to-left override in
// a comment makes a reviewer read another policy than the one that loads: "Trojan Source"); and
// every key and scalar value, once YAML escapes such as "\u202e" are decoded, must follow it.
// Line feeds and tabs are allowed, CRLF line endings and a leading byte order mark too. Errors
// print what they quote escaped, so no message replays a hostile character onto a terminal.
//
// Supported Go types: string, bool, integers, float64, types implementing encoding.TextUnmarshaler
// (decoded from a scalar), slices, map[string]string, structs (field names from the `yaml` tag)
// and pointers to structs. A *yaml.Node field receives the raw node for later decoding.
package strictyaml

import (
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"rampart.dev/rampart/internal/text"
)

// Pos is a position in a YAML file, 1-based.
type Pos struct {
	Line, Column int
}

// Error is one problem found while decoding or validating a document.
type Error struct {
	File   string
	Line   int
	Column int
	// Path is the field path inside the document, e.g. spec.steps[0].count. Empty for errors
	// about the document as a whole.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	return text.Escape(e.format())
}

func (e *Error) format() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of problems, sorted by file and line when printed.
type Errors []*Error

func (es Errors) Error() string {
	sorted := append(Errors(nil), es...)
	sorted.Sort()
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders errors by file, line and column.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// Err returns nil for an empty list, so callers can `return errs.Err()`.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Positions maps field paths to where they appear in the file.
type Positions map[string]Pos

// Lookup returns the position of path, or of its nearest ancestor that has one.
func (p Positions) Lookup(path string) Pos {
	for {
		if pos, ok := p[path]; ok {
			return pos
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return p[""]
		}
		path = path[:i]
	}
}

// Document is one decoded YAML document with the bookkeeping needed to report errors at the
// right place.
type Document struct {
	File string
	Pos  Positions
	Errs Errors
}

// Errorf records an error at path (the nearest known position is used).
func (d *Document) Errorf(path, format string, args ...any) {
	pos := d.Pos.Lookup(path)
	d.Errs = append(d.Errs, &Error{File: d.File, Line: pos.Line, Column: pos.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// SplitDocuments parses data as a stream of YAML documents and returns their root nodes (the
// content of each document node). An unparseable stream is one error with the parser's line.
func SplitDocuments(file string, data []byte) ([]*yaml.Node, error) {
	if err := checkFile(file, data); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			line := lineOf(err)
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			msg = strings.TrimPrefix(msg, fmt.Sprintf("line %d: ", line))
			return nil, &Error{File: file, Line: line, Msg: "YAML syntax: " + msg}
		}
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			docs = append(docs, n.Content[0])
		}
	}
}

// checkFile applies the text rule to a whole file, comments included, and reports the first
// offence at its line and column (in characters, as the YAML parser counts them).
func checkFile(file string, data []byte) *Error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line, col = line+1, 1
			i++
			continue
		case (c >= 0x20 && c < 0x7f) || c == '\t':
			col++
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf("the file is not valid UTF-8 here (byte 0x%02x); save it as UTF-8", c)}
		case r == '\r' && i+1 < len(data) && data[i+1] == '\n': // a CRLF line ending
		case r == 0xfeff && i == 0: // a byte order mark
		default:
			if why := text.Refused(r, text.Multiline); why != "" {
				return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf("the file contains %s, %s; remove it (it is refused everywhere in the file, comments included)", text.Describe(r), why)}
			}
		}
		col++
		i += size
	}
	return nil
}

// lineOf extracts "line N" from a yaml.v3 syntax error, or 0.
func lineOf(err error) int {
	msg := err.Error()
	i := strings.Index(msg, "line ")
	if i < 0 {
		return 0
	}
	rest := msg[i+5:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	n, _ := strconv.Atoi(rest[:j])
	return n
}

// Decode decodes node into v, which must be a pointer, recording the position of every field
// under the path prefix and every problem in d.
func (d *Document) Decode(prefix string, node *yaml.Node, v any) {
	if d.Pos == nil {
		d.Pos = Positions{}
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		panic("strictyaml: Decode needs a non-nil pointer")
	}
	d.decode(prefix, node, rv.Elem())
}

var (
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

func (d *Document) decode(path string, n *yaml.Node, v reflect.Value) {
	d.Pos[path] = Pos{n.Line, n.Column}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.Errorf(path, "YAML anchors and aliases are not allowed in policy files; write the value out")
		return
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if n.Kind == yaml.ScalarNode {
		// After YAML's own escapes: "\u202e" in a double-quoted string is the character itself.
		if err := text.Check(n.Value, text.Multiline); err != nil {
			d.Errorf(path, "the value %v", err) // and decode it: other checks may have more to say
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value; required fields are checked by validation
	}
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.Errorf(path, "expected a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.Errorf(path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(path, n, v.Elem())
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.Errorf(path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.Errorf(path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(n.Value == "true" || n.Value == "True" || n.Value == "TRUE")
	case reflect.Int, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.Errorf(path, "expected a whole number, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || v.OverflowInt(i) {
			d.Errorf(path, "number %s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.Value, 0, 64)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil || v.OverflowUint(u) {
			d.Errorf(path, "expected a whole number of at least 0, got %s", describe(n))
			return
		}
		v.SetUint(u)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.Errorf(path, "expected a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.Errorf(path, "expected a list, got %s (write [%s] for a list of one)", describe(n), n.Value)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), item, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic("strictyaml: only maps with string keys are supported")
		}
		if n.Kind != yaml.MappingNode {
			d.Errorf(path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.goodKey(path, k) {
				continue
			}
			p := join(path, k.Value)
			if seen[k.Value] {
				d.Errs = append(d.Errs, &Error{File: d.File, Line: k.Line, Column: k.Column, Path: p, Msg: fmt.Sprintf("key %q appears twice", k.Value)})
				continue
			}
			seen[k.Value] = true
			elem := reflect.New(v.Type().Elem()).Elem()
			d.decode(p, val, elem)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	case reflect.Struct:
		d.decodeStruct(path, n, v)
	default:
		panic("strictyaml: unsupported type " + v.Type().String())
	}
}

func (d *Document) decodeStruct(path string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.Errorf(path, "expected a mapping of fields, got %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.goodKey(path, k) {
			continue
		}
		p := join(path, k.Value)
		d.Pos[p] = Pos{k.Line, k.Column}
		if seen[k.Value] {
			d.Errorf(p, "field %q appears twice", k.Value)
			continue
		}
		seen[k.Value] = true
		idx, ok := fields[k.Value]
		if !ok {
			d.Errorf(p, "unknown field %q; known fields: %s", k.Value, knownFields(fields))
			continue
		}
		d.decode(p, val, v.Field(idx))
		d.Pos[p] = Pos{k.Line, k.Column} // point at the key, which is where people look
	}
}

// goodKey applies the text rule to a mapping key, reporting an offence at the key itself.
func (d *Document) goodKey(path string, k *yaml.Node) bool {
	err := text.Check(k.Value, text.SingleLine)
	if err == nil {
		return true
	}
	d.Errs = append(d.Errs, &Error{File: d.File, Line: k.Line, Column: k.Column, Path: path, Msg: fmt.Sprintf("the key %q %v", k.Value, err)})
	return false
}

func structFields(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = i
	}
	return out
}

func knownFields(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a value"
	}
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return strconv.Quote(n.Value)
	}
	return kindName(n)
}
