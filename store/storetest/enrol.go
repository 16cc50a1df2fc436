package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
)

// testFactorEnrolment: a new factor waits beside the one in use; only the session that started
// it confirms it, in one transaction with its High, notify-marked ledger entry; an
// administrator's allowance is used once (invariant 8, issue 11 item 7), on the real store.
func testFactorEnrolment(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	clock := clocktest.New(Epoch)
	ss := &identity.Sessions{Store: s, Now: clock.Now, CacheTTL: -1}
	until, err := ss.AllowMFAEnrolment(ctx, "frank", "erin")
	if err != nil || !until.Equal(Epoch.Add(identity.MFAEnrolWindow)) {
		t.Fatalf("allow: %v %v", until, err)
	}
	if u, _ := s.UserRecord(ctx, "frank"); !u.MFAEnrolUntil.Equal(until) || u.MFAEnrolBy != "erin" {
		t.Fatalf("allowance not kept: %+v", u)
	}
	old := identity.MFAFactor{Subject: "frank", SecretEnc: "v1.old", CreatedAt: Epoch.Add(-48 * time.Hour), ConfirmedAt: Epoch.Add(-48 * time.Hour), LastStep: 7, EnrolledVia: identity.MFAViaIdP}
	pending := &identity.PendingFactor{SecretEnc: "v1.new", At: Epoch, Via: identity.MFAViaAdmin, SessionID: "ses_a"}
	old.Pending = pending
	if err := s.PutMFAFactor(ctx, old); err != nil {
		t.Fatal(err)
	}
	got, err := s.MFAFactor(ctx, "frank")
	if err != nil || got.SecretEnc != "v1.old" || got.Pending == nil || *got.Pending != *pending || got.EnrolledVia != identity.MFAViaIdP {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if !got.Trusted(Epoch) {
		t.Fatal("a factor enrolled under the provider's MFA two days ago is not trusted")
	}
	if _, err := ss.ConfirmFactor(ctx, "frank", "ses_b", "v1.new", 9); !errors.Is(err, identity.ErrEnrolment) {
		t.Fatalf("confirmed from another session: %v", err)
	}
	if _, err := ss.ConfirmFactor(ctx, "frank", "ses_a", "v1.other", 9); !errors.Is(err, identity.ErrEnrolment) {
		t.Fatalf("confirmed another secret: %v", err)
	}
	clock.Advance(time.Minute)
	f, err := ss.ConfirmFactor(ctx, "frank", "ses_a", "v1.new", 9)
	if err != nil || f.SecretEnc != "v1.new" || f.EnrolledVia != identity.MFAViaAdmin || f.LastStep != 9 || f.Pending != nil {
		t.Fatalf("confirm: %+v %v", f, err)
	}
	if f.Trusted(clock.Now()) || !f.Trusted(clock.Now().Add(identity.FactorTrustAge)) {
		t.Fatal("a factor enrolled under an allowance must count for approvals after a day, not before")
	}
	if u, _ := s.UserRecord(ctx, "frank"); !u.MFAEnrolUntil.IsZero() {
		t.Fatalf("the allowance was not used up: %+v", u)
	}
	e := string(entryWith(t, s, `"event_code":"mfa.replaced"`))
	if !strings.Contains(e, `"severity_id":4`) || !strings.Contains(e, `"notify":{"subject":"frank"`) {
		t.Fatalf("the replacement entry: %s", e)
	}
	// An enrolment relying on an allowance that is gone is refused.
	f.Pending = &identity.PendingFactor{SecretEnc: "v1.third", At: clock.Now(), Via: identity.MFAViaAdmin, SessionID: "ses_a"}
	if err := s.PutMFAFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.ConfirmFactor(ctx, "frank", "ses_a", "v1.third", 10); !errors.Is(err, identity.ErrEnrolment) {
		t.Fatalf("an allowance used twice: %v", err)
	}
	// And one left waiting too long lapses.
	f.Pending.Via = identity.MFAViaFactor
	if err := s.PutMFAFactor(ctx, f); err != nil {
		t.Fatal(err)
	}
	clock.Advance(identity.MFAPendingTTL + time.Second)
	if _, err := ss.ConfirmFactor(ctx, "frank", "ses_a", "v1.third", 10); !errors.Is(err, identity.ErrEnrolment) {
		t.Fatalf("a lapsed enrolment: %v", err)
	}

	// Issue 15: frank is told of each change to his factor, through the outbox written with the
	// entry (refused enrolments wrote nothing): the allowance, the replacement, and a reset.
	if err := ss.ResetMFA(ctx, "frank", "erin"); err != nil {
		t.Fatal(err)
	}
	ns, err := s.ListNotifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, n := range ns {
		if n.Kind != access.NotifyAccount || len(n.Recipients) != 1 || n.Recipients[0] != "frank" || n.Message == "" {
			t.Fatalf("account notification %+v", n)
		}
		events = append(events, n.Event)
	}
	if strings.Join(events, " ") != "mfa.enrol_allowed mfa.replaced mfa.reset" {
		t.Fatalf("frank was told of %v, want the allowance, the replacement and the reset", events)
	}
}
