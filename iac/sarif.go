package iac

import (
	"encoding/json"
	"io"
	"slices"
	"strings"

	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/podsec"
)

// SARIF 2.1.0, the subset code-scanning tools read: one run, a rule per check, a result per
// finding located in its file (and line, for plain manifests) and by the object's name. An
// excepted finding is a result with a suppression (kind external: the exception is a grant, not
// a comment in the file), so code-scanning shows it as dismissed, with the grant and its expiry.
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
	RuleID       string             `json:"ruleId"`
	Level        string             `json:"level"`
	Message      sarifMessage       `json:"message"`
	Locations    []sarifLocation    `json:"locations"`
	Suppressions []sarifSuppression `json:"suppressions,omitempty"`
	Properties   map[string]any     `json:"properties,omitempty"`
}

type sarifSuppression struct {
	Kind          string `json:"kind"`
	Status        string `json:"status"`
	Justification string `json:"justification"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifLogical struct {
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

// describeCheck is a rule's short description: podsec's for its checks, the id otherwise.
func describeCheck(id string) string {
	for _, c := range podsec.Checks() {
		if c.ID == id {
			return c.Summary
		}
	}
	switch id {
	case CheckSecretData:
		return "no Secret manifest carries data"
	case CheckMalformed:
		return "objects decode strictly, as the apiserver and the admission webhook read them"
	case admission.CheckNetworkPolicy:
		return "every governed namespace has Rampart's default-deny egress NetworkPolicy"
	case admission.CheckEgressWidened:
		return "no NetworkPolicy widens egress beyond cluster DNS and the egress gateway"
	}
	return id
}

// WriteSARIF writes findings as a SARIF 2.1.0 log.
func WriteSARIF(w io.Writer, findings []Finding) error {
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "rampart iac check", InformationURI: "https://rampart.dev/docs/iac", Rules: []sarifRule{}}}, Results: []sarifResult{}}
	seen := map[string]bool{}
	for _, f := range findings {
		if !seen[f.Check] {
			seen[f.Check] = true
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{ID: f.Check, ShortDescription: sarifMessage{Text: describeCheck(f.Check)}})
		}
		name := f.Kind + "/" + f.Name
		if f.Namespace != "" {
			name = f.Namespace + "/" + name
		}
		if f.Field != "" {
			name += "#" + f.Field
		}
		loc := sarifLocation{LogicalLocations: []sarifLogical{{FullyQualifiedName: name, Kind: "resource"}}}
		if f.Source.File != "" {
			loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: f.Source.File}}
			if f.Source.Line > 0 {
				loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.Source.Line}
			}
		}
		r := sarifResult{RuleID: f.Check, Level: "error", Message: sarifMessage{Text: f.Object() + ": " + f.Message + "; fix: " + f.Fix},
			Locations:  []sarifLocation{loc},
			Properties: map[string]any{"namespace": f.Namespace, "kind": f.Kind, "name": f.Name, "field": f.Field, "fix": f.Fix}}
		if f.Exception != "" {
			r.Properties["exception"] = f.Exception
		}
		if e := f.Excepted; e != nil {
			r.Level = "note"
			r.Suppressions = []sarifSuppression{{Kind: "external", Status: "accepted",
				Justification: "approved exception " + e.GrantID + ", until " + e.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")}}
			r.Properties["excepted"] = e
		}
		run.Results = append(run.Results, r)
	}
	slices.SortFunc(run.Tool.Driver.Rules, func(a, b sarifRule) int { return strings.Compare(a.ID, b.ID) })
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}
