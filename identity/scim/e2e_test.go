package scim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/testenv"
	"rampart.dev/rampart/server"
)

// SCIM through a real server (two replicas on one store), with the request shapes Entra ID and
// Okta document (testdata/README.md says where each comes from): provisioning, lookups,
// membership changes and deprovisioning, which takes effect at once on the replica that got
// the request and within seconds on the other (issue 11, item 8; invariant 8).

type rig struct {
	t      *testing.T
	in     *server.Instance
	other  *server.Instance
	url    string
	secret string
}

func newRig(t *testing.T, store func(dir string) server.StoreConfig) *rig {
	t.Helper()
	dir := t.TempDir()
	b := make([]byte, 36)
	_, _ = rand.Read(b)
	r := &rig{t: t, secret: base64.RawURLEncoding.EncodeToString(b)}
	tokenFile := filepath.Join(dir, "scim-token")
	if err := os.WriteFile(tokenFile, []byte(r.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	cfg := server.Config{DataDir: filepath.Join(dir, "a"), PolicyFS: demo.Policy(), Store: store(dir), SCIM: server.SCIMConfig{TokenFile: tokenFile}}
	in, err := server.Start(context.Background(), cfg, server.Options{Logger: quiet, SyncInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(func() { srv.Close(); in.Close() })
	// A second replica: the same store and ledger key, its own data directory.
	cfg2 := cfg
	cfg2.DataDir = filepath.Join(dir, "b")
	cfg2.Ledger.SigningKeyFile = filepath.Join(dir, "a", "ledger.key")
	other, err := server.Start(context.Background(), cfg2, server.Options{Logger: quiet, SyncInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	r.in, r.other, r.url = in, other, srv.URL
	return r
}

func sqliteStore(dir string) server.StoreConfig {
	return server.StoreConfig{Driver: "sqlite", Path: filepath.Join(dir, "rampart.db")}
}

// fixture reads a testdata file and fills its placeholders.
func fixture(t *testing.T, name string, vars map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "{{"+k+"}}", v)
	}
	if strings.Contains(s, "{{") {
		t.Fatalf("%s: a placeholder is left: %s", name, s)
	}
	return []byte(s)
}

func (r *rig) do(method, path string, body []byte, secret string) (int, map[string]any) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.url+"/scim/v2"+path, bytes.NewReader(body))
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	if resp.StatusCode != http.StatusNoContent && resp.Header.Get("Content-Type") != "application/scim+json" {
		r.t.Errorf("%s %s answered %s", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, m
}

func (r *rig) must(method, path string, body []byte, want int) map[string]any {
	r.t.Helper()
	st, m := r.do(method, path, body, r.secret)
	if st != want {
		r.t.Fatalf("%s %s: %d %v, want %d", method, path, st, m, want)
	}
	return m
}

func q(filter string) string { return "?" + url.Values{"filter": {filter}}.Encode() }

// codes returns the ledger's event codes.
func (r *rig) codes() []string {
	r.t.Helper()
	recs, err := r.in.Store.Entries(context.Background(), 0, 100000)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, rec := range recs {
		s, err := audit.Summarize(rec.Data)
		if err != nil {
			r.t.Fatal(err)
		}
		out = append(out, s.Code)
	}
	return out
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// owner reports whether subject is in the weights-owners group on both replicas (the other
// within a few seconds: its directory sync runs every second).
func (r *rig) owner(subject string, want bool) {
	r.t.Helper()
	if got := r.in.Access.Policy().InGroup(subject, "weights-owners"); got != want {
		r.t.Fatalf("%s in weights-owners on the replica that got the request: %v, want %v", subject, got, want)
	}
	for deadline := time.Now().Add(10 * time.Second); r.other.Access.Policy().InGroup(subject, "weights-owners") != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s in weights-owners on the other replica: still %v after 10 s", subject, !want)
		}
	}
}

// session signs subject in as an identity-provider sign-in would.
func (r *rig) session(subject string) identity.Issued {
	r.t.Helper()
	iss, err := r.in.Sessions.Create(context.Background(), identity.NewSession{Subject: subject, Method: "oidc", AuthTime: time.Now(),
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
			Time: time.Now(), Actor: subject, User: subject, Message: subject + " signed in"}})
	if err != nil {
		r.t.Fatal(err)
	}
	return iss
}

func runEntra(t *testing.T, r *rig) {
	const name = "bob@contoso.example"
	// Entra looks the user up first: zero results.
	if m := r.must("GET", "/Users"+q(`userName eq "`+name+`"`), nil, 200); m["totalResults"] != 0.0 {
		t.Fatalf("lookup before create: %v", m)
	}
	u := r.must("POST", "/Users", fixture(t, "entra/create-user.json", map[string]string{"userName": name, "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"}), 201)
	uid := u["id"].(string)
	if u["userName"] != name || u["active"] != true || u["meta"].(map[string]any)["resourceType"] != "User" {
		t.Fatalf("created user: %v", u)
	}
	if m := r.must("GET", "/Users"+q(`userName eq "`+strings.ToUpper(name)+`"`), nil, 200); m["totalResults"] != 1.0 {
		t.Fatalf("lookup by userName (case-insensitive): %v", m)
	}
	if st, m := r.do("POST", "/Users", fixture(t, "entra/create-user.json", map[string]string{"userName": name, "externalId": "x"}), r.secret); st != 409 || m["scimType"] != "uniqueness" {
		t.Fatalf("a second create of the same userName: %d %v", st, m)
	}
	u = r.must("PATCH", "/Users/"+uid, fixture(t, "entra/update-user-multivalued.json", nil), 200)
	if !strings.Contains(jsonText(u), "updatedEmail@microsoft.com") || u["name"].(map[string]any)["familyName"] != "updatedFamilyName" {
		t.Fatalf("multi-valued update: %v", u)
	}
	r.must("PATCH", "/Users/"+uid, fixture(t, "entra/add-without-path.json", nil), 200)
	// A rename is refused: grants and the ledger name people by their user name.
	if st, m := r.do("PATCH", "/Users/"+uid, fixture(t, "entra/update-user-singlevalued.json", nil), r.secret); st != 400 || m["scimType"] != "mutability" {
		t.Fatalf("rename: %d %v", st, m)
	}

	// A group, bob in it: he is a weights owner (an approver) on both replicas.
	g := r.must("POST", "/Groups", fixture(t, "entra/create-group.json", map[string]string{"groupName": "weights-owners", "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"}), 201)
	gid := g["id"].(string)
	if m := r.must("GET", "/Groups?excludedAttributes=members&"+q(`displayName eq "weights-owners"`)[1:], nil, 200); m["totalResults"] != 1.0 ||
		m["Resources"].([]any)[0].(map[string]any)["members"] != nil {
		t.Fatalf("group lookup without members: %v", m)
	}
	r.must("PATCH", "/Groups/"+gid, fixture(t, "entra/add-members.json", map[string]string{"userId": uid}), 200)
	r.owner(name, true)
	// Removed at the directory: he is not an owner any more, here at once, there within seconds.
	r.must("PATCH", "/Groups/"+gid, fixture(t, "entra/remove-members.json", map[string]string{"userId": uid}), 200)
	r.owner(name, false)
	r.must("PATCH", "/Groups/"+gid, fixture(t, "entra/add-members.json", map[string]string{"userId": uid}), 200)
	r.owner(name, true)
	// A rename of the group at the directory: it no longer maps to weights-owners.
	r.must("PATCH", "/Groups/"+gid, fixture(t, "entra/update-group-name.json", map[string]string{"groupName": "renamed"}), 200)
	r.owner(name, false)
	r.must("PATCH", "/Groups/"+gid, fixture(t, "entra/update-group-name.json", map[string]string{"groupName": "weights-owners"}), 200)
	r.owner(name, true)

	// Deprovisioned: unassigned in Entra, which sends active false; his session dies at once,
	// both replicas deny him, and he is no owner.
	iss := r.session(name)
	r.must("PATCH", "/Users/"+uid, fixture(t, "entra/disable-user.json", nil), 200)
	if _, err := r.in.Sessions.Verify(context.Background(), iss.AccessToken); err == nil {
		t.Fatal("a deprovisioned person's session still works")
	}
	if !r.in.Index.Disabled(name) {
		t.Fatal("the replica that got the request does not deny the deprovisioned person")
	}
	for deadline := time.Now().Add(10 * time.Second); !r.other.Index.Disabled(name); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the other replica still does not deny the deprovisioned person after 10 s")
		}
	}
	r.owner(name, false)
	// The legacy form repeats it harmlessly; and a sign-in is refused.
	r.must("PATCH", "/Users/"+uid, fixture(t, "entra/disable-user-legacy.json", nil), 200)
	if _, err := r.in.Sessions.Create(context.Background(), identity.NewSession{Subject: name, Method: "oidc", AuthTime: time.Now(),
		Event: audit.Event{Code: "signin.success", Class: audit.ClassAuthentication, Time: time.Now(), Actor: name}}); err == nil {
		t.Fatal("a deprovisioned person signed in")
	}
	// Deleted (30 days later in Entra): gone from SCIM, still disabled.
	st, _ := r.do("DELETE", "/Users/"+uid, nil, r.secret)
	if st != 204 {
		t.Fatalf("delete: %d", st)
	}
	if st, m := r.do("GET", "/Users/"+uid, nil, r.secret); st != 404 || m["schemas"].([]any)[0] != "urn:ietf:params:scim:api:messages:2.0:Error" || m["status"] != "404" {
		t.Fatalf("the deleted user: %d %v", st, m)
	}
	if st, _ := r.do("DELETE", "/Groups/"+gid, nil, r.secret); st != 204 {
		t.Fatalf("delete group: %d", st)
	}
}

func runOkta(t *testing.T, r *rig) {
	const name = "carla@okta.example"
	m := r.must("GET", "/Users?"+url.Values{"filter": {`userName eq "` + name + `"`}, "startIndex": {"1"}, "count": {"100"}}.Encode(), nil, 200)
	if m["totalResults"] != 0.0 || m["startIndex"] != 1.0 {
		t.Fatalf("lookup before create: %v", m)
	}
	u := r.must("POST", "/Users", fixture(t, "okta/create-user.json", map[string]string{"userName": name, "externalId": "00ujl29u0le5T6Aj10h7"}), 201)
	uid := u["id"].(string)
	if u["password"] != nil || strings.Contains(jsonText(u), "1mz050nq") {
		t.Fatalf("the password was kept: %v", u)
	}
	g := r.must("POST", "/Groups", fixture(t, "okta/create-group.json", map[string]string{"groupName": "weights-owners", "userId": uid, "userName": name}), 201)
	gid := g["id"].(string)
	r.owner(name, true)
	r.must("PATCH", "/Groups/"+gid, fixture(t, "okta/remove-member.json", map[string]string{"userId": uid}), 200)
	r.owner(name, false)
	r.must("PATCH", "/Groups/"+gid, fixture(t, "okta/add-member.json", map[string]string{"userId": uid, "userName": name}), 200)
	r.owner(name, true)
	r.must("PATCH", "/Groups/"+gid, fixture(t, "okta/rename-group.json", map[string]string{"groupId": gid, "groupName": "Test SCIMv2"}), 200)
	r.owner(name, false)
	r.must("PUT", "/Groups/"+gid, fixture(t, "okta/replace-group.json", map[string]string{"groupId": gid, "groupName": "weights-owners", "userId": uid, "userName": name}), 200)
	r.owner(name, true)
	// Okta deactivates: active false, without a path.
	iss := r.session(name)
	r.must("PATCH", "/Users/"+uid, fixture(t, "okta/deactivate-user.json", nil), 200)
	if _, err := r.in.Sessions.Verify(context.Background(), iss.AccessToken); err == nil {
		t.Fatal("a deactivated person's session still works")
	}
	r.owner(name, false)
	// Reactivated with a full PUT: they may sign in again; the old session stays dead.
	u = r.must("PUT", "/Users/"+uid, fixture(t, "okta/replace-user.json", map[string]string{"userId": uid, "userName": name, "externalId": "00ujl29u0le5T6Aj10h7"}), 200)
	if u["active"] != true || u["displayName"] != "Another User" {
		t.Fatalf("reactivated: %v", u)
	}
	if _, err := r.in.Sessions.Verify(context.Background(), iss.AccessToken); err == nil {
		t.Fatal("reactivation revived a session")
	}
	if r.in.Index.Disabled(name) {
		t.Fatal("a reactivated person is still denied")
	}
	r.session(name)
	r.owner(name, true)
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func runSCIM(t *testing.T, r *rig) {
	before := len(r.codes())
	// Without the secret: 401 in the SCIM error schema, and nothing written.
	for _, secret := range []string{"", "wrong", r.secret + "x"} {
		if st, m := r.do("GET", "/Users", nil, secret); st != 401 || m["status"] != "401" {
			t.Fatalf("secret %q: %d %v", secret, st, m)
		}
	}
	if st, m := r.do("GET", "/Users"+q(`userName eq`), nil, r.secret); st != 400 || m["scimType"] != "invalidFilter" {
		t.Fatalf("bad filter: %d %v", st, m)
	}
	for _, p := range []string{"/ServiceProviderConfig", "/ResourceTypes", "/Schemas"} {
		r.must("GET", p, nil, 200)
	}
	if n := len(r.codes()); n != before {
		t.Fatalf("reads and refusals wrote %d ledger entries", n-before)
	}
	t.Run("Entra", func(t *testing.T) { runEntra(t, r) })
	t.Run("Okta", func(t *testing.T) { runOkta(t, r) })
	codes := r.codes()
	for _, c := range []string{"scim.user.create", "scim.user.update", "scim.user.replace", "scim.user.delete", "scim.group.create", "scim.group.update",
		"scim.group.replace", "scim.group.delete", "user.disable", "user.enable"} {
		if count(codes, c) == 0 {
			t.Errorf("no %s entry in the ledger", c)
		}
	}
}

func TestSCIMOnSQLite(t *testing.T) {
	runSCIM(t, newRig(t, sqliteStore))
}

func TestSCIMOnPostgreSQL(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	runSCIM(t, newRig(t, func(string) server.StoreConfig { return server.StoreConfig{Driver: "postgres", DSN: dsn} }))
}
