// This file holds an alert's lifecycle (open → acked → resolved): each change of state is a
// ledger entry (alert.ack, alert.resolve) written in the transaction of the change (invariant
// 4). respond.go holds the automatic response and its guardrails.

package detect

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"rampart.dev/rampart/audit"
)

// Alert states.
const (
	StateOpen     = "open"
	StateAcked    = "acked"
	StateResolved = "resolved"
)

// Alert is one row of the alerts table: the firings of one rule for one key, from the first
// (FirstSeq, the ledger sequence number of its first detect.alert entry) to the latest
// (LastSeq), Count firings in all, until someone resolves it. A firing after that opens a new
// alert.
type Alert struct {
	ID       int64  `json:"id"`
	Rule     string `json:"rule"`
	Key      string `json:"key"`
	Severity string `json:"severity"`
	State    string `json:"state"`
	// FirstSeq and LastSeq are the ledger entries (detect.alert) of the first and latest firing.
	FirstSeq   int64     `json:"first_seq"`
	LastSeq    int64     `json:"last_seq"`
	Count      int       `json:"count"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	AckedBy    string    `json:"acked_by,omitempty"`
	ResolvedBy string    `json:"resolved_by,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// AlertFilter selects alerts for a list, newest first. Empty fields select everything.
type AlertFilter struct {
	State, Rule, Severity string
	// Since keeps alerts updated at or after it.
	Since time.Time
	// Before keeps alerts whose id is below it (the next page after a page ending at Before).
	Before int64
	// Limit bounds the page (DefaultAlertPage if 0; at most MaxAlertPage).
	Limit int
}

// Paging of alert lists.
const (
	DefaultAlertPage = 100
	MaxAlertPage     = 1000
	// MaxNoteLen bounds the note of an acknowledgement or a resolution (bytes).
	MaxNoteLen = 2000
)

// Errors of the alert lifecycle, tested with errors.Is.
var (
	ErrAlertNotFound = errors.New("no such alert")
	// ErrAlertState is a transition the alert's state does not allow (acking a resolved alert).
	ErrAlertState = errors.New("the alert's state does not allow this")
	// ErrBadNote is a note that is too long or not text.
	ErrBadNote = errors.New("bad note")
)

// Normalize checks f and applies the page defaults.
func (f AlertFilter) Normalize() (AlertFilter, error) {
	switch f.State {
	case "", StateOpen, StateAcked, StateResolved:
	default:
		return f, fmt.Errorf("state must be open, acked or resolved, not %q", f.State)
	}
	switch {
	case f.Limit < 0:
		return f, fmt.Errorf("limit must be positive, not %d", f.Limit)
	case f.Limit == 0:
		f.Limit = DefaultAlertPage
	case f.Limit > MaxAlertPage:
		f.Limit = MaxAlertPage
	}
	return f, nil
}

// Transition is an acknowledgement or a resolution.
type Transition struct {
	// To is StateAcked or StateResolved.
	To    string
	Actor string
	Note  string
	At    time.Time
}

// Apply changes a according to tr and returns the ledger entry that records it (alert.ack or
// alert.resolve). Acking needs an open alert; resolving an open or acked one. Doing again what
// was done (acking an acked alert) is ErrAlertState too, so that the ledger holds one entry per
// change.
func (tr Transition) Apply(a *Alert) (audit.Event, error) {
	if err := checkNote(tr.Note); err != nil {
		return audit.Event{}, err
	}
	code, verb := "", ""
	switch tr.To {
	case StateAcked:
		if a.State != StateOpen {
			return audit.Event{}, fmt.Errorf("%w: alert %d is %s; only an open alert can be acknowledged", ErrAlertState, a.ID, a.State)
		}
		code, verb = "alert.ack", "acknowledged"
		a.AckedBy = tr.Actor
	case StateResolved:
		if a.State == StateResolved {
			return audit.Event{}, fmt.Errorf("%w: alert %d is already resolved (by %s)", ErrAlertState, a.ID, a.ResolvedBy)
		}
		code, verb = "alert.resolve", "resolved"
		a.ResolvedBy = tr.Actor
	default:
		return audit.Event{}, fmt.Errorf("unknown alert state %q", tr.To)
	}
	from := a.State
	a.State, a.Updated = tr.To, tr.At
	if tr.Note != "" {
		a.Note = tr.Note
	}
	msg := fmt.Sprintf("%s %s alert %d (rule %s, key %s)", tr.Actor, verb, a.ID, a.Rule, a.Key)
	if tr.Note != "" {
		msg += ": " + tr.Note
	}
	return audit.Event{Code: code, Class: audit.ClassDetectionFinding, Activity: activityUpdate, ActivityName: "Update",
		Severity: audit.SeverityInformational, Time: tr.At, Actor: tr.Actor, Message: msg,
		Details: map[string]any{"alert_id": strconv.FormatInt(a.ID, 10), "rule": a.Rule, "key": a.Key, "from": from, "to": tr.To,
			"note": tr.Note, "first_seq": a.FirstSeq, "last_seq": a.LastSeq}}, nil
}

// activityUpdate is OCSF Detection Finding's Update activity.
const activityUpdate = 2

func checkNote(s string) error {
	if len(s) > MaxNoteLen {
		return fmt.Errorf("%w: the note is %d bytes; at most %d", ErrBadNote, len(s), MaxNoteLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: the note is not valid UTF-8", ErrBadNote)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return fmt.Errorf("%w: the note holds control character %U; write plain text", ErrBadNote, r)
		}
	}
	return nil
}
