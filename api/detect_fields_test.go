package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/identity"
)

// An approval's ledger entry records the risk level the approver's session was signed in at
// (unmapped.session_risk), from the session itself or from a token bound to it: detection's
// rule on approvals from risky sessions reads it (docs/detection.md).
func TestApprovalRecordsSessionRisk(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	c, err := r.client("erin").CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "training run", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	risky := func(user, risk string) identity.Issued {
		iss, err := r.in.Sessions.Create(ctx, identity.NewSession{Subject: user, Method: "test", AuthTime: time.Now(), Risk: risk, Event: r.event(user)})
		if err != nil {
			t.Fatal(err)
		}
		return iss
	}
	bob, dave := risky("bob", "low"), risky("dave", "medium")
	if _, err := api.NewClient(r.srv.URL, bob.AccessToken).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
		t.Fatal(err)
	}
	dt, err := api.NewClient(r.srv.URL, dave.AccessToken).CreateToken(ctx, api.CreateTokenBody{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(r.srv.URL, dt.Token).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	if err := r.client("erin").Entries(ctx, 0, 1000, func(_ uint64, b []byte) error {
		var e struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
			Actor    struct{ User struct{ Name string } } `json:"actor"`
			Unmapped map[string]any                       `json:"unmapped"`
		}
		if err := json.Unmarshal(b, &e); err != nil {
			return err
		}
		if e.Metadata.EventCode == "request.approve" {
			got[e.Actor.User.Name] = e.Unmapped["session_risk"]
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got["bob"] != "low" || got["dave"] != "medium" {
		t.Fatalf("session_risk of the approvals: %v, want bob low and dave medium", got)
	}
}
