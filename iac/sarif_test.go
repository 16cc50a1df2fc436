package iac

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// An excepted finding is a SARIF result with an accepted external suppression naming the grant
// and its expiry; a failing one has none. Both are located by file and line.
func TestWriteSARIF(t *testing.T) {
	end := time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC)
	fs := []Finding{
		{Source: Source{File: "deploy/a.yaml", Line: 7}, Namespace: "ml", Kind: "Pod", Name: "a", Check: "restricted.privileged", Field: "spec.containers[0].securityContext.privileged", Message: "m", Fix: "f"},
		{Source: Source{File: "deploy/b.yaml", Line: 1}, Namespace: "ml", Kind: "Pod", Name: "b", Check: "baseline.digest", Message: "m", Fix: "f",
			Excepted: &Excepted{GrantID: "grt_x", ExpiresAt: end}},
	}
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, fs); err != nil {
		t.Fatal(err)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID               string                `json:"id"`
						ShortDescription struct{ Text string } `json:"shortDescription"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }    `json:"artifactLocation"`
						Region           struct{ StartLine int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
				Suppressions []struct{ Kind, Status, Justification string } `json:"suppressions"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(buf.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if log.Version != "2.1.0" || len(run.Tool.Driver.Rules) != 2 || len(run.Results) != 2 {
		t.Fatalf("%s", buf.Bytes())
	}
	for _, r := range run.Tool.Driver.Rules {
		if r.ShortDescription.Text == "" || r.ShortDescription.Text == r.ID {
			t.Errorf("rule %s has no description", r.ID)
		}
	}
	a, b := run.Results[0], run.Results[1]
	if a.Level != "error" || len(a.Suppressions) != 0 || a.Locations[0].PhysicalLocation.ArtifactLocation.URI != "deploy/a.yaml" || a.Locations[0].PhysicalLocation.Region.StartLine != 7 {
		t.Errorf("failing result: %+v", a)
	}
	if b.Level != "note" || len(b.Suppressions) != 1 || b.Suppressions[0].Kind != "external" || b.Suppressions[0].Status != "accepted" ||
		b.Suppressions[0].Justification != "approved exception grt_x, until 2026-12-10T09:00:00Z" {
		t.Errorf("excepted result: %+v", b)
	}
}
