package suggest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/policy"
)

// Case is one labelled example: an intent, or a resource and action, and what a careful person
// reading the policy would request.
type Case struct {
	Intent   string `json:"intent,omitempty"`
	Resource string `json:"resource,omitempty"`
	Action   string `json:"action,omitempty"`
	// Expect is the answer the case wants: a set of roles, or none.
	Expect Expectation `json:"expect"`
	// Category groups cases for per-category accuracy (plain, chinese, negation, …); "" when the
	// file gives none.
	Category string `json:"category,omitempty"`
	// Note says why the label is what it is.
	Note string `json:"note,omitempty"`
	// Line is where the case starts in its file.
	Line int `json:"line,omitempty"`
}

// Expectation is a case's label: the distinct roles the answer must suggest (one per need,
// any order), or None: the answer must be that nothing fits or that a word was not understood.
type Expectation struct {
	Roles []string
	None  bool
}

// ExpectNone is the label of a case no role should answer.
const ExpectNone = "none"

// String is the label as written: a role, [a, b], or none.
func (x Expectation) String() string {
	switch {
	case x.None:
		return ExpectNone
	case len(x.Roles) == 1:
		return x.Roles[0]
	}
	return "[" + strings.Join(x.Roles, ", ") + "]"
}

// MarshalJSON writes the label as the file does: "none", "role", or ["a", "b"].
func (x Expectation) MarshalJSON() ([]byte, error) {
	switch {
	case x.None:
		return json.Marshal(ExpectNone)
	case len(x.Roles) == 1 && x.Roles[0] != ExpectNone:
		return json.Marshal(x.Roles[0])
	}
	return json.Marshal(x.Roles)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (x *Expectation) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*x = Expectation{Roles: []string{one}, None: one == ExpectNone}
		if x.None {
			x.Roles = nil
		}
		return nil
	}
	var set []string
	if err := json.Unmarshal(b, &set); err != nil {
		return errors.New("expect must be a role, a list of roles or none")
	}
	*x = Expectation{Roles: set}
	return nil
}

// Matches says whether an answer (its status and the distinct roles it suggests) is what the
// label wants. A set matches only the same set: a missing or an extra role is wrong.
func (x Expectation) Matches(status string, roles []string) bool {
	if x.None {
		return status == StatusNothingFits || status == StatusNotUnderstood
	}
	if status != StatusSuggested {
		return false
	}
	got := map[string]bool{}
	for _, r := range roles {
		got[r] = true
	}
	if len(got) != len(x.Roles) {
		return false
	}
	for _, r := range x.Roles {
		if !got[r] {
			return false
		}
	}
	return true
}

// caseYAML is a case as written; expect is read by hand (a scalar or a list).
type caseYAML struct {
	Intent   string    `yaml:"intent"`
	Resource string    `yaml:"resource"`
	Action   string    `yaml:"action"`
	Expect   yaml.Node `yaml:"expect"`
	Category string    `yaml:"category"`
	Note     string    `yaml:"note"`
}

type caseFile struct {
	Cases []caseYAML `yaml:"cases"`
}

// Limits of a labelled set: it is read by CI and by people, and may come from anywhere.
const (
	maxCases       = 10000
	maxExpectRoles = 16
	maxNoteLen     = 1000
)

// ParseCases reads a labelled set: a YAML document with a list under "cases", each with an
// intent (or a resource and an action), expect (a role, a list of roles, or none), and
// optionally a category and a note. Every error names the file, line and field; all are
// reported, not only the first.
func ParseCases(file string, data []byte) ([]Case, error) {
	nodes, err := strictyaml.SplitDocuments(file, data)
	if err != nil {
		return nil, err
	}
	if len(nodes) != 1 {
		return nil, fmt.Errorf("%s: want one YAML document with a list under \"cases\", found %d documents", file, len(nodes))
	}
	var cf caseFile
	doc := &strictyaml.Document{File: file}
	doc.Decode("", nodes[0], &cf)
	if len(cf.Cases) > maxCases {
		return nil, fmt.Errorf("%s: %d cases; the limit is %d (split the file)", file, len(cf.Cases), maxCases)
	}
	out := make([]Case, 0, len(cf.Cases))
	for i, cy := range cf.Cases {
		path := fmt.Sprintf("cases[%d]", i)
		c := Case{Intent: cy.Intent, Resource: cy.Resource, Action: cy.Action, Category: cy.Category, Note: cy.Note,
			Line: doc.Pos.Lookup(path).Line}
		switch {
		case strings.TrimSpace(c.Intent) == "" && c.Intent != "":
			doc.Errorf(path+".intent", "intent is blank; write the sentence someone would type")
		case c.Intent == "" && (c.Resource == "" || c.Action == ""):
			doc.Errorf(path, "give an intent, or a resource and an action")
		case c.Intent != "" && (c.Resource != "" || c.Action != ""):
			doc.Errorf(path, "give an intent or a resource and an action, not both")
		case c.Intent == "":
			if err := policy.ValidateResourceName(c.Resource); err != nil {
				doc.Errorf(path+".resource", "%v", err)
			}
			if err := policy.ValidateAction(c.Action); err != nil || c.Action == "*" {
				doc.Errorf(path+".action", "action %q: name one concrete action such as read", c.Action)
			}
		}
		if len(c.Intent) > maxQueryLen {
			doc.Errorf(path+".intent", "intent is %d bytes; the limit is %d", len(c.Intent), maxQueryLen)
		}
		if c.Category != "" {
			if err := policy.ValidateName(c.Category); err != nil {
				doc.Errorf(path+".category", "category: %v", err)
			}
		}
		if len(c.Note) > maxNoteLen {
			doc.Errorf(path+".note", "note is %d bytes; the limit is %d", len(c.Note), maxNoteLen)
		}
		c.Expect = parseExpect(doc, path+".expect", &cy.Expect)
		out = append(out, c)
	}
	if err := doc.Errs.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no cases; write a list under \"cases\"", file)
	}
	return out, nil
}

// parseExpect reads expect: a role, none, or a list of distinct roles (a list always names
// roles, so a role called none is written [none]).
func parseExpect(doc *strictyaml.Document, path string, n *yaml.Node) Expectation {
	const want = "expect is required: the role that should be suggested, a list of roles (one per need), or none"
	role := func(p string, s *yaml.Node) (string, bool) {
		if s.Kind != yaml.ScalarNode || s.Tag == "!!null" {
			doc.Errorf(p, "expected a role name, got a %s", kind(s))
			return "", false
		}
		if err := policy.ValidateName(s.Value); err != nil {
			doc.Errorf(p, "role: %v", err)
			return "", false
		}
		return s.Value, true
	}
	switch {
	case n.Kind == 0 || (n.Kind == yaml.ScalarNode && (n.Tag == "!!null" || n.Value == "")):
		doc.Errorf(path, want)
	case n.Kind == yaml.ScalarNode && n.Value == ExpectNone:
		return Expectation{None: true}
	case n.Kind == yaml.ScalarNode:
		if r, ok := role(path, n); ok {
			return Expectation{Roles: []string{r}}
		}
	case n.Kind == yaml.SequenceNode:
		if len(n.Content) == 0 {
			doc.Errorf(path, "the list of roles is empty; write none if no role should be suggested")
			return Expectation{}
		}
		if len(n.Content) > maxExpectRoles {
			doc.Errorf(path, "%d roles; the limit is %d", len(n.Content), maxExpectRoles)
			return Expectation{}
		}
		var x Expectation
		seen := map[string]bool{}
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			doc.Pos[p] = strictyaml.Pos{Line: item.Line, Column: item.Column}
			r, ok := role(p, item)
			if !ok {
				continue
			}
			if seen[r] {
				doc.Errorf(p, "role %s is listed twice; the list is a set of distinct roles", r)
				continue
			}
			seen[r] = true
			x.Roles = append(x.Roles, r)
		}
		return x
	default:
		doc.Errorf(path, "expected a role, a list of roles or none, got a %s", kind(n))
	}
	return Expectation{}
}

func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	if n.Tag == "!!null" {
		return "null"
	}
	return "value"
}

// Miss is a case the engine got wrong.
type Miss struct {
	Case
	// Status is the answer's outcome (suggested, nothing_fits, not_understood), or "" on error.
	Status string `json:"status,omitempty"`
	// Got is the distinct roles suggested.
	Got   []string `json:"got"`
	Error string   `json:"error,omitempty"`
}

// CategoryScore is the accuracy of one category.
type CategoryScore struct {
	Total    int     `json:"total"`
	Correct  int     `json:"correct"`
	Accuracy float64 `json:"accuracy"`
}

// Report is the outcome of an evaluation.
type Report struct {
	Total    int     `json:"total"`
	Correct  int     `json:"correct"`
	Accuracy float64 `json:"accuracy"`
	// Categories scores each category; cases without one count under "uncategorised".
	Categories map[string]*CategoryScore `json:"categories"`
	Misses     []Miss                    `json:"misses"`
}

// Uncategorised is the category of cases that name none.
const Uncategorised = "uncategorised"

// NewReport starts an empty report; Add scores cases into it.
func NewReport() *Report {
	return &Report{Categories: map[string]*CategoryScore{}, Misses: []Miss{}}
}

// Add scores one answer: its status and the distinct roles it suggests, or the error that
// stopped it (an error is always a miss, even for expect: none — invalid input is not a refusal).
func (r *Report) Add(c Case, status string, roles []string, err error) bool {
	cat := c.Category
	if cat == "" {
		cat = Uncategorised
	}
	cs := r.Categories[cat]
	if cs == nil {
		cs = &CategoryScore{}
		r.Categories[cat] = cs
	}
	r.Total++
	cs.Total++
	ok := err == nil && c.Expect.Matches(status, roles)
	if ok {
		r.Correct++
		cs.Correct++
	} else {
		m := Miss{Case: c, Status: status, Got: append([]string{}, roles...)}
		if err != nil {
			m.Error = err.Error()
		}
		r.Misses = append(r.Misses, m)
	}
	r.Accuracy = float64(r.Correct) / float64(r.Total)
	cs.Accuracy = float64(cs.Correct) / float64(cs.Total)
	return ok
}

// CategoryNames are the report's categories, sorted.
func (r *Report) CategoryNames() []string {
	names := make([]string, 0, len(r.Categories))
	for n := range r.Categories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Below names the categories whose accuracy is under min, sorted.
func (r *Report) Below(min float64) []string {
	var low []string
	for _, n := range r.CategoryNames() {
		if r.Categories[n].Accuracy < min {
			low = append(low, n)
		}
	}
	return low
}

// Outcome is what a suggestion answers, as the eval scores it: its status and the distinct
// roles of its targets (least privileged candidate of each), in need order.
func (s Suggestion) Outcome() (string, []string) {
	if s.Status != StatusSuggested {
		return s.Status, nil
	}
	var roles []string
	seen := map[string]bool{}
	for _, t := range s.Targets {
		if len(t.Candidates) == 0 {
			continue
		}
		if r := t.Candidates[0].Role; !seen[r] {
			seen[r] = true
			roles = append(roles, r)
		}
	}
	return s.Status, roles
}

// Evaluate runs every case through the deterministic engine. A resource-and-action case is
// nothing_fits when no requestable role grants the action (NoCandidateError) and not_understood
// when the resource is not in the catalogue. A label naming a role the policy does not define
// is a miss that says so: the label, not the engine, is wrong.
func (e *Engine) Evaluate(cases []Case) Report {
	r := NewReport()
	for _, c := range cases {
		var status string
		var roles []string
		var err error
		if c.Intent != "" {
			var s Suggestion
			if s, err = e.Suggest(c.Intent); err == nil {
				status, roles = s.Outcome()
			}
		} else {
			status, roles, err = e.rankOutcome(c.Resource, c.Action)
		}
		if err == nil {
			err = e.checkLabel(c.Expect)
		}
		r.Add(c, status, roles, err)
	}
	return *r
}

func (e *Engine) rankOutcome(resource, action string) (string, []string, error) {
	rk, err := e.Rank(resource, []string{action})
	var nc *NoCandidateError
	switch {
	case errors.As(err, &nc):
		return StatusNothingFits, nil, nil
	case errors.Is(err, ErrUnknownResource):
		return StatusNotUnderstood, nil, nil
	case err != nil:
		return "", nil, err
	}
	return StatusSuggested, []string{rk.Candidates[0].Role}, nil
}

func (e *Engine) checkLabel(x Expectation) error {
	for _, r := range x.Roles {
		if _, ok := e.pol.Role(r); !ok {
			return fmt.Errorf("the label names role %s, which the policy does not define: fix the label", r)
		}
	}
	return nil
}
