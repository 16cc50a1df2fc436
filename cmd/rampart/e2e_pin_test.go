package main_test

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The attack of issue 11, item 4, against the real binary: a reader grant is approved; the role
// is broadened with write and the server restarted on the new policy. The grant used to write;
// now it keeps what it was approved for, the ledger names the changed role (known across the
// restart from the store), `grant list` says so, and a renewal approved under the new definition
// gives write.
func TestBroadenedRoleEndToEnd(t *testing.T) {
	dir := t.TempDir()
	pdir, data := filepath.Join(dir, "policy"), filepath.Join(dir, "data")
	if err := os.MkdirAll(pdir, 0o700); err != nil {
		t.Fatal(err)
	}
	demoFiles, _ := filepath.Glob("../../internal/demo/policy/*.yaml")
	for _, f := range demoFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pdir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	srv := startServer(t, addr, "dev", "--addr", addr, "--data", data, "--policy", pdir, "--egress-addr", "")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	token := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, dave, erin := token("alice"), token("bob"), token("dave"), token("erin")
	approve := func(id string) {
		t.Helper()
		for _, who := range []string{bob, dave} {
			if r := c.as(who, "request", "approve", id); r.code != 0 {
				t.Fatalf("approve %s: %+v", id, r)
			}
		}
	}
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4411", "--duration", "4h").out)
	approve(id)
	if r := c.as(alice, "check", "alice", "write", "weights/frontier-7"); r.code != 3 {
		t.Fatalf("write before the change: %+v", r)
	}

	// The role is broadened; the server restarts on the new policy.
	roles := filepath.Join(pdir, "roles.yaml")
	b, _ := os.ReadFile(roles)
	broadened := strings.Replace(string(b), "  - actions: [read]\n    resources: [weights/frontier-7]", "  - actions: [read, write]\n    resources: [weights/frontier-7]", 1)
	if broadened == string(b) {
		t.Fatal("the demo reader role has no rule to broaden")
	}
	if err := os.WriteFile(roles, []byte(broadened), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.stop(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", data, "--policy", pdir, "--egress-addr", "")

	if r := c.as(alice, "check", "alice", "write", "weights/frontier-7"); r.code != 3 || !strings.Contains(r.out, "renew the grant") {
		t.Fatalf("the old grant writes after the role was broadened: %+v", r)
	}
	if r := c.as(alice, "check", "alice", "read", "weights/frontier-7"); r.code != 0 {
		t.Fatalf("the old grant lost read: %+v", r)
	}
	if r := c.as(erin, "audit", "tail", "-n", "20"); r.code != 0 || !strings.Contains(r.out, "roles whose definition changed: weights-reader-frontier-7") {
		t.Fatalf("the policy.load entry does not name the role: %+v", r)
	}
	r := c.as(alice, "grant", "list")
	grant := regexp.MustCompile(`grt_[a-z2-7]{16}`).FindString(r.out)
	if r.code != 0 || grant == "" || !strings.Contains(r.out, "role changed since approval") {
		t.Fatalf("grant list: %+v", r)
	}
	// Renewing re-approves under the broader definition.
	ren := reqID.FindString(c.as(alice, "grant", "renew", grant, "--reason", "needs write now").out)
	if ren == "" {
		t.Fatal("no renewal request")
	}
	approve(ren)
	if r := c.as(alice, "check", "alice", "write", "weights/frontier-7"); r.code != 0 {
		t.Fatalf("the renewed grant cannot write: %+v", r)
	}
	if r := c.as(alice, "grant", "list"); strings.Contains(r.out, "role changed since approval") {
		t.Fatalf("grant list after renewal: %+v", r)
	}
}

// A grant approved by a version of Rampart from before role definitions were pinned is pinned
// at the next policy load (access.LoadPolicy; invariant 9). The database is made to look as an
// older version left it: the grant and its reviews carry no definition (the columns' default)
// and no role definitions were recorded at the last load. Restarted on the same policy, the
// server pins the grant to that policy's definition (grant.pin names it) and it keeps reading;
// made to look so again and restarted on a broadened policy, what the grant was approved for
// is unknown, so it is pinned to nothing and gives nothing until renewed (fail closed).
func TestGrantsFromBeforePinningEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pdir := demoPolicyWith(t, nil)
	addr := freeAddr(t)
	start := func() *server {
		return startServer(t, addr, "dev", "--addr", addr, "--data", data, "--policy", pdir, "--egress-addr", "")
	}
	srv := start()
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	token := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, dave, erin := token("alice"), token("bob"), token("dave"), token("erin")
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-reader-frontier-7", "--reason", "eval run 4414", "--duration", "4h").out)
	for _, who := range []string{bob, dave} {
		if r := c.as(who, "request", "approve", id); r.code != 0 {
			t.Fatalf("approve %s: %+v", id, r)
		}
	}
	grant := regexp.MustCompile(`grt_[a-z2-7]{16}`).FindString(c.as(alice, "request", "show", id).out)
	if grant == "" {
		t.Fatalf("request %s activated no grant", id)
	}
	// unpin stops the server and clears what pinning added, as the store's migration left it
	// for grants approved before it.
	unpin := func(srv *server) {
		t.Helper()
		srv.stop(t)
		db, err := sql.Open("sqlite", "file:"+filepath.Join(data, "rampart.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []string{
			`UPDATE grants SET role_digest = '', role_definition = ''`,
			`UPDATE reviews SET role_digest = ''`,
			`DELETE FROM meta WHERE key = 'role_definitions'`,
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	pins := func() []ledgerEntry {
		t.Helper()
		return ledgerEntries(t, c, erin, "grant.pin")["grant.pin"]
	}
	if p := pins(); len(p) != 0 {
		t.Fatalf("grant.pin before any upgrade: %+v", p)
	}

	// Upgraded, same policy: pinned to its definition; the grant still reads, and only reads.
	unpin(srv)
	srv = start()
	p := pins()
	if len(p) != 1 || fmt.Sprint(p[0].Unmapped["pinned"]) != "["+grant+"]" || fmt.Sprint(p[0].Unmapped["pinned_to_nothing"]) != "[]" {
		t.Fatalf("grant.pin after an upgrade on the same policy: %+v", p)
	}
	if r := c.as(alice, "check", "alice", "read", "weights/frontier-7"); r.code != 0 {
		t.Fatalf("the pinned grant lost read: %+v", r)
	}
	if r := c.as(alice, "grant", "list"); r.code != 0 || !strings.Contains(r.out, grant) || strings.Contains(r.out, "role changed since approval") {
		t.Fatalf("grant list after pinning: %+v", r)
	}

	// Upgraded and broadened at once: pinned to nothing.
	unpin(srv)
	roles := filepath.Join(pdir, "roles.yaml")
	b, _ := os.ReadFile(roles)
	broadened := strings.Replace(string(b), "  - actions: [read]\n    resources: [weights/frontier-7]", "  - actions: [read, write]\n    resources: [weights/frontier-7]", 1)
	if broadened == string(b) {
		t.Fatal("the demo reader role has no rule to broaden")
	}
	if err := os.WriteFile(roles, []byte(broadened), 0o600); err != nil {
		t.Fatal(err)
	}
	start()
	p = pins()
	if len(p) != 2 || fmt.Sprint(p[1].Unmapped["pinned"]) != "[]" || fmt.Sprint(p[1].Unmapped["pinned_to_nothing"]) != "["+grant+"]" {
		t.Fatalf("grant.pin after an upgrade with a broadened policy: %+v", p)
	}
	for _, action := range []string{"read", "write"} {
		if r := c.as(alice, "check", "alice", action, "weights/frontier-7"); r.code != 3 {
			t.Fatalf("a grant of unknown definition still allows %s: %+v", action, r)
		}
	}
}
