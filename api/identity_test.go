package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
)

// Issue 11, item 2 (invariant 8): nobody, admins included, obtains a credential that acts as
// another person. Before the fix erin, an admin, issued herself tokens for bob and dave and
// approved her own request with them.
func TestNoTokenActsAsAnotherPerson(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	erin := r.client("erin")
	for _, b := range []api.CreateTokenBody{
		{Subject: "bob"},
		{Subject: "dave", TTL: "1h"},
		{Subject: "bob", Kind: "user", Description: "approvals"},
	} {
		if _, err := erin.CreateToken(ctx, b); !api.IsStatus(err, http.StatusForbidden) || !strings.Contains(err.Error(), "another person") {
			t.Fatalf("admin obtained a token for %s: %v", b.Subject, err)
		}
	}
	// A service token acts for a machine: a person's name is refused, whatever the kind says.
	if _, err := erin.CreateToken(ctx, api.CreateTokenBody{Subject: "bob", Kind: "service"}); !api.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("admin obtained a service token named after bob: %v", err)
	}
	svc, err := erin.CreateToken(ctx, api.CreateTokenBody{Subject: "service:ci", Kind: "service", TTL: "1h"})
	if err != nil || svc.Kind != "service" || svc.SessionBound {
		t.Fatalf("admin service token: %+v %v", svc, err)
	}
	// Nobody else issues service tokens, and a machine issues none.
	if _, err := r.client("alice").CreateToken(ctx, api.CreateTokenBody{Subject: "service:x", Kind: "service"}); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("non-admin service token: %v", err)
	}
	if _, err := api.NewClient(r.srv.URL, svc.Token).CreateToken(ctx, api.CreateTokenBody{Subject: "service:other", Kind: "service"}); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a service token issued a service token: %v", err)
	}
	// bob holds no token erin made.
	list, err := erin.Tokens(ctx, "bob", false)
	if err != nil || len(list) != 0 {
		t.Fatalf("bob's tokens: %+v %v", list, err)
	}
}

// Issue 11, item 6: a refreshed, stolen session asks for a 90-day token that would survive the
// session's revocation for replay, and that nobody could list. Now it is refused without a fresh
// multi-factor sign-in; what the session may mint is bound to it, revoked with it and listed.
func TestStolenSessionCannotMintLongLivedToken(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	iss := r.session("alice")
	// The thief refreshes the stolen session.
	next, err := r.in.Sessions.Refresh(ctx, iss.RefreshToken, "198.51.100.7", "thief", nil)
	if err != nil {
		t.Fatal(err)
	}
	thief := api.NewClient(r.srv.URL, next.AccessToken)
	_, err = thief.CreateToken(ctx, api.CreateTokenBody{TTL: "2160h", Description: "persistence"})
	var se *api.ServerError
	if !api.IsStatus(err, http.StatusUnauthorized) || !asServerError(err, &se) || se.Code != api.CodeStepUpRequired {
		t.Fatalf("a stolen session minted a 90-day token: %v", err)
	}
	tok, err := thief.CreateToken(ctx, api.CreateTokenBody{})
	if err != nil || !tok.SessionBound || tok.SessionID != iss.Session.ID || tok.ExpiresAt.After(iss.Session.ExpiresAt) {
		t.Fatalf("token from the session: %+v %v", tok, err)
	}
	withToken := api.NewClient(r.srv.URL, tok.Token)
	if _, err := withToken.Whoami(ctx); err != nil {
		t.Fatal(err)
	}
	// A token mints no token (only the session itself does).
	if _, err := withToken.CreateToken(ctx, api.CreateTokenBody{}); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a token minted a token: %v", err)
	}
	// The person's own client refreshes with the stolen refresh token's predecessor: replay,
	// the session dies, and the token with it, at once.
	if _, err := r.in.Sessions.Refresh(ctx, iss.RefreshToken, "192.0.2.10", "fp", nil); err == nil {
		t.Fatal("a replayed refresh token worked")
	}
	if _, err := withToken.Whoami(ctx); !api.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the token outlived its revoked session: %v", err)
	}
	// It is listed, revoked, with why; an admin sees it too.
	erin := r.client("erin")
	list, err := erin.Tokens(ctx, "alice", false)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].RevokedAt.IsZero() || !strings.Contains(list[0].RevokedReason, iss.Session.ID) {
		t.Fatalf("alice's tokens as erin sees them: %+v %v", list, err)
	}
	all, err := erin.Tokens(ctx, "", true)
	if err != nil || len(all) != 1 {
		t.Fatalf("all tokens: %+v %v", all, err)
	}
	if _, err := r.client("bob").Tokens(ctx, "alice", false); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("bob listed alice's tokens: %v", err)
	}
	if _, err := r.client("bob").Tokens(ctx, "", true); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("bob listed everyone's tokens: %v", err)
	}
	// Only the owner (or an admin) revokes a token; others are told it does not exist.
	fresh := r.session("alice")
	own, err := api.NewClient(r.srv.URL, fresh.AccessToken).CreateToken(ctx, api.CreateTokenBody{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.client("bob").RevokeToken(ctx, own.ID); !api.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("bob revoked alice's token: %v", err)
	}
	if err := api.NewClient(r.srv.URL, fresh.AccessToken).RevokeToken(ctx, own.ID); err != nil {
		t.Fatalf("alice revokes her own token: %v", err)
	}
}

// A person who stepped up within the last five minutes may mint a token that outlives the
// session; it is theirs, not bound, and recorded High.
func TestSteppedUpPersonMintsLongLivedToken(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	iss := r.session("carol")
	if err := r.in.Sessions.StepUp(ctx, iss.Session.ID, []string{"mfa"}, true, r.event("carol")); err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(r.srv.URL, iss.AccessToken)
	tok, err := c.CreateToken(ctx, api.CreateTokenBody{TTL: "720h", Description: "notebook"})
	if err != nil || tok.SessionBound || tok.ExpiresAt.Before(time.Now().Add(700*time.Hour)) {
		t.Fatalf("stepped-up token: %+v %v", tok, err)
	}
	status, m := r.raw("GET", "/v1/whoami", tok.Token, "", nil)
	if status != 200 || m["session_id"] != nil {
		t.Fatalf("a token outliving its session speaks for no session: %d %v", status, m)
	}
}

func asServerError(err error, se **api.ServerError) bool { return errors.As(err, se) }

// Issue 11, item 2 (invariant 8): erin, an admin, approved her own request with tokens she had
// issued for bob and dave. Tokens bound to no session — as an older server issued them, as the
// bootstrap issues them — and service tokens never approve; only bob's and dave's own sessions
// (or tokens bound to them) count, and each approval records the credential and session.
func TestApprovalsOnlyFromOwnSessions(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	erin := r.client("erin")
	c, err := erin.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "a quorum of one", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	id := c.Request.ID
	before := r.ledgerSize()
	bobTok, _, err := r.in.Tokens.Issue(ctx, "bob", "user", "issued by erin", "erin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	daveTok, _, _ := r.in.Tokens.Issue(ctx, "dave", "user", "issued by erin", "erin", time.Hour)
	svcTok, _, _ := r.in.Tokens.Issue(ctx, "service:ci", "service", "", "erin", time.Hour)
	for _, tok := range []string{bobTok, daveTok, svcTok} {
		cl := api.NewClient(r.srv.URL, tok)
		for _, d := range []access.Decision{access.Approve, access.Deny} {
			if _, err := cl.Review(ctx, id, d, api.ReviewBody{}); !api.IsStatus(err, http.StatusForbidden) {
				t.Fatalf("%s with a credential bound to no session: %v", d, err)
			}
		}
	}
	if v, err := erin.GetRequest(ctx, id); err != nil || v.Request.State != access.Pending || len(v.Reviews) != 0 {
		t.Fatalf("after the refused reviews: %+v %v", v, err)
	}
	if n := r.ledgerSize() - before; n != 3 {
		t.Fatalf("the refused reviews wrote %d ledger entries; want only the 3 token issues", n)
	}

	// bob approves from his own session; dave with a token minted from his.
	bob := r.session("bob")
	if _, err := api.NewClient(r.srv.URL, bob.AccessToken).Review(ctx, id, access.Approve, api.ReviewBody{}); err != nil {
		t.Fatalf("bob's own session: %v", err)
	}
	dave := r.session("dave")
	dt, err := api.NewClient(r.srv.URL, dave.AccessToken).CreateToken(ctx, api.CreateTokenBody{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.NewClient(r.srv.URL, dt.Token).Review(ctx, id, access.Approve, api.ReviewBody{}); err != nil {
		t.Fatalf("dave's session-bound token: %v", err)
	}
	v, err := erin.GetRequest(ctx, id)
	if err != nil || v.Request.State != access.Approved || len(v.Reviews) != 2 {
		t.Fatalf("after bob and dave: %+v %v", v, err)
	}
	want := map[string][2]string{"bob": {bob.Session.ID, bob.Session.ID}, "dave": {dt.ID, dave.Session.ID}}
	for _, rv := range v.Reviews {
		if w := want[rv.Approver]; rv.CredentialID != w[0] || rv.SessionID != w[1] {
			t.Errorf("review of %s records credential %q session %q; want %q %q", rv.Approver, rv.CredentialID, rv.SessionID, w[0], w[1])
		}
	}
	found := 0
	if err := erin.Entries(ctx, 0, 1000, func(_ uint64, b []byte) error {
		s := string(b)
		if strings.Contains(s, `"event_code":"request.approve"`) && strings.Contains(s, `"session_id":"`+dave.Session.ID+`"`) && strings.Contains(s, `"credential_id":"`+dt.ID+`"`) {
			found++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if found != 1 {
		t.Fatalf("dave's approval entry names his credential and session %d times, want 1", found)
	}
}
