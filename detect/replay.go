package detect

import (
	"encoding/json"
	"strconv"
	"time"
)

// FiringFromEntry rebuilds the firing a detect.alert ledger entry records (AlertEvent's
// details: rule, key, subject, severity, mitre, evidence, count, first, last, mode, actions,
// learning), so that a response lost to a crash between the runner's commit and the response
// can be taken from the ledger: its FiringID is the one the runner's firing had. ok is false for
// any other entry.
func FiringFromEntry(entry []byte) (f Firing, ok bool) {
	var e struct {
		Metadata struct {
			EventCode string `json:"event_code"`
		} `json:"metadata"`
		Unmapped struct {
			Rule     string        `json:"rule"`
			Key      string        `json:"key"`
			Subject  string        `json:"subject"`
			Severity string        `json:"severity"`
			Mitre    []string      `json:"mitre"`
			Evidence []json.Number `json:"evidence"`
			Count    json.Number   `json:"count"`
			First    string        `json:"first"`
			Last     string        `json:"last"`
			Mode     string        `json:"mode"`
			Actions  []string      `json:"actions"`
			Learning bool          `json:"learning"`
		} `json:"unmapped"`
	}
	if json.Unmarshal(entry, &e) != nil || e.Metadata.EventCode != "detect.alert" || e.Unmapped.Rule == "" {
		return Firing{}, false
	}
	u := e.Unmapped
	f = Firing{Rule: u.Rule, Key: u.Key, Subject: u.Subject, Severity: u.Severity, Mitre: u.Mitre, Mode: u.Mode, Actions: u.Actions, Learning: u.Learning,
		Evidence: make([]int64, 0, len(u.Evidence))}
	for _, n := range u.Evidence {
		v, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return Firing{}, false
		}
		f.Evidence = append(f.Evidence, v)
	}
	c, err := strconv.Atoi(u.Count.String())
	if err != nil {
		return Firing{}, false
	}
	f.Count = c
	if f.First, err = time.Parse(time.RFC3339Nano, u.First); err != nil {
		return Firing{}, false
	}
	if f.Last, err = time.Parse(time.RFC3339Nano, u.Last); err != nil {
		return Firing{}, false
	}
	return f, true
}
