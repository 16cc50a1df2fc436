package access

import (
	"context"
	"fmt"
	"sort"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Notification kinds: what a person is told, and why they are told.
const (
	// NotifyReview asks the eligible approvers of a new request to review it.
	NotifyReview = "review"
	// NotifyDecided tells the requester that their request was granted or denied.
	NotifyDecided = "decided"
	// NotifyBreakGlass tells the administrators at once that someone took break-glass access.
	NotifyBreakGlass = "break_glass"
	// NotifyAccount tells a person about a change to their own account they must check (a
	// second factor enrolled, replaced or reset, an enrolment allowed by an administrator): a
	// ledger entry that carries a details.notify hint.
	NotifyAccount = "account"
	// NotifyAlert tells the administrators that a detection rule fired (a detect.alert entry;
	// docs/alerts.md).
	NotifyAlert = "alert"
)

// HintedNotification returns the notification that ledger entry e, appended at seq, asks for
// with a hint in its details — "notify": {"subject": who must be told, "why": what to tell
// them} — which packages that are not the access workflow (identity) put on entries about a
// person's account. The store writes it in the transaction that appends e (invariant 4).
func HintedNotification(seq int64, e audit.Event) (Notification, bool) {
	h, ok := e.Details["notify"].(map[string]any)
	if !ok {
		return Notification{}, false
	}
	subject, _ := h["subject"].(string)
	why, _ := h["why"].(string)
	if subject == "" {
		return Notification{}, false
	}
	msg := e.Message
	if why != "" {
		msg = why + ": " + e.Message
	}
	return Notification{ID: NewID("ntf"), Seq: seq, Event: e.Code, Kind: NotifyAccount, Recipients: []string{subject},
		Subject: subject, Message: msg, CreatedAt: e.Time}, true
}

// AlertInfo is what an alert notification says about the firing.
type AlertInfo struct {
	Rule     string   `json:"rule"`
	Key      string   `json:"key"`
	Severity string   `json:"severity"`
	Mitre    []string `json:"mitre,omitempty"`
	// Evidence are the ledger sequence numbers of the entries that matched (provable with
	// inclusion proofs: rampart audit prove); Count how many matched in all.
	Evidence []int64 `json:"evidence"`
	Count    int     `json:"count"`
	Learning bool    `json:"learning,omitempty"`
}

// AlertNotification returns the notification a detect.alert entry e, appended at seq, causes:
// the administrators are told, through every sink whose events include "alert" (or that lists
// no events). The store writes it in the transaction that appends e, like HintedNotification,
// whichever replica's detection runner appended it; the recipients are resolved at delivery
// (notify.Router), since the store does not hold the policy.
func AlertNotification(seq int64, e audit.Event) (Notification, bool) {
	if e.Code != "detect.alert" {
		return Notification{}, false
	}
	str := func(k string) string { v, _ := e.Details[k].(string); return v }
	info := &AlertInfo{Rule: str("rule"), Key: str("key"), Severity: str("severity"), Evidence: []int64{}}
	if list, ok := e.Details["evidence"].([]any); ok {
		for _, v := range list {
			if n, ok := wholeNumber(v); ok {
				info.Evidence = append(info.Evidence, n)
			}
		}
	}
	if n, ok := wholeNumber(e.Details["count"]); ok {
		info.Count = int(n)
	}
	if list, ok := e.Details["mitre"].([]any); ok {
		for _, v := range list {
			if m, ok := v.(string); ok {
				info.Mitre = append(info.Mitre, m)
			}
		}
	}
	info.Learning, _ = e.Details["learning"].(bool)
	subject := str("subject")
	if subject == "" {
		subject = e.User
	}
	return Notification{ID: NewID("ntf"), Seq: seq, Event: e.Code, Kind: NotifyAlert, Subject: subject, Outcome: info.Severity,
		Message: e.Message, CreatedAt: e.Time, Alert: info}, true
}

func wholeNumber(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), n == float64(int64(n))
	}
	return 0, false
}

// Notification is what the workflow owes people about a change it committed. It is written to
// the store's outbox by the same transaction that appends the ledger entry causing it (Seq), so
// that it exists if and only if the change committed; a delivery worker sends it at least once.
// It carries no secret and no link that acts: receivers link to the server's page of the request.
type Notification struct {
	ID string `json:"id"`
	// Seq is the ledger entry that caused it; Event is that entry's code.
	Seq   int64  `json:"seq"`
	Event string `json:"event"`
	Kind  string `json:"kind"`
	// Recipients are the people to tell, resolved from the policy's groups when the change
	// committed (not when it is delivered).
	Recipients []string  `json:"recipients"`
	RequestID  string    `json:"request_id"`
	GrantID    string    `json:"grant_id,omitempty"`
	Role       string    `json:"role"`
	Policy     string    `json:"policy,omitempty"`
	Requester  string    `json:"requester"`
	Subject    string    `json:"beneficiary"`
	Outcome    string    `json:"outcome,omitempty"`
	Message    string    `json:"message"`
	CreatedAt  time.Time `json:"created_at"`
	// Alert is set on an alert notification (Kind NotifyAlert).
	Alert *AlertInfo `json:"alert,omitempty"`
	// Attempts is how many deliveries were started (set by the outbox, not by the workflow).
	Attempts int `json:"-"`
	// Delivered names the sinks that have taken it (set by the outbox): a retry skips them.
	Delivered []string `json:"-"`
}

// outbox writes the notification that ledger entry e (at seq) causes, if any, in the same
// transaction. Every workflow step appends through txn.record, so every step gets this; a
// failure here fails the step, like a failed ledger append (invariant 4).
func (t *txn) outbox(ctx context.Context, seq int64, e audit.Event) error {
	n, ok, err := t.svc.notificationFor(ctx, t, seq, e)
	if err != nil || !ok {
		return err
	}
	if err := t.InsertNotification(ctx, n); err != nil {
		return fmt.Errorf("write notification for ledger entry %d: %w", seq, err)
	}
	t.notifications++
	return nil
}

func (s *Service) notificationFor(ctx context.Context, r Reader, seq int64, e audit.Event) (Notification, bool, error) {
	str := func(k string) string { v, _ := e.Details[k].(string); return v }
	n := Notification{ID: NewID("ntf"), Seq: seq, Event: e.Code, RequestID: str("request_id"), GrantID: str("grant_id"),
		Role: str("role"), Policy: str("policy"), Requester: str("requester"), Subject: str("beneficiary"), Message: e.Message, CreatedAt: e.Time}
	pol := s.Policy()
	switch e.Code {
	case "request.create":
		if bg, _ := e.Details["break_glass"].(bool); bg {
			return n, false, nil // the grant.break_glass entry that follows pages the administrators
		}
		n.Kind, n.Recipients = NotifyReview, eligibleApprovers(pol, n.Role, n.Requester, n.Subject)
	case "request.denied":
		n.Kind, n.Outcome, n.Recipients = NotifyDecided, "denied", []string{n.Requester}
	case "grant.activate", "grant.renew":
		req, err := r.Request(ctx, n.RequestID)
		if err != nil {
			return n, false, fmt.Errorf("read request %s to tell its requester: %w", n.RequestID, err)
		}
		n.Requester, n.Subject, n.Policy = req.Requester, req.Beneficiary, req.Policy
		n.Kind, n.Outcome, n.Recipients = NotifyDecided, "granted", []string{req.Requester}
	case "grant.break_glass":
		req, err := r.Request(ctx, n.RequestID)
		if err == nil {
			n.Requester = req.Requester
		}
		n.Subject = str("subject")
		n.Kind, n.Outcome = NotifyBreakGlass, "break_glass"
		if g := pol.Notifications().BreakGlassGroup; g != "" {
			n.Recipients = append([]string(nil), pol.Members(g)...)
		}
	default:
		return n, false, nil
	}
	if n.Subject == "" {
		n.Subject = str("subject")
	}
	return n, true, nil
}

// eligibleApprovers returns the members of the approving groups of role's approval policy who
// may approve a request by requester for beneficiary, by the same rule the workflow counts
// reviews with (policy.EligibleSteps): the requester, the beneficiary and excluded people are
// not asked.
func eligibleApprovers(pol *policy.Policy, role, requester, beneficiary string) []string {
	req, err := pol.Requirement(role)
	if err != nil || req.Policy == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, st := range req.Policy.Steps {
		for _, g := range st.From {
			for _, m := range pol.Members(g) {
				if seen[m] {
					continue
				}
				seen[m] = true
				if steps, _ := pol.EligibleSteps(req.Policy, m, requester, beneficiary); len(steps) > 0 {
					out = append(out, m)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
