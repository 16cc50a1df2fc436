package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
)

func signInEvent(user string) audit.Event {
	return audit.Event{Code: "session.create", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Time: Epoch, Actor: user, User: user, Message: user + " signed in"}
}

// testSessions: rotation, replay detection, revocation and disabled users, on the real store.
func testSessions(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	clock := clocktest.New(Epoch)
	ss := &identity.Sessions{Store: s, Now: clock.Now, CacheTTL: -1}
	iss, err := ss.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: Epoch, AMR: []string{"pwd"},
		IP: "192.0.2.10", Fingerprint: "fp1", Groups: []string{"researchers"}, Risk: "none", Event: signInEvent("alice")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(iss.AccessToken, identity.AccessPrefix) || !strings.HasPrefix(iss.RefreshToken, identity.RefreshPrefix) {
		t.Fatalf("tokens %q %q", iss.AccessToken, iss.RefreshToken)
	}
	p, err := ss.Verify(ctx, iss.AccessToken)
	if err != nil || p.Subject != "alice" || p.SessionID != iss.Session.ID || len(p.Groups) != 1 || !p.MFAAt.IsZero() {
		t.Fatalf("verify: %+v %v", p, err)
	}
	if _, err := ss.Verify(ctx, iss.RefreshToken); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatal("a refresh token was accepted as an access token")
	}
	if u, _ := s.UserRecord(ctx, "alice"); len(u.Groups) != 1 || u.Groups[0] != "researchers" {
		t.Fatalf("user record %+v", u)
	}
	// Access tokens expire; refresh rotates.
	clock.Advance(identity.DefaultAccessTTL)
	if _, err := ss.Verify(ctx, iss.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired access token: %v", err)
	}
	next, err := ss.Refresh(ctx, iss.RefreshToken, "192.0.2.10", "fp1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if next.RefreshToken == iss.RefreshToken || next.Session.ID != iss.Session.ID {
		t.Fatal("refresh did not rotate within the session")
	}
	if _, err := ss.Verify(ctx, next.AccessToken); err != nil {
		t.Fatal(err)
	}
	// A refresh check can refuse (the risk engine).
	if _, err := ss.Refresh(ctx, next.RefreshToken, "203.0.113.9", "fp-other", func(identity.Session) error { return errors.New("replay from elsewhere") }); err == nil {
		t.Fatal("a refused refresh succeeded")
	}
	// Replaying the first (spent) refresh token revokes the whole session.
	if _, err := ss.Refresh(ctx, iss.RefreshToken, "203.0.113.9", "fp-attacker", nil); !errors.Is(err, identity.ErrRefreshReused) {
		t.Fatalf("replayed refresh token: %v", err)
	}
	if _, err := ss.Verify(ctx, next.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatal("the session survived a refresh-token replay")
	}
	if _, err := ss.Refresh(ctx, next.RefreshToken, "192.0.2.10", "fp1", nil); err == nil {
		t.Fatal("the rotated refresh token still works after the family was revoked")
	}
	recs, _ := s.Entries(ctx, 0, 100)
	found := false
	for _, r := range recs {
		found = found || strings.Contains(string(r.Data), `"event_code":"session.refresh_reused"`)
	}
	if !found {
		t.Fatal("no ledger entry for the refresh-token replay")
	}

	// Revocation and disabling take effect on the next call.
	b, err := ss.Create(ctx, identity.NewSession{Subject: "bob", Method: "oidc", AuthTime: clock.Now(), Event: signInEvent("bob")})
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.Revoke(ctx, b.Session.ID, "erin", "lost laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Verify(ctx, b.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatal("revoked session accepted")
	}
	c, _ := ss.Create(ctx, identity.NewSession{Subject: "carol", Method: "oidc", AuthTime: clock.Now(), Event: signInEvent("carol")})
	if err := ss.SetDisabled(ctx, "carol", "erin", true); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Verify(ctx, c.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("disabled user: %v", err)
	}
	old := c
	if _, err := ss.Create(ctx, identity.NewSession{Subject: "carol", Method: "oidc", AuthTime: clock.Now(), Event: signInEvent("carol")}); err == nil {
		t.Fatal("a disabled user signed in")
	}
	if err := ss.SetDisabled(ctx, "carol", "erin", false); err != nil {
		t.Fatal(err)
	}
	// Enabled again, carol signs in anew; her session from before stays revoked.
	if _, err := ss.Verify(ctx, old.AccessToken); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("re-enabling revived a session: %v", err)
	}
	c, err = ss.Create(ctx, identity.NewSession{Subject: "carol", Method: "oidc", AuthTime: clock.Now(), Event: signInEvent("carol")})
	if err != nil {
		t.Fatalf("re-enabled user: %v", err)
	}
	// Step-up marks a multi-factor authentication.
	clock.Advance(time.Minute)
	if err := ss.StepUp(ctx, c.Session.ID, []string{"otp", "mfa"}, true, signInEvent("carol")); err != nil {
		t.Fatal(err)
	}
	if p, _ := ss.Verify(ctx, c.AccessToken); !p.MFAAt.Equal(clock.Now()) {
		t.Fatalf("step-up not recorded: %+v", p)
	}
	list, err := s.ListSessions(ctx, "")
	if err != nil || len(list) != 4 {
		t.Fatalf("sessions: %d %v", len(list), err)
	}
}
