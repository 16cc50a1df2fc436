package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk/risktest"
	"rampart.dev/rampart/store/sqlstore"
)

func testSignInHistory(t *testing.T, h Harness) {
	risktest.TestHistory(t, func(t *testing.T) risktest.Store { return h.New(t) })
}

// A flow handle is redeemed at most once, even when many redeem it at the same time; expired
// flows and flows of another kind are not found.
func testFlows(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	now := Epoch
	put := func(id, kind string, ttl time.Duration) {
		t.Helper()
		if err := s.PutFlow(ctx, identity.Flow{ID: id, Kind: kind, Data: []byte(`{"v":1}`), CreatedAt: now, ExpiresAt: now.Add(ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "browser", time.Minute)
	if err := s.PutFlow(ctx, identity.Flow{ID: "a", Kind: "browser", Data: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err == nil {
		t.Fatal("a second flow with the same id was stored")
	}
	if _, err := s.TakeFlow(ctx, "a", "device", now); !errors.Is(err, identity.ErrFlowNotFound) {
		t.Fatalf("taking a flow as another kind: %v", err)
	}
	if _, err := s.TakeFlow(ctx, "a", "browser", now.Add(time.Minute)); !errors.Is(err, identity.ErrFlowNotFound) {
		t.Fatalf("taking an expired flow: %v", err)
	}
	if err := s.ReplaceFlowData(ctx, "a", []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	if f, err := s.GetFlow(ctx, "a", "browser", now); err != nil || string(f.Data) != `{"v":2}` || !f.ExpiresAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("get after replace: %+v %v", f, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.TakeFlow(ctx, "a", "browser", now); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, identity.ErrFlowNotFound) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("a flow was taken %d times, want exactly once", wins.Load())
	}
	if err := s.ReplaceFlowData(ctx, "a", []byte(`{}`)); !errors.Is(err, identity.ErrFlowNotFound) {
		t.Fatalf("replacing a taken flow: %v", err)
	}
	put("old", "device", time.Second)
	put("new", "device", time.Hour)
	if n, err := s.DeleteExpiredFlows(ctx, now.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("delete expired: %d %v", n, err)
	}
	if _, err := s.GetFlow(ctx, "new", "device", now); err != nil {
		t.Fatalf("an unexpired flow was deleted: %v", err)
	}
}

// A TOTP step is accepted once: of concurrent uses exactly one wins, older steps lose.
func testMFAFactors(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	if _, err := s.MFAFactor(ctx, "alice"); !errors.Is(err, identity.ErrNoFactor) {
		t.Fatalf("no factor: %v", err)
	}
	f := identity.MFAFactor{Subject: "alice", SecretEnc: "sealed", CreatedAt: Epoch}
	if err := s.PutMFAFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.ConfirmedAt = Epoch.Add(time.Minute)
	if err := s.PutMFAFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	got, err := s.MFAFactor(ctx, "alice")
	if err != nil || got.SecretEnc != "sealed" || !got.ConfirmedAt.Equal(f.ConfirmedAt) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseMFAStep(ctx, "alice", 1000)
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("one TOTP step was accepted %d times", wins.Load())
	}
	if ok, _ := s.UseMFAStep(ctx, "alice", 999); ok {
		t.Fatal("an older step was accepted after a newer one")
	}
	if ok, _ := s.UseMFAStep(ctx, "alice", 1001); !ok {
		t.Fatal("the next step was refused")
	}
	if err := s.DeleteMFAFactor(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MFAFactor(ctx, "alice"); !errors.Is(err, identity.ErrNoFactor) {
		t.Fatalf("after delete: %v", err)
	}
	testMFAAttempts(t, s)
}

// Attempts at one-time codes are counted one by one, racing ones too, within a window that
// begins with the first attempt; a new window begins when it ends; clearing forgets them.
func testMFAAttempts(t *testing.T, s *sqlstore.DB) {
	ctx := context.Background()
	const window = 15 * time.Minute
	seen := make([]bool, 9)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, ends, err := s.AttemptMFA(ctx, "bob", Epoch.Add(time.Second), window)
			if err != nil || !ends.Equal(Epoch.Add(time.Second+window)) || n < 1 || n > 8 {
				t.Errorf("attempt: %d %v %v", n, ends, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[n] {
				t.Errorf("two racing attempts were both counted as attempt %d", n)
			}
			seen[n] = true
		}()
	}
	wg.Wait()
	if n, ends, _ := s.AttemptMFA(ctx, "bob", Epoch.Add(window), window); n != 9 || !ends.Equal(Epoch.Add(time.Second+window)) {
		t.Fatalf("an attempt within the window: %d, ends %v; want 9", n, ends)
	}
	if n, _, _ := s.AttemptMFA(ctx, "carol", Epoch, window); n != 1 {
		t.Fatalf("another person's first attempt: %d", n)
	}
	if n, ends, _ := s.AttemptMFA(ctx, "bob", Epoch.Add(time.Second+window), window); n != 1 || !ends.Equal(Epoch.Add(time.Second+2*window)) {
		t.Fatalf("the first attempt after the window: %d, ends %v", n, ends)
	}
	if err := s.ClearMFAAttempts(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := s.AttemptMFA(ctx, "bob", Epoch.Add(time.Second+window), window); n != 1 {
		t.Fatalf("after clearing: %d", n)
	}
}

// A username is bound to the provider account it first signed in with.
func testSubjectBinding(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	ses := &identity.Sessions{Store: s, Now: func() time.Time { return Epoch }}
	if _, err := ses.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: Epoch, IdPSubject: "https://idp|a-1", Event: signInEvent("alice")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ses.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: Epoch, IdPSubject: "https://idp|a-1", Event: signInEvent("alice")}); err != nil {
		t.Fatalf("the same account again: %v", err)
	}
	_, err := ses.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: Epoch, IdPSubject: "https://idp|someone-else", Event: signInEvent("alice")})
	if !errors.Is(err, identity.ErrSubjectMismatch) {
		t.Fatalf("another account under alice's name: %v", err)
	}
	u, err := s.UserRecord(ctx, "alice")
	if err != nil || u.IdPSubject != "https://idp|a-1" {
		t.Fatalf("binding: %+v %v", u, err)
	}
	if err := ses.SetDisabled(ctx, "alice", "admin", true); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.UserRecord(ctx, "alice"); u.IdPSubject != "https://idp|a-1" || u.DisabledAt.IsZero() {
		t.Fatalf("disabling lost the binding: %+v", u)
	}
}

// Ended sessions and expired tokens are pruned; live ones stay.
func testPruneSessions(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	now := Epoch
	ses := &identity.Sessions{Store: s, Now: func() time.Time { return now }, SessionTTL: time.Hour}
	old, err := ses.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: now, Event: signInEvent("alice")})
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	live, err := ses.Create(ctx, identity.NewSession{Subject: "alice", Method: "oidc", AuthTime: now, Event: signInEvent("alice")})
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneSessions(ctx, now.Add(-time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want the ended session only", n, err)
	}
	list, _ := s.ListSessions(ctx, "alice")
	if len(list) != 1 || list[0].ID != live.Session.ID {
		t.Fatalf("left: %+v (old was %s)", list, old.Session.ID)
	}
	if _, err := ses.Verify(ctx, live.AccessToken); err != nil {
		t.Fatalf("the live session stopped working: %v", err)
	}
}
