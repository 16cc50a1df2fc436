package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/store/sqlstore"
)

// TestAlertsPages: erin (admin) lists alerts, opens one with its evidence and the command that
// proves it, acknowledges and resolves it through forms with the CSRF token; alice may not look;
// a hostile key is shown escaped; a GET changes nothing.
func TestAlertsPages(t *testing.T) {
	e := start(t)
	alice, erin := e.signIn("alice"), e.signIn("erin")
	key := "actor=alice\x1b[2J<script>"
	a, err := e.in.Store.RecordAlert(context.Background(), sqlstore.AlertFiring{Rule: "bulk-weight-reads", Key: key, Severity: "high", At: time.Now()},
		audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: 1, Severity: audit.SeverityHigh, Time: time.Now(),
			Actor: "detect:bulk-weight-reads", Message: "alice read 40 checkpoints", Details: map[string]any{"evidence": []any{0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	page := "/alerts/" + strconv.FormatInt(a.ID, 10)
	if r := alice.get("/alerts"); r.status != http.StatusForbidden {
		t.Fatalf("alice lists alerts: %d", r.status)
	}
	r := erin.get("/alerts")
	if r.status != http.StatusOK || !strings.Contains(r.body, `href="`+page+`"`) || strings.Contains(r.body, "<script>") || !strings.Contains(r.body, `\x1b[2J`) {
		t.Fatalf("the list:\n%s", r.body)
	}
	r = erin.get(page)
	if r.status != http.StatusOK || !strings.Contains(r.body, "rampart audit prove") || !strings.Contains(r.body, "alice read 40 checkpoints") {
		t.Fatalf("the alert:\n%s", r.body)
	}
	before := e.ledgerSize()
	erin.get(page + "/ack?note=x&csrf=" + url.QueryEscape(erin.csrf()))
	if e.ledgerSize() != before {
		t.Fatal("a GET acknowledged the alert")
	}
	if r := erin.post(page+"/ack", url.Values{"note": {"looking"}, "csrf": {"forged"}}); r.status != http.StatusForbidden {
		t.Fatalf("a forged CSRF token: %d", r.status)
	}
	if r := erin.post(page+"/ack", url.Values{"note": {"looking"}}); r.status != http.StatusSeeOther {
		t.Fatalf("ack: %d %s", r.status, r.body)
	}
	if r := erin.post(page+"/resolve", url.Values{"note": {"expected: the eval sweep"}}); r.status != http.StatusSeeOther {
		t.Fatalf("resolve: %d %s", r.status, r.body)
	}
	got, err := e.in.Store.Alert(context.Background(), a.ID)
	if err != nil || got.State != detect.StateResolved || got.AckedBy != "erin" || got.ResolvedBy != "erin" {
		t.Fatalf("after the forms: %+v %v", got, err)
	}
	if r := erin.get("/alerts?state=resolved"); !strings.Contains(r.body, `href="`+page+`"`) {
		t.Fatalf("resolved list:\n%s", r.body)
	}
}
