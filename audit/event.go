// Package audit is Rampart's ledger: every state change is an entry, appended in the same
// database transaction as the change (invariant 4), and the entries form an RFC 6962 Merkle tree
// whose signed checkpoints make any edit, deletion or reordering of history detectable
// (invariant 5).
//
// An entry is canonical JSON (RFC 8785, JCS) shaped after OCSF (class, activity, actor, time,
// message) with Rampart's own details under "unmapped". Its leaf hash is SHA-256(0x00 || entry
// bytes), so the exported JSON lines can be verified by anyone with the checkpoint's public key,
// offline. Checkpoints are signed notes (golang.org/x/mod/sumdb/note, Ed25519) in the
// c2sp.org/tlog-checkpoint format: origin, size and base64 root hash, then the signing time as
// the one extension line Rampart writes; witnesses' cosignatures (c2sp.org/tlog-cosignature) are
// further signature lines.
//
// A running Ledger vouches only for what it can: it remembers the leaf hash of every entry this
// process committed (the store tells it, AppendWatcher) and signs no checkpoint over an entry
// that reads back differently. Such a mismatch, or a witness's proof that the store lost or
// rewrote history, is a tamper alarm (Alarm): the ledger then signs nothing and refuses every
// append, so every change fails, and the server denies every decision (fail closed, invariant 6).
package audit

import (
	"encoding/json"
	"fmt"
	"time"

	"rampart.dev/rampart/internal/jcs"
)

// OCSF classes Rampart writes.
const (
	ClassAuthentication       = 3002 // logins, token issue and revocation
	ClassEntityManagement     = 3004 // policy loads
	ClassUserAccessManagement = 3005 // grants: activate, renew, revoke, expire
	ClassAPIActivity          = 6003 // requests and reviews
	ClassNetworkActivity      = 4001 // egress gateway decisions
	ClassDatastoreActivity    = 6005 // weights vault: writes, reads, key releases, deletions
	ClassDetectionFinding     = 2004 // detection: alerts, their acknowledgement and resolution, responses
)

var classNames = map[int]struct {
	name     string
	category int
	catName  string
}{
	ClassAuthentication:       {"Authentication", 3, "Identity & Access Management"},
	ClassEntityManagement:     {"Entity Management", 3, "Identity & Access Management"},
	ClassUserAccessManagement: {"User Access Management", 3, "Identity & Access Management"},
	ClassAPIActivity:          {"API Activity", 6, "Application Activity"},
	ClassNetworkActivity:      {"Network Activity", 4, "Network Activity"},
	ClassDatastoreActivity:    {"Datastore Activity", 6, "Application Activity"},
	ClassDetectionFinding:     {"Detection Finding", 2, "Findings"},
}

// OCSF activity ids used with the classes above.
const (
	ActivityCreate = 1 // API Activity: Create; Authentication: Logon; UAM: Assign Privileges
	ActivityRead   = 2 // API Activity: Read; Authentication: Logoff; UAM: Revoke Privileges
	ActivityUpdate = 3
	ActivityDelete = 4
	ActivityOther  = 99 // every class: an activity the class does not enumerate
)

// Severity ids (OCSF).
const (
	SeverityInformational = 1
	SeverityLow           = 2
	SeverityMedium        = 3
	SeverityHigh          = 4
	SeverityCritical      = 5 // detection findings of critical rules
)

var severityNames = map[int]string{1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}

// OCSFVersion is the OCSF schema version entries follow.
const OCSFVersion = "1.3.0"

// Event is one state change to record. Code is Rampart's own event name (request.create,
// grant.activate, …) and is what detection rules key on.
type Event struct {
	Code         string
	Class        int
	Activity     int
	ActivityName string
	Severity     int
	Time         time.Time
	// Actor is who caused the change: a subject, or "rampart" for the system itself.
	Actor   string
	Message string
	// User is the subject whose access changed, for grant events.
	User string
	// Resources are the resources concerned.
	Resources []string
	// Privileges are the roles concerned.
	Privileges []string
	// Details are event-specific fields, written under "unmapped".
	Details map[string]any
	// Failed marks an attempt that was refused (OCSF status Failure); entries record refusals
	// as well as changes.
	Failed bool
	// Extra are further OCSF attributes of the class, written at the top level (for Network
	// Activity: src_endpoint, dst_endpoint, disposition…). They may not replace the ones above.
	Extra map[string]any
}

// SystemActor is the actor of changes Rampart makes by itself (expiry, checkpoints).
const SystemActor = "rampart"

// EncodeLog returns the canonical JSON of an event that is logged, not appended to the ledger
// (it has no sequence number).
func EncodeLog(e Event) ([]byte, error) { return Encode(-1, e) }

// Encode returns the canonical JSON of the event as ledger entry number seq: RFC 8785 (JCS), so
// structs in Details are written with sorted members like everything else, and anyone can
// re-canonicalize an entry and get its bytes back. The bytes are what is hashed, stored and
// exported. Text that is not valid UTF-8, and integers beyond 2^53 that a double would change,
// are refused (an error, so the change they record is refused too), never rewritten. A negative
// seq leaves the sequence out (see EncodeLog).
func Encode(seq int64, e Event) ([]byte, error) {
	cls, ok := classNames[e.Class]
	if !ok {
		return nil, fmt.Errorf("audit: unknown OCSF class %d for event %q", e.Class, e.Code)
	}
	if e.Code == "" || e.Time.IsZero() || e.Actor == "" {
		return nil, fmt.Errorf("audit: event needs a code, a time and an actor (got %q, %v, %q)", e.Code, e.Time, e.Actor)
	}
	sev := e.Severity
	if sev == 0 {
		sev = SeverityInformational
	}
	actorType := "User"
	if e.Actor == SystemActor {
		actorType = "System"
	}
	m := map[string]any{
		"activity_id":   e.Activity,
		"activity_name": e.ActivityName,
		"actor":         map[string]any{"user": map[string]any{"name": e.Actor, "type": actorType}},
		"category_name": cls.catName,
		"category_uid":  cls.category,
		"class_name":    cls.name,
		"class_uid":     e.Class,
		"message":       e.Message,
		"metadata": map[string]any{
			"event_code": e.Code,
			"log_name":   "rampart-ledger",
			"product":    map[string]any{"name": "Rampart", "vendor_name": "Rampart"},
			"sequence":   seq,
			"version":    OCSFVersion,
		},
		"severity":    severityNames[sev],
		"severity_id": sev,
		"status":      "Success",
		"status_id":   1,
		"time":        e.Time.UnixMilli(),
		"time_dt":     e.Time.UTC().Format(time.RFC3339Nano),
		"type_uid":    e.Class*100 + e.Activity,
	}
	if e.User != "" {
		m["user"] = map[string]any{"name": e.User}
	}
	if len(e.Resources) > 0 {
		rs := make([]any, len(e.Resources))
		for i, r := range e.Resources {
			rs[i] = map[string]any{"name": r}
		}
		m["resources"] = rs
	}
	if len(e.Privileges) > 0 {
		m["privileges"] = e.Privileges
	}
	if len(e.Details) > 0 {
		m["unmapped"] = e.Details
	}
	if e.Failed {
		m["status"], m["status_id"] = "Failure", 2
	}
	for k, v := range e.Extra {
		if _, taken := m[k]; taken {
			return nil, fmt.Errorf("audit: event %q: extra attribute %q would replace a standard one", e.Code, k)
		}
		m[k] = v
	}
	if seq < 0 {
		delete(m["metadata"].(map[string]any), "sequence")
	}
	b, err := jcs.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("audit: event %q cannot be recorded: %w", e.Code, err)
	}
	return b, nil
}

// Summary is the part of an entry people read in `rampart audit tail` and the console's audit
// page.
type Summary struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Code    string    `json:"code"`
	Actor   string    `json:"actor"`
	Message string    `json:"message"`
	// User is the person whose access the entry concerns; Resources the resources it names;
	// RequestID and GrantID the request and grant it is about (from its details).
	User      string   `json:"user,omitempty"`
	Severity  string   `json:"severity,omitempty"`
	Failed    bool     `json:"failed,omitempty"`
	Resources []string `json:"resources,omitempty"`
	RequestID string   `json:"request_id,omitempty"`
	GrantID   string   `json:"grant_id,omitempty"`
}

// Summarize decodes the fields of an entry shown to people.
func Summarize(data []byte) (Summary, error) {
	var e struct {
		Message  string `json:"message"`
		Time     int64  `json:"time"`
		Severity string `json:"severity"`
		StatusID int    `json:"status_id"`
		Metadata struct {
			EventCode string `json:"event_code"`
			Sequence  int64  `json:"sequence"`
		} `json:"metadata"`
		Actor struct {
			User struct {
				Name string `json:"name"`
			} `json:"user"`
		} `json:"actor"`
		User struct {
			Name string `json:"name"`
		} `json:"user"`
		Resources []struct {
			Name string `json:"name"`
		} `json:"resources"`
		Unmapped struct {
			RequestID any `json:"request_id"`
			GrantID   any `json:"grant_id"`
		} `json:"unmapped"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return Summary{}, fmt.Errorf("ledger entry is not valid JSON: %w", err)
	}
	s := Summary{Seq: e.Metadata.Sequence, Time: time.UnixMilli(e.Time).UTC(), Code: e.Metadata.EventCode, Actor: e.Actor.User.Name, Message: e.Message,
		User: e.User.Name, Severity: e.Severity, Failed: e.StatusID == 2}
	for _, r := range e.Resources {
		s.Resources = append(s.Resources, r.Name)
	}
	// Details are event-specific: an id is a string where an entry has one.
	s.RequestID, _ = e.Unmapped.RequestID.(string)
	s.GrantID, _ = e.Unmapped.GrantID.(string)
	return s, nil
}
