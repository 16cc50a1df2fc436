package sigma

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file converts a Sigma rule's searches (the maps and lists under detection) to CEL.

// value is one scalar of a Sigma field match, with the text as written (so "007" stays "007").
type value struct {
	text string
	tag  string // !!str, !!int, !!bool, !!null, !!float
	node *yaml.Node
}

func (v value) null() bool { return v.tag == "!!null" }

// modifiers are a field match's |modifiers, parsed.
type modifiers struct {
	op      string // "", contains, startswith, endswith, re, cidr, exists, gt, gte, lt, lte
	all     bool
	cased   bool
	reFlags string
}

// supportedModifiers is said in errors about the others.
const supportedModifiers = "contains, startswith, endswith, all, re (with i, m, s), cased, exists, cidr, gt, gte, lt, lte"

func parseModifiers(mods []string) (modifiers, error) {
	var m modifiers
	for _, mod := range mods {
		switch mod {
		case "contains", "startswith", "endswith", "re", "cidr", "exists", "gt", "gte", "lt", "lte":
			if m.op != "" {
				return m, fmt.Errorf("modifiers %s and %s do not go together; split the match in two", m.op, mod)
			}
			m.op = mod
		case "all":
			m.all = true
		case "cased":
			m.cased = true
		case "i", "m", "s":
			if m.op != "re" {
				return m, fmt.Errorf("modifier %s only follows re (as in |re|%s)", mod, mod)
			}
			if !strings.Contains(m.reFlags, mod) {
				m.reFlags += mod
			}
		case "":
			return m, fmt.Errorf("an empty modifier (two '|' in a row)")
		default:
			return m, fmt.Errorf("modifier %q is not supported (supported: %s); rewrite the match without it, or leave the rule out", mod, supportedModifiers)
		}
	}
	return m, nil
}

// field converts one `field|modifiers: values` entry of a search map. key is the YAML key node.
func (c *converter) field(key, val *yaml.Node) (string, bool) {
	parts := strings.Split(key.Value, "|")
	name := parts[0]
	mods, err := parseModifiers(parts[1:])
	if err != nil {
		c.errorf(key, "%v", err)
		return "", false
	}
	vals, ok := c.values(key, val)
	if !ok {
		return "", false
	}
	var target string
	var f eventField
	if name == "" {
		target, f = c.m.Keywords, eventFields[c.m.Keywords]
		if target == "" {
			c.errorf(key, "a match without a field name searches keywords, and the mapping names no keywords field; set keywords: in the mapping")
			return "", false
		}
	} else {
		var found bool
		target, f, found = c.m.target(name)
		if !found {
			c.errorf(key, "Sigma field %q has no mapping to an event field; add it to the mapping file (fields: {%s: actor}, or details.<key>) and pass --mapping", name, name)
			return "", false
		}
	}
	clauses := make([]string, 0, len(vals))
	for _, v := range vals {
		cl, err := c.match(target, f, mods, v)
		if err != nil {
			c.errorf(v.node, "%s: %v", key.Value, err)
			return "", false
		}
		clauses = append(clauses, cl)
	}
	if !mods.all && mods.op == "" && f.kind == kindInt && len(vals) > 1 {
		// Several numbers: one membership test.
		nums := make([]string, len(vals))
		for i := range vals {
			nums[i] = strings.TrimPrefix(clauses[i], "event."+target+" == ")
		}
		return "event." + target + " in [" + strings.Join(nums, ", ") + "]", true
	}
	if !mods.all && len(clauses) > 1 && allPrefixed(clauses, "event."+target+" == ") {
		// Several exact strings: one membership test (the engine indexes event.code in [...]).
		items := make([]string, len(clauses))
		for i, cl := range clauses {
			items[i] = strings.TrimPrefix(cl, "event."+target+" == ")
		}
		return "event." + target + " in [" + strings.Join(items, ", ") + "]", true
	}
	if mods.all {
		return join(clauses, " && "), true
	}
	return join(clauses, " || "), true
}

func allPrefixed(ss []string, prefix string) bool {
	for _, s := range ss {
		if !strings.HasPrefix(s, prefix) || !isLiteral(s[len(prefix):]) {
			return false
		}
	}
	return true
}

// isLiteral reports whether s is exactly one literal lit produced.
func isLiteral(s string) bool {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return false
		}
	}
	return true
}

// join joins clauses with op, parenthesised when there are several.
func join(clauses []string, op string) string {
	if len(clauses) == 1 {
		return clauses[0]
	}
	return "(" + strings.Join(clauses, op) + ")"
}

// values reads a field's value: one scalar or a list of scalars.
func (c *converter) values(key, val *yaml.Node) ([]value, bool) {
	var nodes []*yaml.Node
	switch val.Kind {
	case yaml.ScalarNode:
		nodes = []*yaml.Node{val}
	case yaml.SequenceNode:
		if len(val.Content) == 0 {
			c.errorf(val, "%s: the list of values is empty; give at least one value", key.Value)
			return nil, false
		}
		nodes = val.Content
	default:
		c.errorf(val, "%s: a value is a scalar or a list of scalars, not a %s", key.Value, nodeKind(val))
		return nil, false
	}
	out := make([]value, 0, len(nodes))
	for _, n := range nodes {
		if n.Kind != yaml.ScalarNode {
			c.errorf(n, "%s: a value in the list is a %s; values are scalars (text, numbers, true/false, null)", key.Value, nodeKind(n))
			return nil, false
		}
		if !validText(n.Value) {
			c.errorf(n, "%s: the value is not valid UTF-8", key.Value)
			return nil, false
		}
		out = append(out, value{text: n.Value, tag: n.ShortTag(), node: n})
	}
	return out, true
}

// match is the CEL for one value of a field match on event field target.
func (c *converter) match(target string, f eventField, mods modifiers, v value) (string, error) {
	switch f.kind {
	case kindString:
		return textClause("event."+target, f.lower, mods, v)
	case kindStrings:
		if v.null() && mods.op == "" {
			return "size(event." + target + ") == 0", nil
		}
		if mods.op == "exists" {
			b, err := boolValue(v, "|exists")
			if err != nil {
				return "", err
			}
			return map[bool]string{true: "size(event." + target + ") > 0", false: "size(event." + target + ") == 0"}[b], nil
		}
		cl, err := textClause("x", f.lower, mods, v)
		if err != nil {
			return "", err
		}
		return "event." + target + ".exists(x, " + cl + ")", nil
	case kindInt:
		return intClause("event."+target, mods, v)
	case kindBool:
		if mods.op != "" {
			return "", fmt.Errorf("%s is true or false; modifier %s does not apply to it", target, mods.op)
		}
		b, err := boolValue(v, target)
		if err != nil {
			return "", err
		}
		if b {
			return "event." + target, nil
		}
		return "!event." + target, nil
	case kindDetail:
		return detailClause(strings.TrimPrefix(target, "details."), mods, v)
	}
	return "", fmt.Errorf("internal: unknown field kind for %s", target)
}

// textClause matches a string expression t.
func textClause(t string, lower bool, mods modifiers, v value) (string, error) {
	switch mods.op {
	case "exists":
		b, err := boolValue(v, "|exists")
		if err != nil {
			return "", err
		}
		if b {
			return t + ` != ""`, nil
		}
		return t + ` == ""`, nil
	case "gt", "gte", "lt", "lte":
		return "", fmt.Errorf("|%s compares numbers, and this field holds text", mods.op)
	}
	if v.null() {
		return t + ` == ""`, nil
	}
	switch mods.op {
	case "re":
		return userRegexp(t, v.text, mods.reFlags)
	case "cidr":
		return cidrMatch(t, v.text)
	case "contains":
		return textMatch(t, lower, mods.cased, opContains, v.text), nil
	case "startswith":
		return textMatch(t, lower, mods.cased, opPrefix, v.text), nil
	case "endswith":
		return textMatch(t, lower, mods.cased, opSuffix, v.text), nil
	}
	return textMatch(t, lower, mods.cased, opEqual, v.text), nil
}

// intClause matches an int expression t.
func intClause(t string, mods modifiers, v value) (string, error) {
	op := "=="
	switch mods.op {
	case "":
	case "gt":
		op = ">"
	case "gte":
		op = ">="
	case "lt":
		op = "<"
	case "lte":
		op = "<="
	case "exists":
		return "", fmt.Errorf("a number field is always present; |exists does not apply to it")
	default:
		return "", fmt.Errorf("this field holds a number; |%s applies to text (use gt, gte, lt, lte or a plain number)", mods.op)
	}
	n, err := intValue(v)
	if err != nil {
		return "", err
	}
	return t + " " + op + " " + strconv.FormatInt(n, 10), nil
}

// detailClause matches details[key], whose type is only known at evaluation: each clause checks
// the type first, so a value of another type (or a missing key) does not match rather than
// failing evaluation.
func detailClause(key string, mods modifiers, v value) (string, error) {
	d := "event.details[" + lit(key) + "]"
	has := lit(key) + " in event.details"
	switch {
	case mods.op == "exists":
		b, err := boolValue(v, "|exists")
		if err != nil {
			return "", err
		}
		if b {
			return has, nil
		}
		return "!(" + has + ")", nil
	case v.null() && mods.op == "":
		return "(!(" + has + ") || " + d + " == null)", nil
	case mods.op == "gt" || mods.op == "gte" || mods.op == "lt" || mods.op == "lte" ||
		(mods.op == "" && (v.tag == "!!int" || v.tag == "!!float")):
		// JSON numbers in details are doubles.
		op := map[string]string{"": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[mods.op]
		f, err := strconv.ParseFloat(v.text, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", fmt.Errorf("|%s compares numbers; %q is not one", mods.op, v.text)
		}
		num := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(num, ".eE") {
			num += ".0"
		}
		return "(" + has + " && type(" + d + ") == double && double(" + d + ") " + op + " " + num + ")", nil
	case mods.op == "" && v.tag == "!!bool":
		b, _ := strconv.ParseBool(v.text)
		return "(" + has + " && " + d + " == " + strconv.FormatBool(b) + ")", nil
	}
	cl, err := textClause("string("+d+")", false, mods, v)
	if err != nil {
		return "", err
	}
	return "(" + has + " && type(" + d + ") == string && " + cl + ")", nil
}

func boolValue(v value, what string) (bool, error) {
	switch strings.ToLower(v.text) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s takes true or false, not %q", what, v.text)
}

func intValue(v value) (int64, error) {
	n, err := strconv.ParseInt(v.text, 10, 64)
	if err != nil || v.tag == "!!null" {
		return 0, fmt.Errorf("this field holds a whole number; %q is not one", v.text)
	}
	return n, nil
}

// search converts one search identifier's value to its alternatives (a map is one; a list of
// maps is one per map; a list of scalars is keyword matches, one each).
func (c *converter) search(name string, n *yaml.Node) ([]string, bool) {
	switch n.Kind {
	case yaml.MappingNode:
		cl, ok := c.selection(n)
		return []string{cl}, ok
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			c.errorf(n, "search %q is an empty list; give it maps of field: value or keywords", name)
			return nil, false
		}
		var out []string
		ok := true
		for _, item := range n.Content {
			switch item.Kind {
			case yaml.MappingNode:
				cl, good := c.selection(item)
				ok = ok && good
				out = append(out, cl)
			case yaml.ScalarNode:
				key := &yaml.Node{Kind: yaml.ScalarNode, Value: "|contains", Line: item.Line, Column: item.Column}
				cl, good := c.field(key, item)
				ok = ok && good
				out = append(out, cl)
			default:
				c.errorf(item, "search %q: a list item is a map of field: value or a keyword, not a %s", name, nodeKind(item))
				ok = false
			}
		}
		return out, ok
	}
	c.errorf(n, "search %q is a %s; a search is a map of field: value, a list of such maps, or a list of keywords", name, nodeKind(n))
	return nil, false
}

// selection converts a map of field matches, all of which must hold. Matches on the event code
// come first: they are the cheapest and let the engine skip the rule for other codes.
func (c *converter) selection(n *yaml.Node) (string, bool) {
	if len(n.Content) == 0 {
		c.errorf(n, "an empty map matches every event; give it at least one field: value")
		return "", false
	}
	type clause struct {
		cel  string
		code bool
	}
	var cls []clause
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		cl, good := c.field(k, v)
		if !good {
			ok = false
			continue
		}
		name := strings.Split(k.Value, "|")[0]
		t, _, _ := c.m.target(name)
		cls = append(cls, clause{cel: cl, code: t == "code"})
	}
	slices.SortStableFunc(cls, func(a, b clause) int {
		switch {
		case a.code == b.code:
			return 0
		case a.code:
			return -1
		}
		return 1
	})
	parts := make([]string, len(cls))
	for i, cl := range cls {
		parts[i] = cl.cel
	}
	if len(parts) == 0 {
		return "", false
	}
	return join(parts, " && "), ok
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "map"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "YAML alias"
	}
	return "scalar"
}
