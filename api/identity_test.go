package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/server"
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

// demoWith is the demo policy plus extra documents.
func demoWith(t *testing.T, extra map[string]string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range extra {
		m[name] = &fstest.MapFile{Data: []byte(doc)}
	}
	return m
}

// Issue 11, item 5 (invariant 8), through the HTTP API and an egress gateway in the same
// process: before the fix, disabling alice left `check` allowing her grant and her tunnels open,
// and enabling her restored every session, refresh token and API token from before. Now disabling
// ends all of it at once, and enabling lets her sign in again and nothing more.
func TestDisableEndsEverythingEnableRevivesNothing(t *testing.T) {
	port := testenv.TCPEcho(t)
	r := newRigWith(t, false, demoWith(t, map[string]string{"egress-local.yaml": fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: local-echo}
spec:
  subjects: [group:researchers]
  allow: [{host: 127.0.0.1, ports: [%d]}]
`, port)}))
	ctx := context.Background()
	gw := r.in.Gateway(server.GatewayOptions{AllowRanges: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, DecisionLog: io.Discard})
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	gln, err := gw.Listen(gctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.ServeGatewayListener(gctx, gw, gln) }()

	// alice: a session, a token bound to it, a token from before the fix, a grant, a tunnel.
	iss := r.session("alice")
	alice := api.NewClient(r.srv.URL, iss.AccessToken)
	bound, err := alice.CreateToken(ctx, api.CreateTokenBody{TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	old, _, _ := r.in.Tokens.Issue(ctx, "alice", "user", "from before", "alice", 24*time.Hour)
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval", Duration: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"bob", "dave"} {
		if _, err := r.client(u).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
			t.Fatal(err)
		}
	}
	weights := authz.Query{Subject: "alice", Action: "read", Resource: "weights/frontier-7"}
	if d, err := alice.Check(ctx, weights); err != nil || !d.Allowed {
		t.Fatalf("before: %+v %v", d, err)
	}
	tunnel, err := net.Dial("tcp", gln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tunnel.Close()
	target := fmt.Sprintf("127.0.0.1:%d", port)
	fmt.Fprintf(tunnel, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Bearer %s\r\n\r\n", target, target, bound.Token)
	br := bufio.NewReader(tunnel)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("tunnel: %v %v", resp, err)
	}

	// erin disables alice.
	erin := r.client("erin")
	d, err := erin.DisableUser(ctx, "alice", "left the company")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Sessions) != 1 || d.Tokens != 2 || len(d.Grants) != 1 || len(d.Requests) != 0 {
		t.Fatalf("disable ended %+v", d)
	}
	// Her tunnel is closed at once (the gateway revalidates when someone is disabled).
	_ = tunnel.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("the tunnel survived her disabling for 2 s: %v", err)
	}
	// Every credential of hers is refused, and every decision about her denies.
	for _, tok := range []string{iss.AccessToken, bound.Token, old} {
		if _, err := api.NewClient(r.srv.URL, tok).Whoami(ctx); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("a credential of hers after disabling: %v", err)
		}
	}
	if dd, err := erin.Check(ctx, weights); err != nil || dd.Allowed {
		t.Fatalf("check after disabling: %+v %v", dd, err)
	}
	if dd, _ := erin.Check(ctx, authz.Query{Subject: "alice", Action: "read", Resource: "namespaces/research-sandbox"}); dd.Allowed || !strings.Contains(dd.Reason, "disabled") {
		t.Fatalf("her standing binding after disabling: %+v", dd)
	}

	// Enabled again: she may sign in, nothing else comes back.
	if err := erin.UserAction(ctx, "alice", "enable"); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{iss.AccessToken, bound.Token, old} {
		if _, err := api.NewClient(r.srv.URL, tok).Whoami(ctx); !api.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("a credential of hers came back with her: %v", err)
		}
	}
	if _, err := r.in.Sessions.Refresh(ctx, iss.RefreshToken, "127.0.0.1", "", nil); err == nil {
		t.Fatal("her refresh token came back with her")
	}
	if dd, err := erin.Check(ctx, weights); err != nil || dd.Allowed {
		t.Fatalf("her grant came back with her: %+v %v", dd, err)
	}
	if _, err := api.NewClient(r.srv.URL, r.session("alice").AccessToken).Whoami(ctx); err != nil {
		t.Fatalf("enabled, she signs in again: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Issue 11, item 7, at the approval: a step-up with a Rampart factor enrolled in the last day
// (other than under the provider's multi-factor authentication) does not satisfy
// require_step_up; one that counts does. Before the fix any step-up counted.
func TestYoungFactorDoesNotSatisfyStepUp(t *testing.T) {
	pol := demoWith(t, nil)
	a := pol["approvals.yaml"]
	line := []byte("  exclude: [requester, beneficiary, requester_groups, beneficiary_groups]")
	if !bytes.Contains(a.Data, line) {
		t.Fatalf("the demo approvals.yaml no longer has the line %q this test adds require_step_up after", line)
	}
	a.Data = bytes.Replace(a.Data, line, append(line, []byte("\n  require_step_up: 10m")...), 1)
	r := newRigWith(t, false, pol)
	ctx := context.Background()
	c, err := r.client("alice").CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	open := func(user string, trusted bool) *api.Client {
		iss, err := r.in.Sessions.Create(ctx, identity.NewSession{Subject: user, Method: "oidc", AuthTime: time.Now(), MFA: true, TrustedMFA: trusted,
			AMR: []string{"pwd", "otp"}, Event: r.event(user)})
		if err != nil {
			t.Fatal(err)
		}
		return api.NewClient(r.srv.URL, iss.AccessToken)
	}
	_, err = open("bob", false).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{})
	var se *api.ServerError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || se.Code != api.CodeStepUpRequired || !strings.Contains(se.Message, "does not count for approvals yet") {
		t.Fatalf("an approval stepped up with a young factor: %v", err)
	}
	if _, err := open("bob", true).Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); err != nil {
		t.Fatalf("an approval stepped up with a trusted factor: %v", err)
	}
}

// Issue 11, item 8 (invariant 8): the groups a sign-in brought were kept until the next sign-in,
// so a person removed from the admin group at the provider stayed an admin in every long-lived
// token. Sign-in groups now carry rights for groups_max_age (default: the session lifetime)
// unless a new sign-in confirms them.
func TestGroupsFromSignInExpire(t *testing.T) {
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	r := newRigClock(t, false, demoWith(t, nil), now)
	ctx := context.Background()
	// zoe is in no group the policy names; the provider says she is an admin.
	iss, err := r.in.Sessions.Create(ctx, identity.NewSession{Subject: "zoe", Method: "oidc", AuthTime: now(), MFA: true, TrustedMFA: true, IdPMFA: true,
		Groups: []string{"admins"}, Event: r.event("zoe")})
	if err != nil {
		t.Fatal(err)
	}
	zoe := api.NewClient(r.srv.URL, iss.AccessToken)
	tok, err := zoe.CreateToken(ctx, api.CreateTokenBody{TTL: "720h", Description: "automation"})
	if err != nil {
		t.Fatal(err)
	}
	long := api.NewClient(r.srv.URL, tok.Token)
	waitAdmin := func(want bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			_, err := long.Users(ctx)
			if (err == nil) == want {
				return
			}
			if !api.IsStatus(err, http.StatusForbidden) && err != nil {
				t.Fatalf("users: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("zoe's long-lived token an admin: %v, want %v", err == nil, want)
			}
		}
	}
	waitAdmin(true)
	// The provider removes her from the group; Rampart never hears of it until groups_max_age.
	ahead.Store(int64(identity.DefaultSessionTTL + time.Minute))
	waitAdmin(false)
	// A new sign-in that still says admins confirms them again.
	if _, err := r.in.Sessions.Create(ctx, identity.NewSession{Subject: "zoe", Method: "oidc", AuthTime: now(), Groups: []string{"admins"}, Event: r.event("zoe")}); err != nil {
		t.Fatal(err)
	}
	waitAdmin(true)
}
