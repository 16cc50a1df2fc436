package console

import (
	"net/http"
	"strconv"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
)

// alertsData is the alerts page: a page of alerts in one state.
type alertsData struct {
	State  string
	Alerts []detect.Alert
	Older  string
}

// alertEntry is a ledger entry of an alert's page, summarized.
type alertEntry struct {
	Seq int64
	audit.Summary
}

// alertData is one alert's page.
type alertData struct {
	Alert    detect.Alert
	Firings  []alertEntry
	Evidence []alertEntry
	Prove    string
}

// alerts lists alerts (admins and auditors; the API decides).
func (c *Console) alerts(v *view) error {
	q := v.r.URL.Query()
	d := alertsData{State: q.Get("state")}
	if d.State == "" {
		d.State = detect.StateOpen
	}
	if d.State == "all" {
		d.State = ""
	}
	before, _ := strconv.ParseInt(q.Get("before"), 10, 64)
	l, err := v.api.Alerts(v.ctx(), detect.AlertFilter{State: d.State, Before: before, Limit: 50}, "")
	if err != nil {
		return err
	}
	d.Alerts = l.Alerts
	if l.NextBefore > 0 {
		d.Older = "/alerts?state=" + q.Get("state") + "&before=" + strconv.FormatInt(l.NextBefore, 10)
	}
	if d.State == "" {
		d.State = "all"
	}
	c.render(v, http.StatusOK, "alerts", page{Title: "Alerts", Nav: "alerts", Data: d})
	return nil
}

func summarize(es []api.AlertEntry) []alertEntry {
	out := make([]alertEntry, 0, len(es))
	for _, e := range es {
		s, err := audit.Summarize(e.Entry)
		if err != nil {
			s = audit.Summary{Code: "(unreadable)", Message: err.Error()}
		}
		out = append(out, alertEntry{Seq: e.Seq, Summary: s})
	}
	return out
}

// alertPage shows an alert with its evidence, and to admins the forms that ack and resolve it.
func (c *Console) alertPage(v *view) error {
	id, err := strconv.ParseInt(v.r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		c.problem(v, http.StatusNotFound, "Not found", "There is no such alert.")
		return nil
	}
	a, err := v.api.Alert(v.ctx(), id)
	if err != nil {
		return err
	}
	d := alertData{Alert: a.Alert, Firings: summarize(a.Firings), Evidence: summarize(a.Evidence), Prove: a.Prove}
	c.render(v, http.StatusOK, "alert", page{Title: "Alert " + strconv.FormatInt(id, 10), Nav: "alerts", Data: d})
	return nil
}

// alertTransition acks or resolves an alert with the form's note.
func (c *Console) alertTransition(to string) func(v *view) error {
	return func(v *view) error {
		id, err := strconv.ParseInt(v.r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			c.problem(v, http.StatusNotFound, "Not found", "There is no such alert.")
			return nil
		}
		note := v.r.PostForm.Get("note")
		if to == detect.StateAcked {
			_, err = v.api.AckAlert(v.ctx(), id, note)
		} else {
			_, err = v.api.ResolveAlert(v.ctx(), id, note)
		}
		if err != nil {
			return err
		}
		return seeOther(v, "/alerts/"+strconv.FormatInt(id, 10), "done")
	}
}
