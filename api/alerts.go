package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/detect"
)

// AlertStore is where alerts are read and changed (store/sqlstore implements it).
type AlertStore interface {
	Alerts(ctx context.Context, f detect.AlertFilter) ([]detect.Alert, error)
	Alert(ctx context.Context, id int64) (detect.Alert, error)
	TransitionAlert(ctx context.Context, id int64, tr detect.Transition) (detect.Alert, int64, error)
}

// AlertList is the body of GET /v1/alerts: a page of alerts, newest first, and the cursor of
// the next page (before=NextBefore; 0 when this is the last).
type AlertList struct {
	Alerts     []detect.Alert `json:"alerts"`
	NextBefore int64          `json:"next_before,omitempty"`
}

// AlertEntry is one ledger entry of an alert, byte for byte as stored and hashed.
type AlertEntry struct {
	Seq   int64           `json:"seq"`
	Entry json.RawMessage `json:"entry"`
}

// AlertDetail is the body of GET /v1/alerts/{id}: the alert, its first and latest detect.alert
// entries, and the ledger entries those name as evidence (at most MaxAlertEvidence). Every one is
// provable: `rampart audit prove SEQ…` checks each against a signed checkpoint.
type AlertDetail struct {
	detect.Alert
	Firings  []AlertEntry `json:"firings"`
	Evidence []AlertEntry `json:"evidence"`
	// EvidenceSeqs are the sequence numbers of the evidence, for `rampart audit prove`.
	EvidenceSeqs []int64 `json:"evidence_seqs"`
	// Prove is the command that proves the firings and the evidence are in the ledger.
	Prove string `json:"prove"`
}

// AlertNote is the optional body of POST /v1/alerts/{id}/ack and /resolve.
type AlertNote struct {
	Note string `json:"note,omitempty"`
}

// MaxAlertEvidence bounds the evidence entries shown with an alert.
const MaxAlertEvidence = 200

func (s *Server) alertsOr404(c caller, act bool) error {
	if s.alerts == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server keeps no alerts (detection is not running)"}
	}
	if act {
		if !c.admin() {
			return errForbidden("acknowledging or resolving an alert needs the admin group (auditors may read alerts, not act on them)")
		}
		return nil
	}
	if !c.admin() && !c.auditor() {
		return errForbidden("alerts name people and what they did: reading them needs the admin or auditor group")
	}
	return nil
}

func alertError(err error) error {
	switch {
	case errors.Is(err, detect.ErrAlertNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, detect.ErrAlertState):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, detect.ErrBadNote):
		return errInvalid("field \"note\": %v", err)
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "store unavailable: " + err.Error()}
}

// listAlerts is GET /v1/alerts?state=&rule=&severity=&since=&before=&limit= (admins, auditors).
func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.alertsOr404(c, false); err != nil {
		return err
	}
	q := r.URL.Query()
	f := detect.AlertFilter{State: q.Get("state"), Rule: q.Get("rule"), Severity: q.Get("severity")}
	if v := q.Get("since"); v != "" {
		t, err := parseSince(v, time.Now())
		if err != nil {
			return errInvalid("query parameter \"since\": %v", err)
		}
		f.Since = t
	}
	before, err := uintParam(r, "before", 0)
	if err != nil {
		return err
	}
	limit, err := uintParam(r, "limit", detect.DefaultAlertPage)
	if err != nil {
		return err
	}
	if limit == 0 || limit > detect.MaxAlertPage {
		return errInvalid("query parameter \"limit\" must be from 1 to %d", detect.MaxAlertPage)
	}
	f.Before, f.Limit = int64(before), int(limit)
	if f, err = f.Normalize(); err != nil {
		return errInvalid("query parameter %v", err)
	}
	list, err := s.alerts.Alerts(r.Context(), f)
	if err != nil {
		return alertError(err)
	}
	out := AlertList{Alerts: list}
	if out.Alerts == nil {
		out.Alerts = []detect.Alert{}
	}
	if len(list) == f.Limit {
		out.NextBefore = list[len(list)-1].ID
	}
	writeJSON(w, 200, out)
	return nil
}

// parseSince reads an RFC 3339 time or a duration before now ("24h").
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration before now (24h)", v)
	}
	return now.Add(-d), nil
}

func alertID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errInvalid("alert id %q is not a positive whole number (see `rampart alerts list`)", r.PathValue("id"))
	}
	return id, nil
}

// getAlert is GET /v1/alerts/{id} (admins, auditors): the alert with its evidence.
func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.alertsOr404(c, false); err != nil {
		return err
	}
	id, err := alertID(r)
	if err != nil {
		return err
	}
	a, err := s.alerts.Alert(r.Context(), id)
	if err != nil {
		return alertError(err)
	}
	out := AlertDetail{Alert: a, Firings: []AlertEntry{}, Evidence: []AlertEntry{}, EvidenceSeqs: []int64{}}
	seqs := []int64{a.FirstSeq}
	if a.LastSeq != a.FirstSeq {
		seqs = append(seqs, a.LastSeq)
	}
	var evidence []int64
	for _, seq := range seqs {
		e, err := s.entry(r.Context(), seq)
		if err != nil {
			return err
		}
		out.Firings = append(out.Firings, e)
		for _, ev := range EvidenceOf(e.Entry) {
			if !slices.Contains(evidence, ev) && len(evidence) < MaxAlertEvidence {
				evidence = append(evidence, ev)
			}
		}
	}
	slices.Sort(evidence)
	for _, seq := range evidence {
		e, err := s.entry(r.Context(), seq)
		if err != nil {
			return err
		}
		out.Evidence = append(out.Evidence, e)
		out.EvidenceSeqs = append(out.EvidenceSeqs, seq)
	}
	all := append(append([]int64{}, seqs...), evidence...)
	strs := make([]string, len(all))
	for i, s := range all {
		strs[i] = strconv.FormatInt(s, 10)
	}
	out.Prove = "rampart audit prove " + strings.Join(strs, " ")
	writeJSON(w, 200, out)
	return nil
}

// entry reads ledger entry seq.
func (s *Server) entry(ctx context.Context, seq int64) (AlertEntry, error) {
	recs, err := s.ledgerStore().Entries(ctx, seq, 1)
	if err != nil {
		return AlertEntry{}, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "store unavailable: " + err.Error()}
	}
	if len(recs) != 1 {
		return AlertEntry{}, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: fmt.Sprintf("ledger entry %d, named by the alert, is not in the ledger", seq)}
	}
	return AlertEntry{Seq: seq, Entry: recs[0].Data}, nil
}

// EvidenceOf returns the evidence sequence numbers a detect.alert entry names
// (unmapped.evidence), ignoring anything that is not a non-negative whole number.
func EvidenceOf(entry []byte) []int64 {
	var e struct {
		Unmapped struct {
			Evidence []json.Number `json:"evidence"`
		} `json:"unmapped"`
	}
	if json.Unmarshal(entry, &e) != nil {
		return nil
	}
	var out []int64
	for _, n := range e.Unmapped.Evidence {
		if v, err := strconv.ParseInt(n.String(), 10, 64); err == nil && v >= 0 {
			out = append(out, v)
		}
	}
	return out
}

// transitionAlert is POST /v1/alerts/{id}/ack and /resolve (admins).
func (s *Server) transitionAlert(to string) handler {
	return func(w http.ResponseWriter, r *http.Request, c caller) error {
		if err := s.alertsOr404(c, true); err != nil {
			return err
		}
		id, err := alertID(r)
		if err != nil {
			return err
		}
		var body AlertNote
		if err := decodeOptional(w, r, &body); err != nil {
			return err
		}
		a, _, err := s.alerts.TransitionAlert(r.Context(), id, detect.Transition{To: to, Actor: c.Subject, Note: body.Note, At: time.Now()})
		if err != nil {
			return alertError(err)
		}
		writeJSON(w, 200, a)
		return nil
	}
}

// Alerts lists a page of alerts (filters as in detect.AlertFilter).
func (c *Client) Alerts(ctx context.Context, f detect.AlertFilter, since string) (AlertList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "rule": f.Rule, "severity": f.Severity, "since": since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Before > 0 {
		q.Set("before", strconv.FormatInt(f.Before, 10))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out AlertList
	err := c.do(ctx, "GET", "/v1/alerts", q, nil, &out)
	return out, err
}

// Alert returns one alert with its evidence.
func (c *Client) Alert(ctx context.Context, id int64) (AlertDetail, error) {
	var out AlertDetail
	err := c.do(ctx, "GET", "/v1/alerts/"+strconv.FormatInt(id, 10), nil, nil, &out)
	return out, err
}

// AckAlert acknowledges an open alert.
func (c *Client) AckAlert(ctx context.Context, id int64, note string) (detect.Alert, error) {
	var out detect.Alert
	err := c.do(ctx, "POST", "/v1/alerts/"+strconv.FormatInt(id, 10)+"/ack", nil, AlertNote{Note: note}, &out)
	return out, err
}

// ResolveAlert resolves an open or acknowledged alert.
func (c *Client) ResolveAlert(ctx context.Context, id int64, note string) (detect.Alert, error) {
	var out detect.Alert
	err := c.do(ctx, "POST", "/v1/alerts/"+strconv.FormatInt(id, 10)+"/resolve", nil, AlertNote{Note: note}, &out)
	return out, err
}
