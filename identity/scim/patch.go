package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// maxOperations bounds one PATCH request.
const maxOperations = 1000

// PatchOp is one operation of a PATCH request (RFC 7644 section 3.5.2).
type PatchOp struct {
	// Op is add, remove or replace; directories send any case (Entra ID: "Replace").
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// ParsePatch reads a PATCH body: {"schemas": [PatchOp], "Operations": [...]}. Unknown members
// are refused; op names are accepted in any case.
func ParsePatch(body []byte) ([]PatchOp, error) {
	var req struct {
		Schemas    []string  `json:"schemas"`
		Operations []PatchOp `json:"Operations"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, &Error{Status: 400, Type: "invalidSyntax", Detail: "the body is not a PatchOp request: " + err.Error()}
	}
	if dec.More() {
		return nil, &Error{Status: 400, Type: "invalidSyntax", Detail: "data after the PatchOp request"}
	}
	if !containsFold(req.Schemas, SchemaPatchOp) {
		return nil, &Error{Status: 400, Type: "invalidSyntax", Detail: "schemas must list " + SchemaPatchOp}
	}
	if len(req.Operations) == 0 || len(req.Operations) > maxOperations {
		return nil, &Error{Status: 400, Type: "invalidSyntax", Detail: fmt.Sprintf("Operations must hold 1 to %d operations", maxOperations)}
	}
	for i := range req.Operations {
		op := &req.Operations[i]
		op.Op = strings.ToLower(op.Op)
		switch op.Op {
		case "add", "replace", "remove":
		default:
			return nil, &Error{Status: 400, Type: "invalidSyntax", Detail: fmt.Sprintf("Operations[%d].op %q is not add, remove or replace", i, op.Op)}
		}
		if len(op.Path) > maxFilterLen {
			return nil, &Error{Status: 400, Type: "invalidPath", Detail: fmt.Sprintf("Operations[%d].path is over %d bytes", i, maxFilterLen)}
		}
		if op.Path != "" {
			if _, err := ParsePath(op.Path); err != nil {
				return nil, &Error{Status: 400, Type: "invalidPath", Detail: fmt.Sprintf("Operations[%d].path %q: %v", i, op.Path, err)}
			}
		}
	}
	return req.Operations, nil
}

// Path is a PATCH target: an attribute, optionally narrowed to the elements of a multi-valued
// attribute that match a filter, and then to a sub-attribute of them.
type Path struct {
	Attr   AttrPath
	Filter Filter // nil without [...]
	Sub    string // after [...]: the sub-attribute of the matching elements
}

// ParsePath parses attr, attr.sub, urn:…:attr, attr[filter] and attr[filter].sub.
func ParsePath(s string) (Path, error) {
	if len(s) > maxFilterLen {
		return Path{}, fmt.Errorf("the path is over %d bytes", maxFilterLen)
	}
	if !utf8.ValidString(s) {
		return Path{}, fmt.Errorf("the path is not valid UTF-8")
	}
	p := &parser{src: s}
	a, err := p.attrPath()
	if err != nil {
		return Path{}, err
	}
	out := Path{Attr: a}
	if p.pos < len(p.src) && p.src[p.pos] == '[' {
		if a.Sub != "" {
			return Path{}, p.errorf("a value filter follows an attribute, not a sub-attribute")
		}
		p.pos++
		if out.Filter, err = p.or(1); err != nil {
			return Path{}, err
		}
		if err := p.expect(']'); err != nil {
			return Path{}, err
		}
		if p.pos < len(p.src) && p.src[p.pos] == '.' {
			p.pos++
			if out.Sub, err = p.name(); err != nil {
				return Path{}, err
			}
		}
	}
	if p.pos != len(p.src) {
		return Path{}, p.errorf("unexpected %q after the path", p.rest(12))
	}
	return out, nil
}

// readOnly attributes a PATCH may not touch (the server's own).
var readOnly = []string{"id", "meta", "schemas", "groups"}

func isReadOnly(name string) bool { return containsFold(readOnly, name) }

// applyPatch applies ops to res, a resource as a JSON object, in order. An error is an *Error
// whose scimType says what was wrong (noTarget, invalidValue, mutability, invalidPath).
func applyPatch(res map[string]any, ops []PatchOp) error {
	for i, op := range ops {
		if err := applyOp(res, op.Op, op.Path, op.Value); err != nil {
			if e, ok := err.(*Error); ok {
				e.Detail = fmt.Sprintf("Operations[%d] (%s %s): %s", i, op.Op, op.Path, e.Detail)
				return e
			}
			return err
		}
	}
	return nil
}

func applyOp(res map[string]any, op, path string, value any) error {
	if path == "" {
		if op == "remove" {
			return &Error{Status: 400, Type: "noTarget", Detail: "remove needs a path"}
		}
		obj, ok := value.(map[string]any)
		if !ok {
			return &Error{Status: 400, Type: "invalidValue", Detail: "without a path, value must be an object of attributes"}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := obj[k]
			if isReadOnly(k) {
				continue // Okta repeats the id in a replace without a path
			}
			if ext, ok := v.(map[string]any); ok && strings.HasPrefix(strings.ToLower(k), "urn:") {
				// A schema extension's attributes, as an object under its URN.
				for sk, sv := range ext {
					if err := applyOp(res, op, k+":"+sk, sv); err != nil {
						return err
					}
				}
				continue
			}
			if err := applyOp(res, op, k, v); err != nil {
				return err
			}
		}
		return nil
	}
	p, err := ParsePath(path)
	if err != nil {
		return &Error{Status: 400, Type: "invalidPath", Detail: err.Error()}
	}
	if p.Attr.URN == "" && isReadOnly(p.Attr.Name) {
		return &Error{Status: 400, Type: "mutability", Detail: p.Attr.Name + " is read-only"}
	}
	obj := res
	if p.Attr.URN != "" {
		ext, ok := lookup(res, p.Attr.URN).(map[string]any)
		if !ok {
			if op == "remove" {
				return nil
			}
			ext = map[string]any{}
			res[keyOf(res, p.Attr.URN)] = ext
		}
		obj = ext
	}
	key := keyOf(obj, p.Attr.Name)
	cur, has := obj[key]
	if p.Filter != nil {
		return applyFiltered(obj, key, cur, p, op, value)
	}
	if p.Attr.Sub != "" {
		return applySub(obj, key, cur, has, p.Attr.Sub, op, value)
	}
	switch op {
	case "remove":
		if vs, ok := value.([]any); ok && len(vs) > 0 {
			// Entra ID removes group members with path "members" and the members as value.
			arr, _ := cur.([]any)
			obj[key] = removeValues(arr, vs)
			return nil
		}
		delete(obj, key)
	case "add":
		switch c := cur.(type) {
		case []any:
			obj[key] = appendValues(c, value)
		case map[string]any:
			if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					c[keyOf(c, k)] = v
				}
				return nil
			}
			obj[key] = value
		default:
			obj[key] = value
		}
	case "replace":
		if c, ok := cur.(map[string]any); ok && has {
			if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					c[keyOf(c, k)] = v
				}
				return nil
			}
		}
		obj[key] = value
	}
	return nil
}

// applySub changes a sub-attribute of a complex attribute (or of every element of a
// multi-valued one).
func applySub(obj map[string]any, key string, cur any, has bool, sub, op string, value any) error {
	switch c := cur.(type) {
	case map[string]any:
		if op == "remove" {
			delete(c, keyOf(c, sub))
		} else {
			c[keyOf(c, sub)] = value
		}
	case []any:
		for _, el := range c {
			if m, ok := el.(map[string]any); ok {
				if op == "remove" {
					delete(m, keyOf(m, sub))
				} else {
					m[keyOf(m, sub)] = value
				}
			}
		}
	default:
		if op == "remove" {
			return nil
		}
		if has && cur != nil {
			return &Error{Status: 400, Type: "invalidPath", Detail: key + " is not a complex attribute"}
		}
		obj[key] = map[string]any{sub: value}
	}
	return nil
}

// applyFiltered changes the elements of a multi-valued attribute that match p.Filter.
func applyFiltered(obj map[string]any, key string, cur any, p Path, op string, value any) error {
	arr, ok := cur.([]any)
	if cur != nil && !ok {
		return &Error{Status: 400, Type: "invalidPath", Detail: key + " is not multi-valued"}
	}
	matched := 0
	kept := arr[:0:0]
	for _, el := range arr {
		m, ok := el.(map[string]any)
		if !ok || !p.Filter.Match(m) {
			kept = append(kept, el)
			continue
		}
		matched++
		switch {
		case op == "remove" && p.Sub == "":
			continue // drop the element
		case op == "remove":
			delete(m, keyOf(m, p.Sub))
		case p.Sub != "":
			m[keyOf(m, p.Sub)] = value
		default:
			if vm, ok := value.(map[string]any); ok {
				for k, v := range vm {
					m[keyOf(m, k)] = v
				}
			} else {
				return &Error{Status: 400, Type: "invalidValue", Detail: "replacing matching elements needs an object value"}
			}
		}
		kept = append(kept, m)
	}
	if matched == 0 {
		switch {
		case op == "add" && p.Sub != "":
			// Entra ID adds emails[type eq "work"].value to a user with no work address: a new
			// element with what the filter says, and the value.
			el, ok := elementOf(p.Filter)
			if !ok {
				return &Error{Status: 400, Type: "noTarget", Detail: "no element matches the filter, and it does not say what a new one would be"}
			}
			el[p.Sub] = value
			kept = append(kept, el)
		case op == "remove":
			return nil
		default:
			return &Error{Status: 400, Type: "noTarget", Detail: "no element matches the filter"}
		}
	}
	obj[key] = kept
	return nil
}

// elementOf builds the element a filter of "a eq v" (and'ed) describes.
func elementOf(f Filter) (map[string]any, bool) {
	switch x := f.(type) {
	case compare:
		if x.op != "eq" || x.path.Sub != "" || x.path.URN != "" {
			return nil, false
		}
		return map[string]any{x.path.Name: x.value}, true
	case logical:
		if !x.and {
			return nil, false
		}
		l, ok1 := elementOf(x.l)
		r, ok2 := elementOf(x.r)
		if !ok1 || !ok2 {
			return nil, false
		}
		for k, v := range r {
			l[k] = v
		}
		return l, true
	}
	return nil, false
}

// appendValues adds value (one or a list) to a multi-valued attribute, skipping duplicates
// (elements with the same "value", or equal ones).
func appendValues(arr []any, value any) []any {
	add, ok := value.([]any)
	if !ok {
		add = []any{value}
	}
	out := append([]any(nil), arr...)
	for _, v := range add {
		dup := false
		for _, have := range out {
			dup = dup || sameElement(have, v)
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out
}

func removeValues(arr, remove []any) []any {
	var out []any
	for _, el := range arr {
		drop := false
		for _, r := range remove {
			drop = drop || sameElement(el, r)
		}
		if !drop {
			out = append(out, el)
		}
	}
	if out == nil {
		out = []any{}
	}
	return out
}

func sameElement(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		av, bv := lookup(am, "value"), lookup(bm, "value")
		if av != nil || bv != nil {
			return reflect.DeepEqual(av, bv)
		}
	}
	return reflect.DeepEqual(a, b)
}

// keyOf returns the key m holds for name (attribute names are case-insensitive), or name.
func keyOf(m map[string]any, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
