package suggest

import (
	"fmt"

	"rampart.dev/rampart/internal/strictyaml"
)

// Case is one labelled example: an intent, or a resource and action, and the role a careful
// person would request.
type Case struct {
	Intent   string `yaml:"intent" json:"intent,omitempty"`
	Resource string `yaml:"resource" json:"resource,omitempty"`
	Action   string `yaml:"action" json:"action,omitempty"`
	Expect   string `yaml:"expect" json:"expect"`
}

type caseFile struct {
	Cases []Case `yaml:"cases"`
}

// ParseCases reads a labelled set: a YAML document with a list under "cases".
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
	for i, c := range cf.Cases {
		path := fmt.Sprintf("cases[%d]", i)
		switch {
		case c.Expect == "":
			doc.Errorf(path, "expect is required: the role that should be suggested")
		case c.Intent == "" && (c.Resource == "" || c.Action == ""):
			doc.Errorf(path, "give an intent, or a resource and an action")
		case c.Intent != "" && (c.Resource != "" || c.Action != ""):
			doc.Errorf(path, "give an intent or a resource and an action, not both")
		}
	}
	if err := doc.Errs.Err(); err != nil {
		return nil, err
	}
	if len(cf.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", file)
	}
	return cf.Cases, nil
}

// Miss is a case the engine got wrong.
type Miss struct {
	Case
	Got   string `json:"got"`
	Error string `json:"error,omitempty"`
}

// Report is the outcome of an evaluation.
type Report struct {
	Total    int     `json:"total"`
	Correct  int     `json:"correct"`
	Accuracy float64 `json:"accuracy"`
	Misses   []Miss  `json:"misses"`
}

// Evaluate runs every case through the deterministic engine and counts top-1 hits.
func (e *Engine) Evaluate(cases []Case) Report {
	r := Report{Total: len(cases), Misses: []Miss{}}
	for _, c := range cases {
		var got string
		var err error
		if c.Intent != "" {
			var s Suggestion
			if s, err = e.Suggest(c.Intent); err == nil && s.Target != nil {
				got = s.Target.Candidates[0].Role
			}
		} else {
			var rk Ranking
			if rk, err = e.Rank(c.Resource, []string{c.Action}); err == nil {
				got = rk.Candidates[0].Role
			}
		}
		if err == nil && got == c.Expect {
			r.Correct++
			continue
		}
		m := Miss{Case: c, Got: got}
		if err != nil {
			m.Error = err.Error()
		}
		r.Misses = append(r.Misses, m)
	}
	if r.Total > 0 {
		r.Accuracy = float64(r.Correct) / float64(r.Total)
	}
	return r
}
