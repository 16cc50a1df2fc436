package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/server"
)

// rig is a real control plane (SQLite, demo policy, dev login) behind an HTTP test server.
type rig struct {
	t   *testing.T
	in  *server.Instance
	srv *httptest.Server
}

func newRig(t *testing.T, dev bool) *rig {
	return newRigWith(t, dev, demo.Policy())
}

// newRigWith is newRig with another policy.
func newRigWith(t *testing.T, dev bool, pol fs.FS) *rig {
	return newRigClock(t, dev, pol, nil)
}

// newRigClock is newRigWith with the server's clock.
func newRigClock(t *testing.T, dev bool, pol fs.FS, now func() time.Time) *rig {
	t.Helper()
	cfg := server.Config{DataDir: t.TempDir(), PolicyFS: pol, Dev: dev, Store: server.StoreConfig{Driver: "sqlite"}}
	in, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.DiscardHandler), Now: now, SyncInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(func() { srv.Close(); in.Close() })
	return &rig{t: t, in: in, srv: srv}
}

// client signs user in: a session of their own, as a sign-in through the identity provider
// would open (approvals need one).
func (r *rig) client(user string) *api.Client {
	r.t.Helper()
	return api.NewClient(r.srv.URL, r.session(user).AccessToken)
}

func (r *rig) session(user string) identity.Issued {
	r.t.Helper()
	iss, err := r.in.Sessions.Create(context.Background(), identity.NewSession{Subject: user, Method: "test", AuthTime: time.Now(), Event: r.event(user)})
	if err != nil {
		r.t.Fatal(err)
	}
	return iss
}

func (r *rig) event(user string) audit.Event {
	return audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
		Time: time.Now(), Actor: user, User: user, Message: user + " signed in (test)"}
}

// raw sends a request and returns status and decoded body.
func (r *rig) raw(method, path, token, contentType string, body []byte) (int, map[string]any) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.srv.URL+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func errMsg(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

func (r *rig) ledgerSize() uint64 {
	r.t.Helper()
	if err := r.in.Ledger.Sync(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return r.in.Ledger.Size()
}

func TestWalkthroughOverHTTP(t *testing.T) {
	r := newRig(t, true)
	ctx := context.Background()
	alice := api.NewClient(r.srv.URL, "")
	tok, err := alice.DevLogin(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	alice.Token = tok.Token
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval run 4411", Duration: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	id := c.Request.ID
	for _, u := range []string{"bob", "dave"} {
		if _, err := r.client(u).Review(ctx, id, access.Approve, api.ReviewBody{}); err != nil {
			t.Fatalf("%s approves: %v", u, err)
		}
	}
	d, err := alice.Check(ctx, authz.Query{Subject: "alice", Action: "read", Resource: "weights/frontier-7"})
	if err != nil || !d.Allowed || d.GrantID == "" {
		t.Fatalf("check: %+v %v", d, err)
	}
	v, err := alice.GetRequest(ctx, id)
	if err != nil || v.Request.State != access.Approved || v.Grant == nil || v.Request.Duration != 2*time.Hour {
		t.Fatalf("view: %+v %v", v, err)
	}
	// A non-auditor verifies checkpoints and consistency; an auditor re-hashes every entry.
	rep, err := api.VerifyLedger(ctx, alice, "", nil, api.VerifyOptions{})
	if err != nil || rep.Full {
		t.Fatalf("alice verify: %+v %v", rep, err)
	}
	rep2, err := api.VerifyLedger(ctx, r.client("erin"), rep.Key, rep.Signed, api.VerifyOptions{})
	if err != nil || !rep2.Full || rep2.Previous == nil {
		t.Fatalf("erin verify: %+v %v", rep2, err)
	}
}

func TestDevLoginOnlyInDevMode(t *testing.T) {
	r := newRig(t, false)
	status, _ := r.raw("POST", "/v1/dev/login", "", "application/json", []byte(`{"user":"alice"}`))
	if status != http.StatusNotFound {
		t.Fatalf("dev login outside dev mode answered %d", status)
	}
	d := newRig(t, true)
	status, m := d.raw("POST", "/v1/dev/login", "", "application/json", []byte(`{"user":"mallory"}`))
	if status != http.StatusBadRequest || !strings.Contains(errMsg(m), "not a user of the loaded policy") {
		t.Fatalf("dev login for a stranger: %d %v", status, m)
	}
	// "rampart" is the ledger's name for the system itself (audit.SystemActor): nobody signs in
	// as it, whatever the policy says.
	before := d.ledgerSize()
	status, m = d.raw("POST", "/v1/dev/login", "", "application/json", []byte(`{"user":"rampart"}`))
	if status != http.StatusBadRequest || !strings.Contains(errMsg(m), `"rampart" is reserved`) {
		t.Fatalf("dev login as the system actor: %d %v", status, m)
	}
	if d.ledgerSize() != before {
		t.Fatal("a refused dev login wrote to the ledger")
	}
}

func TestAuthentication(t *testing.T) {
	r := newRig(t, false)
	for _, tok := range []string{"", "nonsense", "rpt_unknown", "rpt_" + strings.Repeat("a", 500)} {
		status, m := r.raw("GET", "/v1/whoami", tok, "", nil)
		if status != http.StatusUnauthorized || errMsg(m) == "" {
			t.Fatalf("token %.20q: %d %v", tok, status, m)
		}
	}
	// A revoked token is refused on the very next call.
	secret, tk, _ := r.in.Tokens.Issue(context.Background(), "alice", "user", "", "alice", time.Hour)
	if status, _ := r.raw("GET", "/v1/whoami", secret, "", nil); status != 200 {
		t.Fatalf("fresh token: %d", status)
	}
	if err := r.in.Tokens.Revoke(context.Background(), tk.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if status, m := r.raw("GET", "/v1/whoami", secret, "", nil); status != http.StatusUnauthorized || !strings.Contains(errMsg(m), "revoked") {
		t.Fatalf("revoked token: %d %v", status, m)
	}
}

// Invariant 7: hostile input is refused with a precise 4xx and changes nothing.
func TestHostileInput(t *testing.T) {
	r := newRig(t, false)
	secret := r.client("alice").Token
	cases := []struct {
		name, method, path, ctype string
		body                      []byte
		status                    int
		want                      string
	}{
		{"oversized", "POST", "/v1/requests", "application/json", append([]byte(`{"role":"weights-reader-frontier-7","reason":"`), append(bytes.Repeat([]byte("a"), 2<<20), []byte(`"}`)...)...), 413, "byte limit"},
		{"bad JSON", "POST", "/v1/requests", "application/json", []byte(`{"role":`), 400, "not valid JSON"},
		{"empty body", "POST", "/v1/requests", "application/json", nil, 400, "empty"},
		{"unknown field", "POST", "/v1/requests", "application/json", []byte(`{"role":"weights-reader-frontier-7","reason":"x","grant_now":true}`), 400, `unknown field "grant_now"`},
		{"wrong type", "POST", "/v1/requests", "application/json", []byte(`{"role":7,"reason":"x"}`), 400, `field "role" must be string`},
		{"two values", "POST", "/v1/requests", "application/json", []byte(`{"role":"a","reason":"x"}{"role":"b"}`), 400, "after the JSON value"},
		{"form post", "POST", "/v1/requests", "application/x-www-form-urlencoded", []byte(`role=x`), 415, "application/json"},
		{"bad duration", "POST", "/v1/requests", "application/json", []byte(`{"role":"weights-reader-frontier-7","reason":"x","duration":"forever"}`), 400, "not a positive duration"},
		{"negative duration", "POST", "/v1/requests", "application/json", []byte(`{"role":"weights-reader-frontier-7","reason":"x","duration":"-1h"}`), 400, "not a positive duration"},
		{"path trick beneficiary", "POST", "/v1/requests", "application/json", []byte(`{"role":"weights-reader-frontier-7","reason":"x","beneficiary":"../../etc/passwd"}`), 400, "beneficiary"},
		{"path trick check", "POST", "/v1/check", "application/json", []byte(`{"subject":"alice","action":"read","resource":"weights/frontier-7/../../secrets"}`), 400, `".." segment`},
		{"encoded dots", "POST", "/v1/check", "application/json", []byte(`{"subject":"alice","action":"read","resource":"weights/%2e%2e/x"}`), 400, "resource"},
		{"wildcard action", "POST", "/v1/check", "application/json", []byte(`{"subject":"alice","action":"*","resource":"weights/frontier-7"}`), 400, "one action"},
		{"huge batch", "POST", "/v1/check/batch", "application/json", []byte(`{"checks":[]}`), 400, "1 to 1000"},
		{"bad limit", "GET", "/v1/requests?limit=100000", "", nil, 400, "limit"},
		{"bad page token", "GET", "/v1/requests?page_token=bm9wZQ", "", nil, 400, "page_token"},
		{"bad state", "GET", "/v1/requests?state=hacked", "", nil, 400, "unknown state"},
		{"bad scope", "GET", "/v1/requests?scope=everything", "", nil, 400, "unknown scope"},
		{"no route", "GET", "/v1/../../etc/passwd", "", nil, 404, ""},
		{"control chars", "POST", "/v1/requests", "application/json", []byte(`{"role":"weights-reader-frontier-7","reason":"a\u001b[31mb"}`), 400, "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := r.ledgerSize()
			status, m := r.raw(c.method, c.path, secret, c.ctype, c.body)
			if c.name == "no route" {
				// The client cleans the path; the server must simply not serve anything else.
				if status == 200 {
					t.Fatalf("served %v", m)
				}
				return
			}
			if status != c.status || !strings.Contains(errMsg(m), c.want) {
				t.Fatalf("got %d %q, want %d containing %q", status, errMsg(m), c.status, c.want)
			}
			if code, _ := m["error"].(map[string]any)["code"].(string); code == "" {
				t.Fatalf("no error code in %v", m)
			}
			if after := r.ledgerSize(); after != before {
				t.Fatalf("hostile input changed the ledger (%d → %d)", before, after)
			}
		})
	}
	rs, _ := r.in.Store.ListRequests(context.Background(), access.RequestFilter{})
	if len(rs) != 0 {
		t.Fatalf("hostile input created %d requests", len(rs))
	}
}

func TestAPIAuthorization(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice, bob, erin := r.client("alice"), r.client("bob"), r.client("erin")
	// Checking someone else needs admin, auditor or a service token.
	q := authz.Query{Subject: "bob", Action: "read", Resource: "weights/frontier-7"}
	if _, err := alice.Check(ctx, q); !api.IsStatus(err, 403) {
		t.Fatalf("alice checked bob: %v", err)
	}
	if _, err := erin.Check(ctx, q); err != nil {
		t.Fatalf("auditor check: %v", err)
	}
	svcSecret, _, _ := r.in.Tokens.Issue(ctx, "service:admission", "service", "", "erin", time.Hour)
	if _, err := api.NewClient(r.srv.URL, svcSecret).Check(ctx, q); err != nil {
		t.Fatalf("service check: %v", err)
	}
	// Ledger entries: admins and auditors only.
	if err := alice.Entries(ctx, 0, 10, func(uint64, []byte) error { return nil }); !api.IsStatus(err, 403) {
		t.Fatalf("alice read entries: %v", err)
	}
	if err := erin.Entries(ctx, 0, 10, func(uint64, []byte) error { return nil }); err != nil {
		t.Fatalf("auditor read entries: %v", err)
	}
	// Only eligible approvers review; outsiders cannot even see the request.
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.client("mallory").GetRequest(ctx, c.Request.ID); !api.IsStatus(err, 404) {
		t.Fatalf("outsider saw the request: %v", err)
	}
	if _, err := alice.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{}); !api.IsStatus(err, 403) {
		t.Fatalf("self approval: %v", err)
	}
	if _, err := bob.GetRequest(ctx, c.Request.ID); err != nil {
		t.Fatalf("approver cannot see the request: %v", err)
	}
	// Tokens: users may only issue their own user tokens.
	if _, err := alice.CreateToken(ctx, api.CreateTokenBody{Subject: "bob"}); !api.IsStatus(err, 403) {
		t.Fatalf("alice issued bob a token: %v", err)
	}
	if _, err := alice.CreateToken(ctx, api.CreateTokenBody{Kind: "service"}); !api.IsStatus(err, 403) {
		t.Fatalf("alice issued a service token: %v", err)
	}
	if _, err := erin.CreateToken(ctx, api.CreateTokenBody{Subject: "service:ci", Kind: "service", TTL: "1h"}); err != nil {
		t.Fatalf("admin issue: %v", err)
	}
}

// Invariant 6 over HTTP: with the store gone, changes answer 503 and checks fail closed.
func TestStoreOutageOverHTTP(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	r.in.Store.Close()
	if _, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "x"}); !api.IsStatus(err, 503) {
		t.Fatalf("create during outage: %v", err)
	}
	status, m := r.raw("GET", "/readyz", "", "", nil)
	if status != 503 || !strings.Contains(m["reason"].(string), "store") {
		t.Fatalf("readyz during outage: %d %v", status, m)
	}
}

func TestCheckFailsClosedWhenIndexStale(t *testing.T) {
	cfg := server.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Store: server.StoreConfig{Driver: "sqlite"}}
	now := time.Now()
	clock := func() time.Time { return now }
	in, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.DiscardHandler), Now: clock, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	defer func() { srv.Close(); in.Close() }()
	secret, _, _ := in.Tokens.Issue(context.Background(), "alice", "user", "", "alice", 24*time.Hour)
	c := api.NewClient(srv.URL, secret)
	q := authz.Query{Subject: "alice", Action: "read", Resource: "namespaces/research-sandbox"}
	if d, err := c.Check(context.Background(), q); err != nil || !d.Allowed {
		t.Fatalf("fresh: %+v %v", d, err)
	}
	now = now.Add(time.Minute) // no sync has happened for a minute
	_, err = c.Check(context.Background(), q)
	if !api.IsStatus(err, 503) || !strings.Contains(err.Error(), "failing closed") {
		t.Fatalf("stale index: %v", err)
	}
}

func FuzzDecodeCreateRequest(f *testing.F) {
	for _, s := range []string{`{"role":"r","reason":"x"}`, `{"role":"r","reason":"x","duration":"2h","break_glass":true}`, `{`, `[]`, `{"role":null}`, `{"role":"a"}{}`, `"x"`, `{"resources":["a/b","c"],"action":"read","reason":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var b api.CreateRequestBody
		err := api.DecodeJSON(bytes.NewReader(body), &b)
		if err == nil {
			// Anything accepted must round-trip through the same strict decoder.
			out, _ := json.Marshal(b)
			var b2 api.CreateRequestBody
			if err := api.DecodeJSON(bytes.NewReader(out), &b2); err != nil || !reflect.DeepEqual(b2, b) {
				t.Fatalf("accepted %q but its re-encoding %q gives %v %+v", body, out, err, b2)
			}
			return
		}
		var e *api.Error
		if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 || e.Message == "" {
			t.Fatalf("bad input %q gave %v, want a 4xx with a message", body, err)
		}
	})
}

func TestReviewQueuePagesEnd(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	for i := 0; i < 3; i++ {
		if _, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	bob := r.client("bob")
	seen := map[string]bool{}
	q := "/v1/requests?scope=review&limit=1"
	for page := 0; page < 10; page++ {
		status, m := r.raw("GET", q, bob.Token, "", nil)
		if status != 200 {
			t.Fatalf("page %d: %d %v", page, status, m)
		}
		for _, it := range m["requests"].([]any) {
			id := it.(map[string]any)["id"].(string)
			if seen[id] {
				t.Fatalf("request %s returned twice", id)
			}
			seen[id] = true
		}
		next, _ := m["next_page_token"].(string)
		if next == "" {
			if len(seen) != 3 {
				t.Fatalf("saw %d requests, want 3", len(seen))
			}
			return
		}
		q = "/v1/requests?scope=review&limit=1&page_token=" + next
	}
	t.Fatal("review pages never end")
}

// Write routes do not reveal requests and grants the caller cannot see.
func TestWritesDoNotRevealExistence(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	c, err := r.client("alice").CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "x"})
	if err != nil {
		t.Fatal(err)
	}
	mallory := r.client("mallory")
	for name, call := range map[string]func() error{
		"approve": func() error {
			_, err := mallory.Review(ctx, c.Request.ID, access.Approve, api.ReviewBody{})
			return err
		},
		"cancel": func() error { _, err := mallory.Cancel(ctx, c.Request.ID); return err },
	} {
		if err := call(); !api.IsStatus(err, 404) {
			t.Errorf("%s by an outsider: %v, want 404", name, err)
		}
	}
	if _, err := r.client("alice").Explain(ctx, "bob", "", "weights-reader-frontier-7"); !api.IsStatus(err, 403) {
		t.Fatalf("alice explained bob's access: %v", err)
	}
	if _, err := r.client("erin").Explain(ctx, "bob", "", "weights-reader-frontier-7"); err != nil {
		t.Fatalf("auditor explain: %v", err)
	}
	// A request for someone else: explained to whoever may file it, and to admins and
	// auditors; to others it would show the beneficiary's groups.
	if _, err := r.client("alice").Explain(ctx, "alice", "bob", "weights-reader-frontier-7"); !api.IsStatus(err, 403) || !strings.Contains(err.Error(), "request_for") {
		t.Fatalf("alice explained a request for bob: %v", err)
	}
	if e, err := r.client("alice").Explain(ctx, "alice", "k8s:dev/research/evaluator", "weights-reader-frontier-7"); err != nil || !e.MayFile || !e.Satisfiable || e.Beneficiary != "k8s:dev/research/evaluator" {
		t.Fatalf("alice explains a request for her workload: %+v %v", e, err)
	}
	if e, err := r.client("erin").Explain(ctx, "alice", "bob", "weights-reader-frontier-7"); err != nil || e.MayFile || e.Satisfiable {
		t.Fatalf("the auditor explains alice's request for bob: %+v %v", e, err)
	}
	// The workflow agrees: filing it is refused with the same reason.
	if _, err := r.client("alice").CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Beneficiary: "bob", Reason: "pairing"}); !api.IsStatus(err, 403) ||
		!strings.Contains(err.Error(), `no request_for rule of approval policy "critical-weights" lets alice file for bob`) {
		t.Fatalf("alice files for bob: %v", err)
	}
}

func TestCheckpointGetDoesNotWrite(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	before, err := alice.LatestCheckpoint(ctx)
	if err != nil && !api.IsStatus(err, 404) {
		t.Fatal(err)
	}
	if _, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	again, _ := alice.LatestCheckpoint(ctx)
	if again.Size != before.Size {
		t.Fatalf("GET issued a checkpoint (%d → %d)", before.Size, again.Size)
	}
	issued, err := alice.Checkpoint(ctx)
	if err != nil || issued.Size != uint64(r.ledgerSize()) {
		t.Fatalf("POST: %+v %v (ledger %d)", issued, err, r.ledgerSize())
	}
	latest, err := alice.LatestCheckpoint(ctx)
	if err != nil || latest.Size != issued.Size {
		t.Fatalf("GET after POST: %+v %v", latest, err)
	}
}

func TestStrictRouting(t *testing.T) {
	r := newRig(t, false)
	tok := r.client("alice").Token
	status, m := r.raw("DELETE", "/v1/requests", tok, "", nil)
	if status != http.StatusMethodNotAllowed || !strings.Contains(errMsg(m), "use GET or POST") {
		t.Fatalf("DELETE /v1/requests: %d %v", status, m)
	}
	// Field names are case-sensitive, like additionalProperties: false says.
	status, m = r.raw("POST", "/v1/requests", tok, "application/json", []byte(`{"ROLE":"weights-reader-frontier-7","reason":"x"}`))
	if status != 400 || !strings.Contains(errMsg(m), `"ROLE"`) {
		t.Fatalf("upper-case field: %d %v", status, m)
	}
	status, m = r.raw("POST", "/v1/check/batch", tok, "application/json", []byte(`{"checks":[{"Subject":"alice","action":"read","resource":"weights/frontier-7"}]}`))
	if status != 400 || !strings.Contains(errMsg(m), "checks[0]") {
		t.Fatalf("nested upper-case field: %d %v", status, m)
	}
	if status, m = r.raw("GET", "/v1/grants?page_token=x%27%20OR%201=1", tok, "", nil); status != 400 {
		t.Fatalf("grant page token: %d %v", status, m)
	}
}

func TestBatchFailsClosedWithError(t *testing.T) {
	cfg := server.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Store: server.StoreConfig{Driver: "sqlite"}}
	now := time.Now()
	in, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	defer func() { srv.Close(); in.Close() }()
	secret, _, _ := in.Tokens.Issue(context.Background(), "alice", "user", "", "alice", 24*time.Hour)
	now = now.Add(time.Minute)
	_, err = api.NewClient(srv.URL, secret).CheckBatch(context.Background(), []authz.Query{{Subject: "alice", Action: "read", Resource: "namespaces/research-sandbox"}})
	var se *api.ServerError
	if !errors.As(err, &se) || se.Status != 503 || se.Code != "unavailable" || !strings.Contains(se.Message, "failing closed") {
		t.Fatalf("stale batch: %v", err)
	}
}

func TestSearchSuggestAndRequestByResource(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	status, m := r.raw("GET", "/v1/resources?q=fronteir+weights&limit=2", alice.Token, "", nil)
	if status != 200 {
		t.Fatalf("search: %d %v", status, m)
	}
	first := m["resources"].([]any)[0].(map[string]any)
	if first["name"] != "weights/frontier-7" || first["score"].(float64) <= 0 {
		t.Fatalf("search result %v", first)
	}
	if status, _ := r.raw("GET", "/v1/resources?q=", alice.Token, "", nil); status != 400 {
		t.Fatalf("empty search: %d", status)
	}
	adv, err := alice.Suggest(ctx, api.SuggestBody{Intent: "I need to run evals on the frontier-7 checkpoint"})
	if err != nil || adv.Role.Role != "weights-reader-frontier-7" || adv.Source != "deterministic" || adv.Intent == nil {
		t.Fatalf("suggest: %+v %v", adv, err)
	}
	// Deleting versions is a role of its own (a writer may not delete).
	if adv, err := alice.Suggest(ctx, api.SuggestBody{Resource: "weights/frontier-7", Actions: []string{"delete"}}); err != nil || adv.Role.Role != "weights-deleter-frontier-7" {
		t.Fatalf("suggest delete: %+v %v", adv, err)
	}
	_, err = alice.Suggest(ctx, api.SuggestBody{Resource: "weights/frontier-7", Actions: []string{"exec"}})
	var se *api.ServerError
	if !errors.As(err, &se) || se.Status != 422 || se.Code != "no_candidate" || !strings.Contains(se.Message, "weights-owners (bob, carol)") {
		t.Fatalf("no candidate: %v", err)
	}
	// A resource not in the catalogue is not found, with the closest name.
	_, err = alice.Suggest(ctx, api.SuggestBody{Resource: "weights/frontier-77", Actions: []string{"read"}})
	if !errors.As(err, &se) || se.Status != 404 || se.Code != "not_found" || !strings.Contains(se.Message, `did you mean "weights/frontier-7"`) {
		t.Fatalf("unknown resource: %v", err)
	}
	// An intent answers with its status and the roles to request.
	if adv, err := alice.Suggest(ctx, api.SuggestBody{Intent: "read the frontier-7 weights"}); err != nil || adv.Status != "suggested" || len(adv.Roles) != 1 || adv.Roles[0] != "weights-reader-frontier-7" {
		t.Fatalf("status and roles: %+v %v", adv, err)
	}
	// A model that is not in the catalogue is an answer (200) that suggests nothing and says why.
	status, m = r.raw("POST", "/v1/suggest", alice.Token, "application/json", []byte(`{"intent":"read the zephyr-9 weights"}`))
	if roles, _ := m["roles"].([]any); status != 200 || m["status"] != "not_understood" || roles == nil || len(roles) != 0 || m["role"].(map[string]any)["role"] != "" ||
		m["candidates"] == nil || !strings.Contains(fmt.Sprint(m["unknown"]), "zephyr") || m["message"] == "" {
		t.Fatalf("not understood: %d %v", status, m)
	}
	before := r.ledgerSize()
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Resource: "weights/frontier-7", Action: "read", Reason: "eval run 4411"})
	if err != nil || c.Request.Role != "weights-reader-frontier-7" || c.Suggestion == nil || c.Suggestion.Role.Role != c.Request.Role {
		t.Fatalf("request by resource: %+v %v", c, err)
	}
	if r.ledgerSize() != before+1 {
		t.Fatal("request by resource did not record exactly one entry")
	}
	if _, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Resource: "weights/frontier-7", Action: "read", Reason: "x"}); !api.IsStatus(err, 400) {
		t.Fatalf("role and resource together: %v", err)
	}
}

// An action on several resources files one request per distinct suggested role, and only when
// every resource has one: a resource without a role, or not in the catalogue, files nothing.
func TestRequestSetByResources(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	before := r.ledgerSize()
	mine := func() int {
		rs, err := alice.ListRequests(ctx, "mine", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(rs)
	}
	// Refused before anything is suggested or filed.
	for _, c := range []struct {
		b    api.CreateRequestBody
		want string
	}{
		{api.CreateRequestBody{Resources: []string{"weights/frontier-7"}, Reason: "x"}, `field "resources" needs field "action"`},
		{api.CreateRequestBody{Resources: []string{"weights/frontier-7"}, Role: "weights-reader-frontier-7", Action: "read", Reason: "x"}, "not several of these"},
		{api.CreateRequestBody{Resources: []string{"weights/frontier-7"}, Resource: "datasets/eval-suite-v3", Action: "read", Reason: "x"}, "not several of these"},
		{api.CreateRequestBody{Resources: []string{"weights/frontier-7", "weights/frontier-7"}, Action: "read", Reason: "x"}, `field "resources[1]": weights/frontier-7 is listed twice`},
		{api.CreateRequestBody{Resources: []string{"weights/frontier-7"}, Action: "read", Reason: "x", BreakGlass: true}, "break-glass takes one role at a time"},
		{api.CreateRequestBody{Resources: []string{"Weights/X"}, Action: "read", Reason: "x"}, `field "resources[0]"`},
	} {
		_, err := alice.CreateRequests(ctx, c.b)
		var se *api.ServerError
		if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, c.want) {
			t.Errorf("%+v: %v, want 400 %q", c.b, err, c.want)
		}
	}
	// The second resource has no role for delete; the first has one, and is not filed either.
	_, err := alice.CreateRequests(ctx, api.CreateRequestBody{Resources: []string{"weights/frontier-7", "datasets/eval-suite-v3"}, Action: "delete", Reason: "x"})
	var se *api.ServerError
	if !errors.As(err, &se) || se.Status != 422 || se.Code != "no_candidate" || !strings.Contains(se.Message, "resources[1] datasets/eval-suite-v3: no requestable role grants delete") || !strings.Contains(se.Message, "nothing was requested") {
		t.Fatalf("a resource without a role: %v", err)
	}
	_, err = alice.CreateRequests(ctx, api.CreateRequestBody{Resources: []string{"weights/frontier-7", "weights/frontier-77"}, Action: "read", Reason: "x"})
	if !errors.As(err, &se) || se.Status != 404 || se.Code != "not_found" || !strings.Contains(se.Message, "resources[1] weights/frontier-77:") {
		t.Fatalf("a resource not in the catalogue: %v", err)
	}
	if n := mine(); n != 0 || r.ledgerSize() != before {
		t.Fatalf("refused sets filed %d requests, wrote %d ledger entries", n, r.ledgerSize()-before)
	}
	// Filing fails part way: 12h is within the dataset's policy (24h) but not the weights' (8h).
	// The dataset's request, filed first, is cancelled, and the error says so.
	_, err = alice.CreateRequests(ctx, api.CreateRequestBody{Resources: []string{"datasets/eval-suite-v3", "weights/frontier-7"}, Action: "read", Reason: "x", Duration: "12h"})
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, "requesting weights-reader-frontier-7 (for weights/frontier-7): duration") || !strings.Contains(se.Message, "were cancelled") {
		t.Fatalf("a set failing part way: %v", err)
	}
	pending, err := alice.ListRequests(ctx, "mine", []string{"pending"}, 0)
	if err != nil || len(pending) != 0 {
		t.Fatalf("a set failing part way left %d pending requests: %+v %v", len(pending), pending, err)
	}
	if r.ledgerSize() != before+2 { // the dataset's request, and its cancellation
		t.Fatalf("a set failing part way wrote %d ledger entries; want 2 (filed, cancelled)", r.ledgerSize()-before)
	}
	before = r.ledgerSize()

	out, err := alice.CreateRequests(ctx, api.CreateRequestBody{Resources: []string{"weights/frontier-7", "datasets/eval-suite-v3"}, Action: "read", Reason: "eval run 4412", Duration: "2h"})
	if err != nil || len(out.Requests) != 2 {
		t.Fatalf("request set: %+v %v", out, err)
	}
	for i, want := range []struct{ role, res string }{{"weights-reader-frontier-7", "weights/frontier-7"}, {"dataset-reader-eval-suite-v3", "datasets/eval-suite-v3"}} {
		c := out.Requests[i]
		if c.Request.Role != want.role || c.Request.Reason != "eval run 4412" || c.Request.Duration != 2*time.Hour || c.Suggestion == nil || c.Suggestion.Role.Role != want.role || len(c.Resources) != 1 || c.Resources[0] != want.res {
			t.Errorf("request %d: %+v", i, c)
		}
	}
	if n := mine(); n != 3 || r.ledgerSize() != before+2 {
		t.Fatalf("request set: %d requests of alice's (the cancelled one and two new), %d new ledger entries; want 3 and 2", n, r.ledgerSize()-before)
	}
	// The raw answer is {"requests": [...]}.
	status, m := r.raw("POST", "/v1/requests", alice.Token, "application/json", []byte(`{"resources":["weights/frontier-7"],"action":"write","reason":"x"}`))
	if rs, _ := m["requests"].([]any); status != 201 || len(rs) != 1 {
		t.Fatalf("raw answer: %d %v", status, m)
	}
}

// fakeChatCompletions is a FAKE Chat Completions endpoint that always answers with one role.
type fakeChatCompletions struct{ role string }

func (f fakeChatCompletions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	content, _ := json.Marshal(map[string]string{"role": f.role, "reason": "admins can do everything"})
	_ = json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"message": map[string]any{"role": "assistant", "content": string(content)}}}})
}

// A configured model whose answer does not verify changes nothing: the least privileged role is
// requested and the refusal is reported.
func TestModelFromConfigIsVerified(t *testing.T) {
	fake := httptest.NewServer(fakeChatCompletions{role: "weights-reader-frontier-7-broad"})
	defer fake.Close()
	cfg := server.Config{DataDir: t.TempDir(), PolicyFS: demo.Policy(), Store: server.StoreConfig{Driver: "sqlite"},
		Suggest: server.SuggestConfig{Model: server.ModelConfig{URL: fake.URL + "/v1/chat/completions", Model: "fake"}}}
	in, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	defer func() { srv.Close(); in.Close() }()
	secret, _, _ := in.Tokens.Issue(context.Background(), "alice", "user", "", "alice", time.Hour)
	adv, err := api.NewClient(srv.URL, secret).Suggest(context.Background(), api.SuggestBody{Resource: "weights/frontier-7", Actions: []string{"read"}})
	if err != nil || adv.Role.Role != "weights-reader-frontier-7" || adv.Source != "deterministic" || !strings.Contains(adv.ModelNote, "not one of the candidates") {
		t.Fatalf("advice with a wrong model: %+v %v", adv, err)
	}
}
