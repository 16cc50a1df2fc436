package sigma

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// refMatch is a brute-force reference for Sigma's matching of one text value, written without
// regular expressions: the value's wildcards (* any run, ? one character; \* \? \\ escapes) are
// matched rune by rune, case-insensitively (simple folding) unless cased.
func refMatch(field, value, op string, cased bool) bool {
	type tok struct {
		r    rune
		wild byte
	}
	var pat []tok
	rs := []rune(value)
	for i := 0; i < len(rs); i++ {
		switch {
		case rs[i] == '\\' && i+1 < len(rs) && (rs[i+1] == '*' || rs[i+1] == '?' || rs[i+1] == '\\'):
			pat = append(pat, tok{r: rs[i+1]})
			i++
		case rs[i] == '*' || rs[i] == '?':
			pat = append(pat, tok{wild: byte(rs[i])})
		default:
			pat = append(pat, tok{r: rs[i]})
		}
	}
	switch op {
	case "contains":
		pat = append(append([]tok{{wild: '*'}}, pat...), tok{wild: '*'})
	case "startswith":
		pat = append(pat, tok{wild: '*'})
	case "endswith":
		pat = append([]tok{{wild: '*'}}, pat...)
	}
	eq := func(a, b rune) bool {
		if cased {
			return a == b
		}
		return strings.EqualFold(string(a), string(b))
	}
	f := []rune(field)
	var m func(p, s int) bool
	m = func(p, s int) bool {
		if p == len(pat) {
			return s == len(f)
		}
		switch pat[p].wild {
		case '*':
			for k := s; k <= len(f); k++ {
				if m(p+1, k) {
					return true
				}
			}
			return false
		case '?':
			return s < len(f) && m(p+1, s+1)
		}
		return s < len(f) && eq(pat[p].r, f[s]) && m(p+1, s+1)
	}
	return m(0, 0)
}

// ruleFor is a Sigma rule matching value on Message with the given modifiers, written by the YAML
// encoder so any value is encoded as that value.
func ruleFor(field, value, op string, cased bool) []byte {
	key := field
	if op != "" {
		key += "|" + op
	}
	if cased {
		key += "|cased"
	}
	doc := map[string]any{
		"title":     "property",
		"detection": map[string]any{"sel": map[string]any{key: value}, "condition": "sel"},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		panic(err)
	}
	var back any
	if yaml.Unmarshal(b, &back) != nil {
		// The encoder wrote a block scalar it cannot read back itself (a value starting with a
		// tab: testdata/fuzz/FuzzValue/c78cbd4c0d9bfd5e); write the value double-quoted, with
		// escapes YAML shares with Go.
		b = []byte("title: property\ndetection:\n  condition: sel\n  sel:\n    " + key + ": " + strconv.QuoteToASCII(value) + "\n")
	}
	return b
}

var ops = []string{"", "contains", "startswith", "endswith"}

// checkLowerValue is checkValue for a field that holds lowercase ASCII (the actor): the field
// values tried are the lowercase ASCII ones.
func checkLowerValue(t *testing.T, value, op string, cased bool, fields []string) {
	t.Helper()
	rules, err := Convert([]File{{Name: "p.yml", Data: ruleFor("User", value, op, cased)}}, DefaultMapping())
	if err != nil {
		if strings.Contains(err.Error(), "a bug in the converter") {
			t.Fatalf("value %q op %q: %v", value, op, err)
		}
		return
	}
	match := compile(t, rules[0].Spec.Condition)
	for _, f := range fields {
		f = strings.ToLower(f)
		if !isLowerASCII(f) {
			continue
		}
		got := match(testEvent{Actor: f})
		if want := refMatch(f, value, op, cased); got != want {
			t.Fatalf("value %q op %q cased %v on actor %q: converted %v, reference %v\ncondition %s", value, op, cased, f, got, want, rules[0].Spec.Condition)
		}
	}
}

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || (s[i] >= 'A' && s[i] <= 'Z') {
			return false
		}
	}
	return true
}

// checkValue converts a match of value on message and compares the converted rule with the
// reference on each candidate field value.
func checkValue(t *testing.T, value, op string, cased bool, fields []string) {
	t.Helper()
	rules, err := Convert([]File{{Name: "p.yml", Data: ruleFor("Message", value, op, cased)}}, DefaultMapping())
	if err != nil {
		if strings.Contains(err.Error(), "a bug in the converter") || strings.Contains(err.Error(), "p.yml:") && !strings.Contains(err.Error(), "the file contains") {
			t.Fatalf("value %q op %q: %v", value, op, err)
		}
		return // a value the YAML text rule refuses (e.g. a bidi control) is refused whole
	}
	match := compile(t, rules[0].Spec.Condition)
	for _, f := range fields {
		if !utf8.ValidString(f) {
			continue
		}
		got := match(testEvent{Message: f})
		if want := refMatch(f, value, op, cased); got != want {
			t.Fatalf("value %q op %q cased %v on %q: converted %v, reference %v\ncondition %s", value, op, cased, f, got, want, rules[0].Spec.Condition)
		}
	}
}

// instances derives field values from a Sigma value: the value itself, with its wildcards filled
// in, its case flipped, and cut short.
func instances(rng *rand.Rand, value string) []string {
	fill := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			switch r {
			case '*':
				b.WriteString([]string{"", "x", "Ab*", "\n"}[rng.IntN(4)])
			case '?':
				b.WriteString([]string{"q", "É", "?"}[rng.IntN(3)])
			case '\\':
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	out := []string{value, fill(value), strings.ToUpper(fill(value)), strings.ToLower(fill(value)), "", "x" + fill(value) + "y"}
	if r := []rune(value); len(r) > 1 {
		out = append(out, string(r[1:]), string(r[:len(r)-1]))
	}
	return out
}

// TestValuesAgainstReference: random values (wildcards, escapes, quotes, letters of both cases,
// non-ASCII) matched as the converter writes them agree with the brute-force reference.
func TestValuesAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 1))
	alphabet := []string{"a", "A", "b", "*", "?", `\`, `"`, "'", ".", "é", "É", " ", ")", "|", "ǅ", "K", "ß", "$", "\t", "ſ", "k", "S"}
	for range 1500 {
		var b strings.Builder
		for range rng.IntN(7) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		v := b.String()
		op, cased := ops[rng.IntN(len(ops))], rng.IntN(3) == 0
		checkValue(t, v, op, cased, instances(rng, v))
		checkLowerValue(t, v, op, cased, append(instances(rng, v), "ks", "s", "k"))
	}
}

// TestHostileValuesStayValues: values written to break out of a CEL string literal or a regular
// expression are matched as text, never run as CEL.
func TestHostileValuesStayValues(t *testing.T) {
	for _, v := range []string{
		`" || true || "`,
		`\" || true || \"`,
		`x") || true || ("`,
		`'; event.failed || '`,
		"line\nbreak\" || true",
		`\`, `\\`, `\\\*`, `"\u0000"`, "\u0000\u001b[31m", "\u2028\u2029", "\U0001F600",
		`.*`, `^$`, `(?i)`, `[a-z]+`, `\E.*\Q`,
		strings.Repeat(`"`, 200),
	} {
		for _, op := range ops {
			for _, cased := range []bool{false, true} {
				checkValue(t, v, op, cased, []string{v, "true", "anything", "", v + v, strings.ToUpper(v)})
			}
		}
	}
	// A huge value stays one literal, or is refused for length: never truncated into another rule.
	big := strings.Repeat("a", MaxConditionLen)
	if _, err := Convert([]File{{Name: "big.yml", Data: ruleFor("Message", big, "", true)}}, DefaultMapping()); err == nil || !strings.Contains(err.Error(), "the limit is 4096") {
		t.Errorf("huge value: %v", err)
	}
}

// TestCodeIsLowercased: a case-insensitive match on the event code is an exact match on the
// lowercased value (codes are lowercase ASCII), the form the engine indexes rules by.
func TestCodeIsLowercased(t *testing.T) {
	rules, err := Convert([]File{{Name: "c.yml", Data: ruleFor("EventCode", "Weights.Read", "", false)}}, DefaultMapping())
	if err != nil {
		t.Fatal(err)
	}
	if rules[0].Spec.Condition != `event.code == "weights.read"` {
		t.Fatalf("condition %s", rules[0].Spec.Condition)
	}
	lr, err := Load(rules)
	if err != nil {
		t.Fatal(err)
	}
	if got := lr[0].Codes(); len(got) != 1 || got[0] != "weights.read" {
		t.Errorf("codes %v: the engine cannot index the rule", got)
	}
}

// FuzzConvert: any file either converts to rules that load, or is refused with an error; never
// a panic, never a converted rule the policy loader refuses.
func FuzzConvert(f *testing.F) {
	f.Add([]byte("title: t\ndetection:\n  sel: {User|contains: x, dst_port: 1}\n  condition: sel\n"))
	f.Add([]byte("title: t\ndetection:\n  a: [k1, k2]\n  b: [{unmapped.x|re: '^a'}, {SourceIp|cidr: 10.0.0.0/9}]\n  timeframe: 5m\n  condition: 1 of them and not a | count(Resource) by User > 2\n"))
	f.Add([]byte("title: t\ndetection:\n  sel: {Message|contains|all: ['\"', '\\\\*']}\n  condition: all of sel\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := Convert([]File{{Name: "f.yml", Data: data}}, DefaultMapping())
		if err != nil {
			if strings.Contains(err.Error(), "a bug in the converter") {
				t.Fatalf("%v", err)
			}
			return
		}
		if _, err := Load(rules); err != nil {
			t.Fatalf("converted rules do not load: %v", err)
		}
	})
}

// FuzzValue: any value, under any text modifier, matches exactly what the reference says.
func FuzzValue(f *testing.F) {
	f.Add(`" || true || "`, uint8(0), "x")
	f.Add(`a*b?\*`, uint8(5), "AXXB?*")
	f.Fuzz(func(t *testing.T, value string, mode uint8, field string) {
		if !utf8.ValidString(value) || len(value) > 64 || len(field) > 64 {
			return
		}
		rng := rand.New(rand.NewPCG(uint64(len(value)), uint64(mode)))
		checkValue(t, value, ops[int(mode)%len(ops)], mode&4 != 0, append(instances(rng, value), field))
	})
}
