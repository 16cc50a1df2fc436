package scim

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

func resource(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The filters Entra ID and Okta send (their documentation's examples), and the RFC's grammar.
func TestFilter(t *testing.T) {
	user := resource(t, `{"id":"2819c223-7f76-453a-919d-413861904646","userName":"Test_User_dfeef4c5@contoso.com","externalId":"00ujl29u0le5T6Aj10h7",
		"active":true,"name":{"givenName":"Barbara","familyName":"Jensen"},"emails":[{"type":"work","value":"bjensen@example.com","primary":true},{"type":"home","value":"babs@example.org"}],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"701984","manager":{"value":"26118915"}},"meta":{"lastModified":"2011-05-13T04:42:34Z"}}`)
	group := resource(t, `{"id":"g1","displayName":"weights-owners","members":[{"value":"u1","display":"bob"},{"value":"u2"}]}`)
	for _, tc := range []struct {
		filter string
		res    map[string]any
		want   bool
	}{
		{`userName eq "Test_User_dfeef4c5@contoso.com"`, user, true},          // Entra: Get User by query
		{`userName eq "test_user_dfeef4c5@CONTOSO.com"`, user, true},          // userName is case-insensitive
		{`userName eq "someone else"`, user, false},                           // Entra: zero results
		{`externalId eq "00ujl29u0le5T6Aj10h7"`, user, true},                  // externalId is case-exact
		{`externalId eq "00UJL29U0LE5T6AJ10H7"`, user, false},                 //
		{`emails[type eq "work"].value eq "bjensen@example.com"`, user, true}, // Entra queries by work email
		{`emails[type eq "home" and value co "babs"]`, user, true},            // RFC value filter
		{`emails.value ew "example.org"`, user, true},                         // any element
		{`name.familyName sw "J" and active eq true`, user, true},             //
		{`not (active eq true) or userName pr`, user, true},                   //
		{`not (active eq true)`, user, false},                                 //
		{`title pr`, user, false},                                             // absent
		{`title ne "x"`, user, true},                                          // ne over absent
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, user, false},          //
		{`meta.lastModified ge "2011-05-13T04:42:34Z"`, user, true},           //
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`, user, true},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915"`, user, true},
		{`displayName eq "weights-owners"`, group, true}, // Entra: Get Group by displayName
		{`members[value eq "u2"]`, group, true},          //
		{`members.display eq "BOB"`, group, true},        //
		{`(displayName eq "x" or displayName eq "WEIGHTS-OWNERS") and members pr`, group, true},
		{`UserName Eq "Test_User_dfeef4c5@contoso.com"`, user, true}, // names and operators in any case
	} {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Errorf("%s: %v", tc.filter, err)
			continue
		}
		if got := f.Match(tc.res); got != tc.want {
			t.Errorf("%s: match = %v, want %v (parsed as %s)", tc.filter, got, tc.want, f)
		}
		g, err := ParseFilter(f.String())
		if err != nil || g.String() != f.String() {
			t.Errorf("%s: canonical form %s does not parse back to itself: %v", tc.filter, f, err)
		}
	}
	for _, bad := range []string{``, `userName`, `userName eq`, `userName eq "x`, `userName xx "x"`, `(userName eq "x"`, `userName eq "x")`,
		`emails[type eq "work"`, `emails.value[type eq "x"]`, `userName eq 'x'`, `1abc eq "x"`, `urn:foo eq "x"`, `userName eq "\q"`,
		`userName eq "x" and`, `not userName eq "x"`, strings.Repeat("(", 40) + `a eq "b"` + strings.Repeat(")", 40), strings.Repeat("a", maxFilterLen+1)} {
		if f, err := ParseFilter(bad); err == nil {
			t.Errorf("%q parsed as %s; want an error", bad, f)
		}
	}
}

// A randomized property test against a reference: random filters over a few attributes are
// written out, parsed, and matched against random resources; the parsed filter must decide as
// the tree it was written from, evaluated directly.
func TestFilterAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 2026))
	attrs := []string{"userName", "title", "active"}
	strVals := []string{"alice", "Alice", "bob", "", "a\"b"}
	type node struct {
		kind        string // cmp, and, or, not, pr
		attr, op    string
		val         any
		left, right *node
	}
	var gen func(depth int) *node
	gen = func(depth int) *node {
		switch k := rng.IntN(6); {
		case depth < 4 && k == 0:
			return &node{kind: "and", left: gen(depth + 1), right: gen(depth + 1)}
		case depth < 4 && k == 1:
			return &node{kind: "or", left: gen(depth + 1), right: gen(depth + 1)}
		case depth < 4 && k == 2:
			return &node{kind: "not", left: gen(depth + 1)}
		case k == 3:
			return &node{kind: "pr", attr: attrs[rng.IntN(len(attrs))]}
		}
		a := attrs[rng.IntN(len(attrs))]
		if a == "active" {
			return &node{kind: "cmp", attr: a, op: []string{"eq", "ne"}[rng.IntN(2)], val: rng.IntN(2) == 0}
		}
		return &node{kind: "cmp", attr: a, op: []string{"eq", "ne", "co", "sw", "ew"}[rng.IntN(5)], val: strVals[rng.IntN(len(strVals))]}
	}
	var text func(n *node) string
	text = func(n *node) string {
		switch n.kind {
		case "and", "or":
			return "(" + text(n.left) + " " + n.kind + " " + text(n.right) + ")"
		case "not":
			return "not (" + text(n.left) + ")"
		case "pr":
			return n.attr + " pr"
		}
		return n.attr + " " + n.op + " " + literal(n.val)
	}
	var eval func(n *node, r map[string]any) bool
	eval = func(n *node, r map[string]any) bool {
		switch n.kind {
		case "and":
			return eval(n.left, r) && eval(n.right, r)
		case "or":
			return eval(n.left, r) || eval(n.right, r)
		case "not":
			return !eval(n.left, r)
		case "pr":
			v, ok := r[n.attr]
			return ok && v != ""
		}
		v, ok := r[n.attr]
		if !ok {
			return n.op == "ne"
		}
		if b, isBool := v.(bool); isBool {
			w, wb := n.val.(bool)
			if n.op == "eq" {
				return wb && b == w
			}
			return !wb || b != w
		}
		h, w := strings.ToLower(v.(string)), strings.ToLower(n.val.(string))
		switch n.op {
		case "eq":
			return h == w
		case "ne":
			return h != w
		case "co":
			return strings.Contains(h, w)
		case "sw":
			return strings.HasPrefix(h, w)
		}
		return strings.HasSuffix(h, w)
	}
	for i := range 20000 {
		n := gen(0)
		src := text(n)
		f, err := ParseFilter(src)
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, src, err)
		}
		r := map[string]any{}
		for _, a := range attrs {
			if rng.IntN(3) == 0 {
				continue
			}
			if a == "active" {
				r[a] = rng.IntN(2) == 0
			} else {
				r[a] = strVals[rng.IntN(len(strVals))]
			}
		}
		if got, want := f.Match(r), eval(n, r); got != want {
			t.Fatalf("case %d: %s on %v: %v, want %v (parsed as %s)", i, src, r, got, want, f)
		}
	}
}

// FuzzParseFilter: any text either parses to a filter whose canonical form parses back to
// itself, and that matches a resource without failing, or is refused; it never panics.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "bjensen"`, `emails[type eq "work"].value eq "x@y"`, `not (a pr) or b gt 1.5`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "1"`, `members[value eq "u"]`, `a eq null and b ne false`,
		`title co "\u00e9\n"`, `((((a eq "b"))))`} {
		f.Add(s)
	}
	res := map[string]any{"userName": "bjensen", "emails": []any{map[string]any{"type": "work", "value": "x@y"}}, "a": 1.0, "b": false,
		"members": []any{map[string]any{"value": "u"}, "scalar"}, "title": nil}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			return
		}
		_ = flt.Match(res)
		again, err := ParseFilter(flt.String())
		if err != nil {
			t.Fatalf("%q parsed as %s, which does not parse: %v", s, flt, err)
		}
		if again.String() != flt.String() {
			t.Fatalf("%q: canonical %s reparses as %s", s, flt, again)
		}
		if again.Match(res) != flt.Match(res) {
			t.Fatalf("%q: the canonical form decides differently", s)
		}
	})
}
