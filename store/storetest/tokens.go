package storetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/store/sqlstore"
)

// testTokenBinding: the tokens a person mints are bound to the session that minted them
// (invariant 8, issue 11 item 6). A stolen, refreshed session cannot mint a token that outlives
// it without a fresh multi-factor authentication; what it mints dies with it, whether the session
// is revoked by a person or by a refresh-token replay; every token is listed; service tokens act
// only for service: subjects, on the real store.
func testTokenBinding(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	clock := clocktest.New(Epoch)
	tokens := &identity.Tokens{Store: s, Now: clock.Now, CacheTTL: -1}
	ss := &identity.Sessions{Store: s, Now: clock.Now, CacheTTL: -1, Tokens: tokens}
	open := func(user string) (identity.Issued, identity.Principal) {
		t.Helper()
		iss, err := ss.Create(ctx, identity.NewSession{Subject: user, Method: "oidc", AuthTime: clock.Now(), AMR: []string{"pwd"}, Event: signInEvent(user)})
		if err != nil {
			t.Fatal(err)
		}
		p, err := ss.Verify(ctx, iss.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		return iss, p
	}
	iss, _ := open("alice")

	// The attack: the session is refreshed (by the thief) and asks for a 90-day token.
	clock.Advance(identity.DefaultAccessTTL)
	next, err := ss.Refresh(ctx, iss.RefreshToken, "198.51.100.7", "thief", nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := ss.Verify(ctx, next.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokens.Mint(ctx, identity.MintInput{Caller: alice, TTL: 90 * 24 * time.Hour}); !errors.Is(err, identity.ErrStepUpNeeded) {
		t.Fatalf("a session without a fresh multi-factor authentication minted a token outliving it: %v", err)
	}
	// What it may mint is bound to it and ends with it.
	secret, tok, err := tokens.Mint(ctx, identity.MintInput{Caller: alice, Description: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if !tok.SessionBound || tok.SessionID != iss.Session.ID || !tok.ExpiresAt.Equal(iss.Session.ExpiresAt) || tok.IssuedBy != "alice" {
		t.Fatalf("minted token %+v; want bound to %s until %s", tok, iss.Session.ID, iss.Session.ExpiresAt)
	}
	short, _, err := tokens.Mint(ctx, identity.MintInput{Caller: alice, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p, err := tokens.Verify(ctx, secret)
	if err != nil || p.Subject != "alice" || p.SessionID != iss.Session.ID || p.TokenID != tok.ID {
		t.Fatalf("bound token: %+v %v", p, err)
	}
	// A token cannot mint another (only the session itself can), nor can a service token.
	if _, _, err := tokens.Mint(ctx, identity.MintInput{Caller: p}); !errors.Is(err, identity.ErrMintRefused) {
		t.Fatalf("a token minted a token: %v", err)
	}
	// The session's owner replays the first refresh token (or the thief does): the session is
	// revoked, and so is everything it minted.
	if _, err := ss.Refresh(ctx, iss.RefreshToken, "192.0.2.10", "fp1", nil); !errors.Is(err, identity.ErrRefreshReused) {
		t.Fatalf("replay: %v", err)
	}
	for _, sec := range []string{secret, short} {
		if _, err := tokens.Verify(ctx, sec); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("a token minted by a revoked session still works: %v", err)
		}
	}
	list, err := tokens.List(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("alice's tokens: %d %v", len(list), err)
	}
	for _, l := range list {
		if l.RevokedAt.IsZero() || !strings.Contains(l.RevokedReason, iss.Session.ID) {
			t.Fatalf("listed token not revoked with its session: %+v", l)
		}
	}

	// A session that expires takes its tokens with it, even unrevoked.
	iss2, bob := open("bob")
	sec2, _, err := tokens.Mint(ctx, identity.MintInput{Caller: bob})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(identity.DefaultSessionTTL)
	if _, err := tokens.Verify(ctx, sec2); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("a token outlived its session %s: %v", iss2.Session.ID, err)
	}

	// A fresh, trusted multi-factor authentication lets a person mint a token that outlives the
	// session: recorded High, not bound (so it cannot approve), still the person's.
	iss3, _ := open("carol")
	if err := ss.StepUp(ctx, iss3.Session.ID, []string{"otp"}, true, signInEvent("carol")); err != nil {
		t.Fatal(err)
	}
	carol, err := ss.Verify(ctx, iss3.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(identity.TokenStepUpFresh + time.Second)
	if _, _, err := tokens.Mint(ctx, identity.MintInput{Caller: carol, TTL: 30 * 24 * time.Hour}); !errors.Is(err, identity.ErrStepUpNeeded) {
		t.Fatalf("a stale step-up minted a long-lived token: %v", err)
	}
	if err := ss.StepUp(ctx, iss3.Session.ID, []string{"otp"}, true, signInEvent("carol")); err != nil {
		t.Fatal(err)
	}
	carol, _ = ss.Verify(ctx, iss3.AccessToken)
	long, lt, err := tokens.Mint(ctx, identity.MintInput{Caller: carol, TTL: 30 * 24 * time.Hour})
	if err != nil || lt.SessionBound || lt.StepUpAt.IsZero() {
		t.Fatalf("long-lived token: %+v %v", lt, err)
	}
	if err := ss.Revoke(ctx, iss3.Session.ID, "carol", "logged out"); err != nil {
		t.Fatal(err)
	}
	if p, err := tokens.Verify(ctx, long); err != nil || p.SessionID != "" {
		t.Fatalf("the stepped-up token after logout: %+v %v (it outlives the session but never speaks for it)", p, err)
	}
	if !strings.Contains(string(entryWith(t, s, lt.ID)), `"severity_id":4`) {
		t.Fatal("a token outliving its session was not recorded as High")
	}

	// Service tokens act only for service: subjects, user tokens only for people.
	if _, _, err := tokens.Issue(ctx, "bob", identity.KindService, "", "erin", time.Hour); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("a service token for a person: %v", err)
	}
	if _, _, err := tokens.Issue(ctx, "service:ci", identity.KindUser, "", "erin", time.Hour); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("a user token for a machine: %v", err)
	}
	if _, _, err := tokens.Issue(ctx, "k8s:prod/ml/trainer", identity.KindService, "", "erin", time.Hour); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("a token for a workload: %v", err)
	}
	// One issued before that rule (a row as an older server wrote it) is refused.
	legacy, lt2, err := tokens.Issue(ctx, "service:ci", identity.KindService, "", "erin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SQL().ExecContext(ctx, s.Rebind(`UPDATE tokens SET subject = ? WHERE id = ?`), "bob", lt2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(ctx, legacy); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "service tokens act only for service: subjects") {
		t.Fatalf("a service token acting for a person: %v", err)
	}
	all, err := tokens.List(ctx, "")
	if err != nil || len(all) != 5 {
		t.Fatalf("everyone's tokens: %d %v", len(all), err)
	}
}

// entryWith returns the last ledger entry that mentions needle.
func entryWith(t *testing.T, s *sqlstore.DB, needle string) []byte {
	t.Helper()
	recs, err := s.Entries(context.Background(), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if strings.Contains(string(recs[i].Data), needle) {
			return recs[i].Data
		}
	}
	t.Fatalf("no ledger entry mentions %s", needle)
	return nil
}

// testTokenCap: one person holds at most identity.MaxActiveTokens unrevoked, unexpired API
// tokens (invariant 11); racing mints cannot pass the cap together, a refused one writes
// nothing, revoked and expired tokens make room, and service tokens are not counted.
func testTokenCap(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	clock := clocktest.New(Epoch)
	ts := &identity.Tokens{Store: s, Now: clock.Now}
	before, err := s.LedgerSize(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const racers = identity.MaxActiveTokens + 10
	ids := make(chan string, racers)
	errs := make(chan error, racers)
	var wg sync.WaitGroup
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, tok, err := ts.Issue(ctx, "alice", identity.KindUser, "racing", "alice", time.Hour)
			if err != nil {
				errs <- err
				return
			}
			ids <- tok.ID
		}()
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		if !errors.Is(err, identity.ErrTooManyTokens) || !strings.Contains(err.Error(), "rampart token revoke") {
			t.Fatalf("a refused mint: %v", err)
		}
	}
	var issued []string
	for id := range ids {
		issued = append(issued, id)
	}
	after, _ := s.LedgerSize(ctx)
	if len(issued) != identity.MaxActiveTokens || after-before != int64(identity.MaxActiveTokens) {
		t.Fatalf("%d racing mints: %d issued, %d ledger entries; want %d of each", racers, len(issued), after-before, identity.MaxActiveTokens)
	}
	if _, _, err := ts.Issue(ctx, "service:ci", identity.KindService, "", "erin", time.Hour); err != nil {
		t.Fatalf("a service token is not counted against anyone: %v", err)
	}
	if _, _, err := ts.Issue(ctx, "bob", identity.KindUser, "", "bob", time.Hour); err != nil {
		t.Fatalf("another person's first token: %v", err)
	}
	if err := ts.Revoke(ctx, issued[0], "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.Issue(ctx, "alice", identity.KindUser, "", "alice", 2*time.Hour); err != nil {
		t.Fatalf("after revoking one: %v", err)
	}
	if _, _, err := ts.Issue(ctx, "alice", identity.KindUser, "", "alice", time.Hour); !errors.Is(err, identity.ErrTooManyTokens) {
		t.Fatalf("at the cap again: %v", err)
	}
	clock.Advance(time.Hour) // every racing token has expired; the 2h one has not
	for i := 1; i < identity.MaxActiveTokens; i++ {
		if _, _, err := ts.Issue(ctx, "alice", identity.KindUser, "", "alice", time.Hour); err != nil {
			t.Fatalf("mint %d after the others expired: %v", i, err)
		}
	}
	if _, _, err := ts.Issue(ctx, "alice", identity.KindUser, "", "alice", time.Hour); !errors.Is(err, identity.ErrTooManyTokens) {
		t.Fatalf("at the cap after expiry: %v", err)
	}
}
