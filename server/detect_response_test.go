package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
	"rampart.dev/rampart/store/sqlstore"
)

// TestResponderThroughServices: a rule's automatic response on the real server acts through the
// services an admin uses, each action recorded by its service with actor detect:<rule>: the
// grant revoked, the sessions revoked (the access token no longer verifies), the person
// disabled; an administrator is never disabled.
func TestResponderThroughServices(t *testing.T) {
	in := start(t, testConfig(t, ""), server.Options{}, nil)
	defer in.Close()
	ctx := context.Background()
	c, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "secret-deploy-registry", Reason: "release 7.1", Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"bob", "dave"} {
		if _, err := in.Access.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
			t.Fatal(err)
		}
	}
	ses, err := in.Sessions.Create(ctx, identity.NewSession{Subject: "alice", Method: "test", AuthTime: time.Now(),
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, Time: time.Now(), Actor: "alice", User: "alice", Message: "alice signed in"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Sessions.Verify(ctx, ses.AccessToken); err != nil {
		t.Fatal(err)
	}
	r := in.Responder()
	f := detect.Firing{Rule: "bulk-weight-reads", Key: "alice", Subject: "alice", Severity: "high", Evidence: []int64{3}, Count: 1,
		First: time.Now(), Last: time.Now(), Mode: detect.ModeOn, Actions: []string{detect.ActionRevokeGrant, detect.ActionRevokeSessions, detect.ActionCloseTunnels}}
	out, err := r.Respond(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.State != detect.ResponseDone {
			t.Fatalf("outcomes: %+v", out)
		}
	}
	gs, err := in.Store.ListGrants(ctx, access.GrantFilter{Subject: "alice"})
	if err != nil || len(gs) != 1 || gs[0].State != access.GrantRevoked || gs[0].EndedBy != "detect:bulk-weight-reads" {
		t.Fatalf("alice's grant: %+v %v", gs, err)
	}
	if _, err := in.Sessions.Verify(ctx, ses.AccessToken); err == nil {
		t.Fatal("alice's session still verifies")
	}
	admin := f
	admin.Subject, admin.Key, admin.Actions = "erin", "erin", []string{detect.ActionDisableUser}
	if out, err := r.Respond(ctx, admin); err != nil || out[0].Guardrail != detect.GuardAdmin {
		t.Fatalf("disable an admin: %+v %v", out, err)
	}
	dis := f
	dis.Actions, dis.Count = []string{detect.ActionDisableUser}, 2
	if out, err := r.Respond(ctx, dis); err != nil || out[0].State != detect.ResponseDone {
		t.Fatalf("disable alice: %+v %v", out, err)
	}
	if !in.Index.Disabled("alice") || in.Index.Disabled("erin") {
		t.Fatal("alice is not disabled, or erin is")
	}
	recs, err := in.Store.Entries(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, rec := range recs {
		s, _ := audit.Summarize(rec.Data)
		if s.Actor == "detect:bulk-weight-reads" {
			codes = append(codes, s.Code)
		}
	}
	for _, want := range []string{"detect.response", "grant.revoke", "user.sessions_revoke", "detect.response_skipped", "user.disable"} {
		if !slices.Contains(codes, want) {
			t.Errorf("no %s by detect:bulk-weight-reads in %v", want, codes)
		}
	}
}

const respondRule = `apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: request-burst}
spec:
  severity: high
  condition: 'event.code == "request.create"'
  group_by: [actor]
  threshold: {count: 2, window: 10m}
  response: {mode: "on", actions: [revoke_grant, revoke_sessions]}
`

// TestResponseFromTheRunner: on the real server (SQLite and PostgreSQL), a rule with response on
// fires from real requests and the runner's committed firing is acted on once: alice's grant is
// revoked by detect:request-burst and her session ends; one detect.response per action.
func TestResponseFromTheRunner(t *testing.T) {
	for name, kind := range stores(t) {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, dsnFor(t, kind))
			cfg.PolicyFS = withRules(t, respondRule)
			cfg.Detection.PollInterval = policy.Duration(20 * time.Millisecond)
			in := start(t, cfg, server.Options{}, nil)
			defer in.Close()
			ctx := context.Background()
			ses, err := in.Sessions.Create(ctx, identity.NewSession{Subject: "alice", Method: "test", AuthTime: time.Now(),
				Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, Time: time.Now(), Actor: "alice", User: "alice", Message: "alice signed in"}})
			if err != nil {
				t.Fatal(err)
			}
			c, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "secret-deploy-registry", Reason: "release 7.1", Duration: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range []string{"bob", "dave"} {
				if _, err := in.Access.Review(ctx, access.ReviewInput{RequestID: c.Request.ID, Approver: a, Decision: access.Approve}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := in.Access.Create(ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "eval run", Duration: time.Hour}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second) // a failure limit only
			for {
				gs, err := in.Store.ListGrants(ctx, access.GrantFilter{Subject: "alice"})
				if err != nil {
					t.Fatal(err)
				}
				if len(gs) == 1 && gs[0].State == access.GrantRevoked {
					if gs[0].EndedBy != "detect:request-burst" {
						t.Fatalf("revoked by %q", gs[0].EndedBy)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("alice's grant not revoked 30 s after the firing: %+v", gs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for time.Now().Before(deadline) {
				if _, err := in.Sessions.Verify(ctx, ses.AccessToken); err != nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := in.Sessions.Verify(ctx, ses.AccessToken); err == nil {
				t.Fatal("alice's session still verifies")
			}
			recs, err := in.Store.Entries(ctx, 0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range recs {
				if s, _ := audit.Summarize(r.Data); s.Code == "detect.response" {
					n++
				}
			}
			if n != 2 {
				t.Fatalf("%d detect.response entries, want 2 (one per action)", n)
			}
		})
	}
}

// TestResponseLostToACrashIsTaken: the runner committed a firing whose rule responds (its
// detect.alert entry and alert row are in the store) and the process died before the response;
// the next server to hold the jobs lease takes it from the ledger, once, as the rule's.
func TestResponseLostToACrashIsTaken(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.PolicyFS = withRules(t, respondRule)
	ctx := context.Background()
	if err := start(t, cfg, server.Options{}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	st, err := server.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f := detect.Firing{Rule: "request-burst", Key: "alice", Subject: "alice", Severity: "high", Evidence: []int64{0}, Count: 2,
		First: now, Last: now, Mode: detect.ModeOn, Actions: []string{detect.ActionRevokeSessions}}
	if _, err := st.RecordAlert(ctx, sqlstore.AlertFiring{Rule: f.Rule, Key: f.Key, Severity: f.Severity, At: now}, detect.AlertEvent(f, now)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	in := start(t, cfg, server.Options{}, nil)
	defer in.Close()
	deadline := time.Now().Add(30 * time.Second) // a failure limit only
	for {
		pending, err := in.Store.ResponsePending(ctx, detect.FiringID(f), 1)
		if err != nil {
			t.Fatal(err)
		}
		if !pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lost response was not taken 30 s after the start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	recs, err := in.Store.Entries(ctx, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if s, _ := audit.Summarize(r.Data); s.Code == "detect.response" && s.Actor == "detect:request-burst" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d detect.response entries, want 1", n)
	}
}
