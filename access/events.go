package access

import (
	"time"

	"rampart.dev/rampart/audit"
)

// OCSF activity names for the classes the workflow writes.
const (
	ActivityCreateName = "Create"
	ActivityUpdateName = "Update"
)

// requestEvent is an OCSF API Activity entry about a request.
func requestEvent(code, activity string, r Request, actor, msg string, details map[string]any) audit.Event {
	act := audit.ActivityUpdate
	if activity == ActivityCreateName {
		act = audit.ActivityCreate
	}
	d := map[string]any{
		"request_id":  r.ID,
		"requester":   r.Requester,
		"beneficiary": r.Beneficiary,
		"role":        r.Role,
		"reason":      r.Reason,
		"state":       string(r.State),
		"duration":    r.Duration.String(),
	}
	if r.RenewalOf != "" {
		d["renewal_of"] = r.RenewalOf
	}
	if r.BreakGlass {
		d["break_glass"] = true
	}
	for k, v := range details {
		d[k] = v
	}
	return audit.Event{Code: code, Class: audit.ClassAPIActivity, Activity: act, ActivityName: activity,
		Actor: actor, Message: msg, User: r.Beneficiary, Privileges: []string{r.Role}, Details: d}
}

// grantEvent is an OCSF User Access Management entry: privileges assigned (activate, renew,
// break-glass) or revoked (revoke, expire).
func grantEvent(code string, severity int, g Grant, actor, msg string, details map[string]any) audit.Event {
	act, name := audit.ActivityCreate, "Assign Privileges"
	if g.State != GrantActive {
		act, name = audit.ActivityRead, "Revoke Privileges"
	}
	d := map[string]any{
		"grant_id":   g.ID,
		"request_id": g.RequestID,
		"subject":    g.Subject,
		"role":       g.Role,
		"state":      string(g.State),
		"starts_at":  g.StartsAt.UTC().Format(time.RFC3339Nano),
		"expires_at": g.ExpiresAt.UTC().Format(time.RFC3339Nano),
	}
	if g.BreakGlass {
		d["break_glass"] = true
	}
	for k, v := range details {
		d[k] = v
	}
	return audit.Event{Code: code, Class: audit.ClassUserAccessManagement, Activity: act, ActivityName: name,
		Severity: severity, Actor: actor, Message: msg, User: g.Subject, Privileges: []string{g.Role}, Details: d}
}
