package scan

import (
	"encoding/json"
	"io"
	"slices"
)

// SARIF 2.1.0, the subset code-scanning tools read: one run, a rule per check, a result per
// finding located by the object's logical name (there is no source file to point at).
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	ShortDescription sarifMessage `json:"shortDescription"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID     string          `json:"ruleId"`
	Level      string          `json:"level"`
	Message    sarifMessage    `json:"message"`
	Locations  []sarifLocation `json:"locations"`
	Properties map[string]any  `json:"properties,omitempty"`
}

type sarifLocation struct {
	LogicalLocations []sarifLogical `json:"logicalLocations"`
}

type sarifLogical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

// WriteSARIF writes findings as a SARIF 2.1.0 log.
func WriteSARIF(w io.Writer, findings []Finding) error {
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "rampart kube scan", InformationURI: "https://rampart.dev/docs/kubernetes"}}, Results: []sarifResult{}}
	seen := map[string]bool{}
	for _, f := range findings {
		if !seen[f.Check] {
			seen[f.Check] = true
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{ID: f.Check, ShortDescription: sarifMessage{Text: f.Check}})
		}
		name := f.Namespace + "/" + f.Kind + "/" + f.Name
		if f.Field != "" {
			name += "#" + f.Field
		}
		run.Results = append(run.Results, sarifResult{RuleID: f.Check, Level: "error", Message: sarifMessage{Text: f.Message + "; fix: " + f.Fix},
			Locations:  []sarifLocation{{LogicalLocations: []sarifLogical{{FullyQualifiedName: name, Kind: "resource"}}}},
			Properties: map[string]any{"namespace": f.Namespace, "kind": f.Kind, "name": f.Name, "field": f.Field, "fix": f.Fix, "exception": f.Exception}})
	}
	slices.SortFunc(run.Tool.Driver.Rules, func(a, b sarifRule) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}
