package api_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/store/sqlstore"
)

// TestAlertsAPI: alerts over HTTP on the real server: who may read and act, the evidence with
// how to prove it, the state machine's refusals as 409, hostile notes as 400, and the answers
// valid against api/openapi.json.
func TestAlertsAPI(t *testing.T) {
	// frank is an auditor and nothing more.
	pol := demoWith(t, nil)
	for name, f := range pol {
		if strings.HasSuffix(name, "groups.yaml") {
			f.Data = []byte(strings.Replace(string(f.Data), "description: Read every request, grant and ledger entry.\n  members: [erin]", "description: Read every request, grant and ledger entry.\n  members: [erin, frank]", 1))
		}
	}
	r := newRigWith(t, false, pol)
	ctx := context.Background()
	st := r.in.Store
	// Entries 0 and 1 (the server's start) stand for the evidence the runner names.
	a, err := st.RecordAlert(ctx, sqlstore.AlertFiring{Rule: "bulk-weight-reads", Key: "alice", Severity: "high", At: time.Now()},
		audit.Event{Code: "detect.alert", Class: audit.ClassDetectionFinding, Activity: 1, ActivityName: "Create", Severity: audit.SeverityHigh, Time: time.Now(),
			Actor: "detect:bulk-weight-reads", Message: "alice read 40 checkpoints in 10 minutes", Details: map[string]any{"rule": "bulk-weight-reads", "key": "alice", "evidence": []any{0, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	erin, frank, alice := r.client("erin"), r.client("frank"), r.client("alice")

	if _, err := alice.Alerts(ctx, detect.AlertFilter{}, ""); !api.IsStatus(err, 403) {
		t.Fatalf("alice (neither admin nor auditor) lists alerts: %v", err)
	}
	list, err := frank.Alerts(ctx, detect.AlertFilter{State: "open"}, "1h")
	if err != nil || len(list.Alerts) != 1 || list.Alerts[0].ID != a.ID {
		t.Fatalf("the auditor lists: %+v %v", list, err)
	}
	if _, err := frank.AckAlert(ctx, a.ID, ""); !api.IsStatus(err, 403) {
		t.Fatalf("the auditor acks: %v", err)
	}
	d, err := erin.Alert(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Firings) != 1 || d.Firings[0].Seq != a.FirstSeq || len(d.Evidence) != 2 || d.EvidenceSeqs[1] != 1 ||
		!strings.HasPrefix(d.Prove, "rampart audit prove ") || !strings.Contains(d.Prove, " 0 1") {
		t.Fatalf("detail: %+v", d)
	}
	body, _ := json.Marshal(d)
	for _, e := range api.ValidateAgainstSchema(t, "AlertDetail", body) {
		t.Error(e)
	}

	code, m := r.raw("POST", "/v1/alerts/1/ack", r.session("erin").AccessToken, "application/json", []byte(`{"note":"a\u001b[2Jb"}`))
	if code != 400 || !strings.Contains(errMsg(m), "note") {
		t.Fatalf("a note with an escape sequence: %d %v", code, m)
	}
	for _, bad := range []string{"/v1/alerts/0", "/v1/alerts/x", "/v1/alerts/-1", "/v1/alerts?limit=0", "/v1/alerts?state=closed", "/v1/alerts?since=yesterday"} {
		if code, m := r.raw("GET", bad, r.session("erin").AccessToken, "", nil); code != 400 {
			t.Errorf("GET %s: %d %v", bad, code, m)
		}
	}
	if _, err := erin.Alert(ctx, 99); !api.IsStatus(err, 404) {
		t.Errorf("no such alert: %v", err)
	}
	acked, err := erin.AckAlert(ctx, a.ID, "looking")
	if err != nil || acked.State != detect.StateAcked || acked.AckedBy != "erin" {
		t.Fatalf("ack: %+v %v", acked, err)
	}
	if _, err := erin.AckAlert(ctx, a.ID, ""); !api.IsStatus(err, 409) {
		t.Fatalf("ack twice: %v", err)
	}
	res, err := erin.ResolveAlert(ctx, a.ID, "expected: the eval sweep")
	if err != nil || res.State != detect.StateResolved || res.Note != "expected: the eval sweep" {
		t.Fatalf("resolve: %+v %v", res, err)
	}
	body, _ = json.Marshal(res)
	for _, e := range api.ValidateAgainstSchema(t, "Alert", body) {
		t.Error(e)
	}
}
