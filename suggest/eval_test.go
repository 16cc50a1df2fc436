package suggest_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

// The gate of issue 18: the second catalogue (another lab's naming, written by someone who did
// not tune the engine) and its labelled set must reach 95% overall and 90% in every category.
const (
	gateOverall  = 0.95
	gateCategory = 0.90
	gateMinCases = 300
)

var lab2 = filepath.Join(testdata, "lab2")

func TestEvaluationSecondCatalogue(t *testing.T) {
	pol, err := policy.Load(os.DirFS(filepath.Join(lab2, "policy")))
	if err != nil {
		t.Fatalf("the second catalogue does not load: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(lab2, "eval.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := suggest.ParseCases("lab2/eval.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) < gateMinCases {
		t.Fatalf("the labelled set has %d cases; it must have at least %d", len(cs), gateMinCases)
	}
	r := suggest.New(pol).Evaluate(cs)
	for _, m := range r.Misses {
		t.Logf("miss: lab2/eval.yaml:%d [%s] %s: want %s, got %s %v %s", m.Line, m.Category, what(m.Case), m.Expect, m.Status, m.Got, m.Error)
	}
	for _, n := range r.CategoryNames() {
		c := r.Categories[n]
		t.Logf("%-16s %5.1f%% (%d/%d)", n, 100*c.Accuracy, c.Correct, c.Total)
	}
	t.Logf("overall %.1f%% (%d/%d)", 100*r.Accuracy, r.Correct, r.Total)
	if r.Accuracy < gateOverall {
		t.Errorf("accuracy %.1f%% is below the gate of %.0f%%", 100*r.Accuracy, 100*gateOverall)
	}
	for _, n := range r.Below(gateCategory) {
		c := r.Categories[n]
		t.Errorf("category %s: %.1f%% (%d/%d) is below the gate of %.0f%%", n, 100*c.Accuracy, c.Correct, c.Total, 100*gateCategory)
	}
}

func what(c suggest.Case) string {
	if c.Intent != "" {
		return fmt.Sprintf("%q", c.Intent)
	}
	return c.Action + " on " + c.Resource
}

func TestParseCasesFormat(t *testing.T) {
	src := `cases:
- intent: "read the frontier-7 weights"
  expect: weights-reader-frontier-7
  category: plain
- intent: "read the frontier-7 weights and call the openai api"
  expect: [weights-reader-frontier-7, egress-openai]
  category: multi-need
  note: two needs, two roles
- intent: "read the zephyr-9 weights"
  expect: none
  category: unknown-noun
- {resource: weights/frontier-7, action: read, expect: weights-reader-frontier-7}
- intent: "a role literally named none"
  expect: [none]
`
	cs, err := suggest.ParseCases("t.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []suggest.Expectation{
		{Roles: []string{"weights-reader-frontier-7"}},
		{Roles: []string{"weights-reader-frontier-7", "egress-openai"}},
		{None: true},
		{Roles: []string{"weights-reader-frontier-7"}},
		{Roles: []string{"none"}},
	}
	for i, c := range cs {
		if !reflect.DeepEqual(c.Expect, want[i]) {
			t.Errorf("case %d: expect %#v, want %#v", i, c.Expect, want[i])
		}
	}
	if cs[1].Category != "multi-need" || cs[1].Note != "two needs, two roles" || cs[1].Line != 5 || cs[3].Line != 12 {
		t.Errorf("case 1 %+v, case 3 line %d", cs[1], cs[3].Line)
	}
	// The report's JSON writes expect as the file does.
	b, _ := json.Marshal(cs[:3])
	if s := string(b); !strings.Contains(s, `"expect":"weights-reader-frontier-7"`) || !strings.Contains(s, `"expect":["weights-reader-frontier-7","egress-openai"]`) || !strings.Contains(s, `"expect":"none"`) {
		t.Errorf("json %s", s)
	}
	var back []suggest.Case
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back[2].Expect, want[2]) || !reflect.DeepEqual(back[1].Expect, want[1]) {
		t.Errorf("json round trip %+v %v", back, err)
	}
}

// Every mistake in a labelled set is refused with its file, line and field.
func TestParseCasesErrors(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"no expect", "cases:\n- intent: read x\n", "t.yaml:2:3: cases[0].expect: expect is required"},
		{"empty set", "cases:\n- intent: read x\n  expect: []\n", "t.yaml:3:3: cases[0].expect: the list of roles is empty; write none"},
		{"duplicate in set", "cases:\n- intent: read x\n  expect: [a, b, a]\n", "t.yaml:3:18: cases[0].expect[2]: role a is listed twice"},
		{"mapping", "cases:\n- intent: read x\n  expect: {role: a}\n", "cases[0].expect: expected a role, a list of roles or none, got a mapping"},
		{"nested list", "cases:\n- intent: read x\n  expect: [[a]]\n", "cases[0].expect[0]: expected a role name, got a list"},
		{"bad role", "cases:\n- intent: read x\n  expect: Weights Reader\n", "t.yaml:3:3: cases[0].expect: role: name \"Weights Reader\" has"},
		{"unknown field", "cases:\n- intent: read x\n  expect: a\n  categroy: plain\n", "t.yaml:4:3: cases[0].categroy: unknown field"},
		{"bad category", "cases:\n- intent: read x\n  expect: a\n  category: Multi Need\n", "t.yaml:4:3: cases[0].category: category: name"},
		{"both forms", "cases:\n- intent: read x\n  resource: weights/a\n  action: read\n  expect: a\n", "t.yaml:2:3: cases[0]: give an intent or a resource and an action, not both"},
		{"neither", "cases:\n- expect: a\n", "cases[0]: give an intent, or a resource and an action"},
		{"blank intent", "cases:\n- intent: '   '\n  expect: a\n", "cases[0].intent: intent is blank"},
		{"bad resource", "cases:\n- resource: Weights/A\n  action: read\n  expect: a\n", "t.yaml:2:3: cases[0].resource:"},
		{"wildcard action", "cases:\n- resource: weights/a\n  action: '*'\n  expect: a\n", "cases[0].action: action \"*\": name one concrete action"},
		{"no cases", "cases: []\n", "t.yaml: no cases"},
		{"two documents", "cases: []\n---\ncases: []\n", "found 2 documents"},
		{"not yaml", "cases: [\n", "t.yaml"},
	} {
		_, err := suggest.ParseCases("t.yaml", []byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
	// All errors are reported, not only the first.
	_, err := suggest.ParseCases("t.yaml", []byte("cases:\n- intent: a\n- intent: b\n  expect: []\n"))
	if err == nil || !strings.Contains(err.Error(), "cases[0].expect") || !strings.Contains(err.Error(), "cases[1].expect") {
		t.Errorf("error %v, want both cases named", err)
	}
}

func TestExpectationMatches(t *testing.T) {
	one := suggest.Expectation{Roles: []string{"a"}}
	set := suggest.Expectation{Roles: []string{"a", "b"}}
	none := suggest.Expectation{None: true}
	for _, c := range []struct {
		x      suggest.Expectation
		status string
		roles  []string
		want   bool
	}{
		{one, suggest.StatusSuggested, []string{"a"}, true},
		{one, suggest.StatusSuggested, []string{"b"}, false},
		{one, suggest.StatusSuggested, []string{"a", "b"}, false}, // an extra role is wrong
		{one, suggest.StatusNothingFits, nil, false},
		{set, suggest.StatusSuggested, []string{"b", "a"}, true}, // any order
		{set, suggest.StatusSuggested, []string{"a", "a", "b"}, true},
		{set, suggest.StatusSuggested, []string{"a"}, false}, // a missing role is wrong
		{set, suggest.StatusSuggested, []string{"a", "c"}, false},
		{none, suggest.StatusNothingFits, nil, true},
		{none, suggest.StatusNotUnderstood, nil, true},
		{none, suggest.StatusSuggested, []string{"a"}, false}, // failing open is wrong
		{none, "", nil, false},
	} {
		if got := c.x.Matches(c.status, c.roles); got != c.want {
			t.Errorf("%s matches %s %v = %v, want %v", c.x, c.status, c.roles, got, c.want)
		}
	}
}

func TestReportCategories(t *testing.T) {
	r := suggest.NewReport()
	a := suggest.Case{Intent: "x", Expect: suggest.Expectation{Roles: []string{"a"}}, Category: "plain"}
	n := suggest.Case{Intent: "y", Expect: suggest.Expectation{None: true}, Category: "unknown-noun"}
	u := suggest.Case{Intent: "z", Expect: suggest.Expectation{Roles: []string{"a"}}}
	r.Add(a, suggest.StatusSuggested, []string{"a"}, nil)
	r.Add(a, suggest.StatusSuggested, []string{"b"}, nil)
	r.Add(n, suggest.StatusNotUnderstood, nil, nil)
	r.Add(n, "", nil, fmt.Errorf("invalid input")) // an error is never a refusal
	r.Add(u, suggest.StatusSuggested, []string{"a"}, nil)
	if r.Total != 5 || r.Correct != 3 || r.Accuracy != 0.6 {
		t.Fatalf("report %+v", r)
	}
	if c := r.Categories["plain"]; c.Total != 2 || c.Correct != 1 || c.Accuracy != 0.5 {
		t.Errorf("plain %+v", c)
	}
	if c := r.Categories[suggest.Uncategorised]; c.Total != 1 || c.Accuracy != 1 {
		t.Errorf("uncategorised %+v", c)
	}
	if got := r.Below(0.9); !reflect.DeepEqual(got, []string{"plain", "unknown-noun"}) {
		t.Errorf("below 90%%: %v", got)
	}
	if len(r.Misses) != 2 || r.Misses[0].Category != "plain" || r.Misses[0].Status != suggest.StatusSuggested || r.Misses[0].Got[0] != "b" || r.Misses[1].Error != "invalid input" {
		t.Errorf("misses %+v", r.Misses)
	}
	b, _ := json.Marshal(r)
	if !strings.Contains(string(b), `"categories":{"plain":{"total":2,"correct":1,"accuracy":0.5}`) {
		t.Errorf("json %s", b)
	}
}

// A label naming a role the policy does not have is a miss that blames the label.
func TestEvaluateUnknownLabel(t *testing.T) {
	e := catalogue(t)
	cs, err := suggest.ParseCases("t.yaml", []byte("cases:\n- {resource: weights/frontier-7, action: read, expect: weights-reader-frontier-77}\n- {resource: weights/frontier-77, action: read, expect: none}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := e.Evaluate(cs)
	if r.Correct != 1 || len(r.Misses) != 1 || !strings.Contains(r.Misses[0].Error, "the label names role weights-reader-frontier-77, which the policy does not define") {
		t.Fatalf("report %+v", r)
	}
}

func FuzzParseCases(f *testing.F) {
	for _, p := range []string{filepath.Join(testdata, "eval.yaml"), filepath.Join(lab2, "eval.yaml")} {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("cases:\n- {intent: read x, expect: [a, b], category: multi-need, note: n}\n- {resource: a/b, action: read, expect: none}\n"))
	f.Add([]byte("cases:\n- intent: \"读取 orion 的权重\"\n  expect: [none]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := suggest.ParseCases("f.yaml", data)
		if err != nil {
			if cs != nil {
				t.Fatal("cases returned with an error")
			}
			return
		}
		for _, c := range cs {
			if c.Expect.None == (len(c.Expect.Roles) > 0) {
				t.Fatalf("case %+v: expect is neither none nor roles", c)
			}
			if (c.Intent == "") == (c.Resource == "" || c.Action == "") {
				t.Fatalf("case %+v: not exactly one of intent and resource+action", c)
			}
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var back suggest.Case
			if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back.Expect, c.Expect) {
				t.Fatalf("json round trip of %s: %+v %v", b, back.Expect, err)
			}
		}
	})
}
