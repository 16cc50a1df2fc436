package iac

import (
	"io"

	"rampart.dev/rampart/internal/sarif"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/podsec"
)

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

// WriteSARIF writes findings as a SARIF 2.1.0 log: a rule per check, a result per finding located
// in its file (and line, for plain manifests) and by the object's name. An excepted finding is a
// result with a suppression (kind external: the exception is a grant, not a comment in the file),
// so code-scanning shows it as dismissed, with the grant and its expiry.
func WriteSARIF(w io.Writer, findings []Finding) error {
	run := sarif.Run{Tool: sarif.Tool{Driver: sarif.Driver{Name: "rampart iac check", InformationURI: "https://rampart.dev/docs/iac", Rules: []sarif.Rule{}}}, Results: []sarif.Result{}}
	seen := map[string]bool{}
	for _, f := range findings {
		if !seen[f.Check] {
			seen[f.Check] = true
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarif.Rule{ID: f.Check, ShortDescription: sarif.Message{Text: describeCheck(f.Check)}})
		}
		name := f.Kind + "/" + f.Name
		if f.Namespace != "" {
			name = f.Namespace + "/" + name
		}
		if f.Field != "" {
			name += "#" + f.Field
		}
		loc := sarif.Location{LogicalLocations: []sarif.Logical{{FullyQualifiedName: name, Kind: "resource"}}}
		if f.Source.File != "" {
			loc.PhysicalLocation = &sarif.Physical{ArtifactLocation: sarif.Artifact{URI: f.Source.File}}
			if f.Source.Line > 0 {
				loc.PhysicalLocation.Region = &sarif.Region{StartLine: f.Source.Line}
			}
		}
		r := sarif.Result{RuleID: f.Check, Level: "error", Message: sarif.Message{Text: f.Object() + ": " + f.Message + "; fix: " + f.Fix},
			Locations:  []sarif.Location{loc},
			Properties: map[string]any{"namespace": f.Namespace, "kind": f.Kind, "name": f.Name, "field": f.Field, "fix": f.Fix}}
		if f.Exception != "" {
			r.Properties["exception"] = f.Exception
		}
		if e := f.Excepted; e != nil {
			r.Level = "note"
			r.Suppressions = []sarif.Suppression{{Kind: "external", Status: "accepted",
				Justification: "approved exception " + e.GrantID + ", until " + e.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z")}}
			r.Properties["excepted"] = e
		}
		run.Results = append(run.Results, r)
	}
	return sarif.Write(w, run)
}
