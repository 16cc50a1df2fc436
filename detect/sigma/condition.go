package sigma

// This file converts a Sigma rule's condition (parsed by sigma-go), timeframe and aggregation.

import (
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	sg "github.com/bradleyjkemp/sigma-go"
	"go.yaml.in/yaml/v3"
)

// detection converts the detection map: the searches, the condition and the timeframe.
func (c *converter) detection(det *yaml.Node) (cond string, agg *aggregation, window time.Duration, ok bool) {
	searches := map[string][]string{}
	var condNode, timeNode *yaml.Node
	ok = true
	for i := 0; i+1 < len(det.Content); i += 2 {
		k, v := det.Content[i], det.Content[i+1]
		switch k.Value {
		case "condition":
			condNode = v
		case "timeframe":
			timeNode = v
		default:
			alts, good := c.search(k.Value, v)
			if !good {
				ok = false
				continue
			}
			searches[k.Value] = alts
		}
	}
	if condNode == nil {
		c.errorf(det, "detection has no condition; add one, e.g. condition: selection")
		return "", nil, 0, false
	}
	if !ok {
		return "", nil, 0, false
	}
	var texts []*yaml.Node
	switch condNode.Kind {
	case yaml.ScalarNode:
		texts = []*yaml.Node{condNode}
	case yaml.SequenceNode:
		texts = condNode.Content
	default:
		c.errorf(condNode, "condition is text or a list of texts")
		return "", nil, 0, false
	}
	if len(texts) == 0 {
		c.errorf(condNode, "condition is an empty list")
		return "", nil, 0, false
	}
	var parts []string
	for _, t := range texts {
		if t.Kind != yaml.ScalarNode {
			c.errorf(t, "a condition is text")
			return "", nil, 0, false
		}
		parsed, err := sg.ParseCondition(t.Value)
		if err != nil {
			c.errorf(t, "condition %q does not parse: %v (operators are lowercase and, or, not, 1 of, all of; a pattern such as sel_* needs a letter or '_' right before its '*')", t.Value, err)
			return "", nil, 0, false
		}
		if parsed.Aggregation != nil {
			if len(texts) > 1 {
				c.errorf(t, "an aggregation (| count() …) is supported in a rule with one condition only; split the rule")
				return "", nil, 0, false
			}
			a, err := toAggregation(parsed.Aggregation)
			if err != nil {
				c.errorf(t, "%v", err)
				return "", nil, 0, false
			}
			agg = a
		}
		cel, err := translate(parsed.Search, searches)
		if err != nil {
			c.errorf(t, "condition %q: %v", t.Value, err)
			return "", nil, 0, false
		}
		parts = append(parts, cel)
	}
	cond = join(parts, " || ")
	if timeNode != nil {
		d, err := parseTimeframe(timeNode.Value)
		if err != nil {
			c.errorf(timeNode, "timeframe: %v", err)
			return "", nil, 0, false
		}
		window = d
		if agg == nil {
			c.errorf(timeNode, "timeframe without an aggregation (| count() … > N) means nothing; remove it or add the aggregation")
			return "", nil, 0, false
		}
	} else if agg != nil {
		c.errorf(condNode, "an aggregation (| count() …) needs a timeframe (e.g. timeframe: 10m): Rampart counts within a sliding window")
		return "", nil, 0, false
	}
	return cond, agg, window, true
}

// parseTimeframe reads Sigma's timeframe: a number and s, m, h or d.
func parseTimeframe(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("%q is not a duration such as 30s, 15m, 2h or 7d", s)
	}
	n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || n <= 0 || n > 100000 {
		return 0, fmt.Errorf("%q is not a duration such as 30s, 15m, 2h or 7d", s)
	}
	unit := map[byte]time.Duration{'s': time.Second, 'm': time.Minute, 'h': time.Hour, 'd': 24 * time.Hour}[s[len(s)-1]]
	if unit == 0 {
		return 0, fmt.Errorf("%q: the unit is s, m, h or d (months and years are too long a window)", s)
	}
	return time.Duration(n) * unit, nil
}

// translate turns a condition AST into CEL over the converted searches.
func translate(e sg.SearchExpr, searches map[string][]string) (string, error) {
	switch e := e.(type) {
	case sg.And:
		return joinExprs(e, " && ", searches)
	case sg.Or:
		return joinExprs(e, " || ", searches)
	case sg.Not:
		inner, err := translate(e.Expr, searches)
		if err != nil {
			return "", err
		}
		return "!" + paren(inner), nil
	case sg.SearchIdentifier:
		alts, ok := searches[e.Name]
		if !ok {
			return "", fmt.Errorf("%q is not a search of this rule (searches: %s)", e.Name, strings.Join(sortedKeys(searches), ", "))
		}
		return join(alts, " || "), nil
	case sg.OneOfIdentifier:
		alts, ok := searches[e.Ident.Name]
		if !ok {
			return "", fmt.Errorf("%q is not a search of this rule (searches: %s)", e.Ident.Name, strings.Join(sortedKeys(searches), ", "))
		}
		return join(alts, " || "), nil
	case sg.AllOfIdentifier:
		alts, ok := searches[e.Ident.Name]
		if !ok {
			return "", fmt.Errorf("%q is not a search of this rule (searches: %s)", e.Ident.Name, strings.Join(sortedKeys(searches), ", "))
		}
		return join(alts, " && "), nil
	case sg.OneOfPattern:
		return ofPattern(e.Pattern, " || ", searches)
	case sg.AllOfPattern:
		return ofPattern(e.Pattern, " && ", searches)
	case sg.OneOfThem:
		return ofPattern("*", " || ", searches)
	case sg.AllOfThem:
		return ofPattern("*", " && ", searches)
	}
	return "", fmt.Errorf("a %T in a condition is not supported", e)
}

func paren(s string) string {
	if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") && balanced(s[1:len(s)-1]) {
		return s
	}
	return "(" + s + ")"
}

// balanced reports whether s's parentheses outside string literals balance without going
// negative, i.e. whether wrapping s in one pair is the pair around the whole.
func balanced(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

func joinExprs(es []sg.SearchExpr, op string, searches map[string][]string) (string, error) {
	parts := make([]string, 0, len(es))
	for _, sub := range es {
		s, err := translate(sub, searches)
		if err != nil {
			return "", err
		}
		parts = append(parts, paren(s))
	}
	return join(parts, op), nil
}

// ofPattern is `1 of pattern` (op ||) or `all of pattern` (op &&). "them" is every search whose
// name does not start with '_', as in Sigma.
func ofPattern(pattern, op string, searches map[string][]string) (string, error) {
	var parts []string
	for _, name := range sortedKeys(searches) {
		if pattern == "*" && strings.HasPrefix(name, "_") {
			continue
		}
		if ok, _ := path.Match(pattern, name); ok {
			parts = append(parts, paren(join(searches[name], " || ")))
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("no search matches %q (searches: %s)", pattern, strings.Join(sortedKeys(searches), ", "))
	}
	return join(parts, op), nil
}

// aggregation is a supported Sigma aggregation: count() > N, count(field) > N, sum(field) > N,
// each optionally by a field.
type aggregation struct {
	fn, field, by string
	op            sg.ComparisonOp
	n             float64
}

func toAggregation(a sg.AggregationExpr) (*aggregation, error) {
	cmp, ok := a.(sg.Comparison)
	if !ok {
		return nil, fmt.Errorf("only count() and sum() aggregations compared with a number are supported (| count() by field > N)")
	}
	var out aggregation
	switch f := cmp.Func.(type) {
	case sg.Count:
		out = aggregation{fn: "count", field: f.Field, by: f.GroupedBy}
	case sg.Sum:
		out = aggregation{fn: "sum", field: f.Field, by: f.GroupedBy}
	default:
		return nil, fmt.Errorf("aggregation %T is not supported (count and sum are); express it as a DetectionRule baseline by hand", cmp.Func)
	}
	out.op, out.n = cmp.Op, cmp.Threshold
	if out.op != sg.GreaterThan && out.op != sg.GreaterThanEqual {
		return nil, fmt.Errorf("an aggregation compares with > or >= (Rampart fires on activity above a threshold, not on its absence); %q is not supported", out.op)
	}
	if out.n != math.Trunc(out.n) || out.n < 0 || out.n > maxThreshold {
		return nil, fmt.Errorf("the threshold %v must be a whole number from 0 to %d", out.n, maxThreshold)
	}
	if out.fn == "sum" && out.field == "" {
		return nil, fmt.Errorf("sum() needs a field, e.g. sum(bytes_out)")
	}
	return &out, nil
}

// aggregate sets r's threshold and group_by from agg.
func (c *converter) aggregate(r *Rule, det *yaml.Node, agg *aggregation, window time.Duration) bool {
	t := &Threshold{Window: formatWindow(window)}
	n := int64(agg.n)
	if agg.op == sg.GreaterThan {
		n++ // the threshold fires at count >= Count, and over is exclusive: > N is >= N+1
	}
	if agg.by != "" {
		target, f, ok := c.m.target(agg.by)
		if !ok {
			c.errorf(det, "aggregation by %q: the field has no mapping to an event field; add it to the mapping file", agg.by)
			return false
		}
		if f.kind == kindBool {
			c.errorf(det, "aggregation by %q (%s): grouping by true/false is not supported", agg.by, target)
			return false
		}
		r.Spec.GroupBy = []string{target}
	}
	var field string
	var fk eventField
	if agg.field != "" {
		var ok bool
		field, fk, ok = c.m.target(agg.field)
		if !ok {
			c.errorf(det, "aggregation %s(%s): the field has no mapping to an event field; add it to the mapping file", agg.fn, agg.field)
			return false
		}
	}
	switch agg.fn {
	case "count":
		if n < 1 {
			n = 1
		}
		t.Count = int(n)
		t.Distinct = field // count(field) counts the field's distinct values
	case "sum":
		if fk.kind != kindInt {
			c.errorf(det, "sum(%s): %s is not a number field (bytes_out, bytes_in, …)", agg.field, field)
			return false
		}
		// sum > N fires when the sum is above N; sum >= N when it is above N-1.
		over := int64(agg.n)
		if agg.op == sg.GreaterThanEqual {
			over--
		}
		if over < 1 {
			c.errorf(det, "sum(%s) must be compared with a number of at least 1 (> 1 or >= 2)", agg.field)
			return false
		}
		t.Sum, t.Over = field, over
	}
	r.Spec.Threshold = t
	return true
}

// formatWindow writes a duration the way policy files do ("10m", "24h").
func formatWindow(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
