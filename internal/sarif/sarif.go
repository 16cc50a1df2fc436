// Package sarif writes SARIF 2.1.0 logs: the subset code-scanning tools read (one run, a rule per
// check, a result per finding with its logical and, when there is a file, physical location, and
// suppressions for accepted findings). `rampart kube scan` and `rampart iac check` write it.
package sarif

import (
	"cmp"
	"encoding/json"
	"io"
	"slices"
)

// Schema is the SARIF 2.1.0 JSON schema's address.
const Schema = "https://json.schemastore.org/sarif-2.1.0.json"

// Log is a SARIF log.
type Log struct {
	Schema  string `json:"$schema"`
	Version string `json:"version"`
	Runs    []Run  `json:"runs"`
}

// Run is one tool's run.
type Run struct {
	Tool    Tool     `json:"tool"`
	Results []Result `json:"results"`
}

// Tool names the tool.
type Tool struct {
	Driver Driver `json:"driver"`
}

// Driver is the tool's component and its rules.
type Driver struct {
	Name           string `json:"name"`
	InformationURI string `json:"informationUri"`
	Rules          []Rule `json:"rules"`
}

// Rule is one check.
type Rule struct {
	ID               string  `json:"id"`
	ShortDescription Message `json:"shortDescription"`
}

// Message is text.
type Message struct {
	Text string `json:"text"`
}

// Result is one finding.
type Result struct {
	RuleID       string         `json:"ruleId"`
	Level        string         `json:"level"`
	Message      Message        `json:"message"`
	Locations    []Location     `json:"locations"`
	Suppressions []Suppression  `json:"suppressions,omitempty"`
	Properties   map[string]any `json:"properties,omitempty"`
}

// Suppression marks a finding as accepted (kind external: decided outside the file).
type Suppression struct {
	Kind          string `json:"kind"`
	Status        string `json:"status"`
	Justification string `json:"justification"`
}

// Location is where a finding is: a file (and line) when there is one, and the object's name.
type Location struct {
	PhysicalLocation *Physical `json:"physicalLocation,omitempty"`
	LogicalLocations []Logical `json:"logicalLocations"`
}

// Physical is a place in a file.
type Physical struct {
	ArtifactLocation Artifact `json:"artifactLocation"`
	Region           *Region  `json:"region,omitempty"`
}

// Artifact is a file.
type Artifact struct {
	URI string `json:"uri"`
}

// Region is a line in a file.
type Region struct {
	StartLine int `json:"startLine"`
}

// Logical is a named thing, such as a Kubernetes object.
type Logical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

// Write writes run as a SARIF 2.1.0 log, its rules sorted by id.
func Write(w io.Writer, run Run) error {
	slices.SortFunc(run.Tool.Driver.Rules, func(a, b Rule) int { return cmp.Compare(a.ID, b.ID) })
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Log{Schema: Schema, Version: "2.1.0", Runs: []Run{run}})
}
