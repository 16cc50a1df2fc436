package scan

import (
	"io"

	"rampart.dev/rampart/internal/sarif"
)

// WriteSARIF writes findings as a SARIF 2.1.0 log: a rule per check, a result per finding located
// by the object's logical name (there is no source file to point at).
func WriteSARIF(w io.Writer, findings []Finding) error {
	run := sarif.Run{Tool: sarif.Tool{Driver: sarif.Driver{Name: "rampart kube scan", InformationURI: "https://rampart.dev/docs/kubernetes"}}, Results: []sarif.Result{}}
	seen := map[string]bool{}
	for _, f := range findings {
		if !seen[f.Check] {
			seen[f.Check] = true
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarif.Rule{ID: f.Check, ShortDescription: sarif.Message{Text: f.Check}})
		}
		name := f.Namespace + "/" + f.Kind + "/" + f.Name
		if f.Field != "" {
			name += "#" + f.Field
		}
		run.Results = append(run.Results, sarif.Result{RuleID: f.Check, Level: "error", Message: sarif.Message{Text: f.Message + "; fix: " + f.Fix},
			Locations:  []sarif.Location{{LogicalLocations: []sarif.Logical{{FullyQualifiedName: name, Kind: "resource"}}}},
			Properties: map[string]any{"namespace": f.Namespace, "kind": f.Kind, "name": f.Name, "field": f.Field, "fix": f.Fix, "exception": f.Exception}})
	}
	return sarif.Write(w, run)
}
