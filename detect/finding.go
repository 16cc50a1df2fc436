package detect

import (
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
)

// activityCreate is OCSF Detection Finding's Create activity: a new finding.
const activityCreate = 1

// severityIDs maps a rule's severity to OCSF's severity ids.
var severityIDs = map[string]int{
	"informational": audit.SeverityInformational,
	"low":           audit.SeverityLow,
	"medium":        audit.SeverityMedium,
	"high":          audit.SeverityHigh,
	"critical":      audit.SeverityCritical,
}

// AlertEvent is the ledger entry of a firing: detect.alert, an OCSF Detection Finding (class
// 2004) whose evidence is ledger sequence numbers (anyone can prove each with an inclusion
// proof), written at time at with actor detect:<rule>.
func AlertEvent(f Firing, at time.Time) audit.Event {
	sev := severityIDs[f.Severity]
	if sev == 0 {
		sev = audit.SeverityMedium
	}
	attacks := make([]any, 0, len(f.Mitre))
	for _, t := range f.Mitre {
		attacks = append(attacks, map[string]any{"technique": map[string]any{"uid": t}})
	}
	evidence := make([]any, len(f.Evidence))
	for i, s := range f.Evidence {
		evidence[i] = s
	}
	details := map[string]any{"rule": f.Rule, "key": f.Key, "subject": f.Subject, "severity": f.Severity, "evidence": evidence,
		"count": f.Count, "first": f.First.UTC().Format(time.RFC3339Nano), "last": f.Last.UTC().Format(time.RFC3339Nano),
		"mode": f.Mode}
	if len(f.Mitre) > 0 {
		mitre := make([]any, len(f.Mitre))
		for i, m := range f.Mitre {
			mitre[i] = m
		}
		details["mitre"] = mitre
	}
	if len(f.Actions) > 0 {
		acts := make([]any, len(f.Actions))
		for i, a := range f.Actions {
			acts[i] = a
		}
		details["actions"] = acts
	}
	if f.Learning {
		details["learning"] = true
	}
	msg := fmt.Sprintf("rule %s fired for %s: %d matching events between %s and %s", f.Rule, keyText(f), f.Count,
		f.First.UTC().Format(time.RFC3339), f.Last.UTC().Format(time.RFC3339))
	if f.Description != "" {
		msg += " (" + f.Description + ")"
	}
	if f.Learning {
		msg += "; the rule is still learning this key's baseline, so nothing is done about it"
	}
	info := map[string]any{"title": f.Rule, "analytic": map[string]any{"name": f.Rule, "type": "Rule", "type_id": 1},
		"first_seen_time": f.First.UnixMilli(), "last_seen_time": f.Last.UnixMilli()}
	if f.Description != "" {
		info["desc"] = f.Description
	}
	if len(attacks) > 0 {
		info["attacks"] = attacks
	}
	e := audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: activityCreate, ActivityName: "Create",
		Severity: sev, Time: at, Actor: "detect:" + f.Rule, Message: msg, Details: details,
		Extra: map[string]any{"finding_info": info, "count": f.Count}}
	if f.Subject != "" {
		e.User = f.Subject
	}
	return e
}

func keyText(f Firing) string {
	if f.Key == "" {
		return "all events"
	}
	return "key " + f.Key
}
