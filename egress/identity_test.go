package egress_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
)

// Issue 11, item 5 (invariant 8): the gateway's revalidation of open tunnels re-checked only
// rules and grants, so a tunnel opened under a policy (no grant) outlived the revocation of its
// token, its token's expiry and its person's disabling. Each now closes it at the next
// revalidation.
func TestRevalidationRechecksIdentity(t *testing.T) {
	echo := newEcho(t)
	target := "127.0.0.1:" + strconv.Itoa(echo.port())
	pol := parsePolicy(t, "", egressPolicy("research", "group:researchers", "enforce", []string{"127.0.0.1"}, echo.port(), ""))
	r := newRig(t, pol, rigOptions{allow: []string{"127.0.0.1/32"}})
	ctx := context.Background()

	// A revoked token.
	secret, tok, err := r.tokens.Issue(ctx, "alice", identity.KindUser, "laptop", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	status, _, c := r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice: %d", status)
	}
	roundTrip(t, c, "before")
	if err := r.tokens.Revoke(ctx, tok.ID, "alice", "lost"); err != nil {
		t.Fatal(err)
	}
	r.gw.Revalidate()
	waitClosed(t, c)
	// The line is written after the connections close: wait for it.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(r.dlog.String(), "no longer holds"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the decision log does not say why the tunnel closed:\n%s", r.dlog.String())
		}
		r.gw.FlushDecisions()
	}

	// An expired token, by the gateway's clock.
	secret, _, _ = r.tokens.Issue(ctx, "alice", identity.KindUser, "short", "alice", time.Minute)
	status, _, c = r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice again: %d", status)
	}
	roundTrip(t, c, "still")
	r.clock.Advance(2 * time.Minute)
	r.gw.Revalidate()
	waitClosed(t, c)

	// A disabled person, whatever their credential: the decision index knows.
	secret, _, _ = r.tokens.Issue(ctx, "alice", identity.KindUser, "third", "alice", time.Hour)
	status, _, c = r.connect(target, secret)
	if status != 200 {
		t.Fatalf("alice a third time: %d", status)
	}
	roundTrip(t, c, "third")
	r.ix.SetDisabled("alice", true)
	r.gw.Revalidate()
	waitClosed(t, c)
	if status, body, _ := r.connect(target, secret); status != 403 || !strings.Contains(body, "disabled") {
		t.Fatalf("a disabled person connected: %d %q", status, body)
	}
}
