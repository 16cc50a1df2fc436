package main_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// SCIM provisioning against `rampart server`, with the request shapes Okta documents (the
// fixtures of identity/scim/testdata): the directory provisions alice, pushes a group that maps
// to weights-owners, changes its membership, replaces and deletes it, deactivates alice (her
// session is refused on the next call), reactivates her and deletes her. Every change is a
// ledger entry (scim.user.*, scim.group.*) whose canonical form the run checks; a request
// without the bearer secret is refused and writes nothing.
func TestSCIMProvisioningEndToEnd(t *testing.T) {
	dir := t.TempDir()
	b := make([]byte, 36)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	tokenFile := filepath.Join(dir, "scim-token")
	if err := os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "rampart.yaml")
	err := os.WriteFile(cfg, fmt.Appendf(nil, "listen: %s\ndata_dir: %s\npolicy_dir: %s\noidc:\n  dev_provider: true\nscim:\n  token_file: %s\n",
		addr, filepath.Join(dir, "data"), demoPolicyWith(t, nil), tokenFile), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, addr, "server", "--config", cfg)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	r := c.run(nil, "admin", "token", "--config", cfg, "--subject", "erin")
	if r.code != 0 {
		t.Fatalf("admin token: %+v", r)
	}
	erin := strings.TrimSpace(r.out)

	fixture := func(name string, vars map[string]string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("..", "..", "identity", "scim", "testdata", name))
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
	do := func(method, path string, body []byte, bearer string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+addr+"/scim/v2"+path, bytes.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/scim+json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
	must := func(method, path string, body []byte, want int) map[string]any {
		t.Helper()
		st, m := do(method, path, body, secret)
		if st != want {
			t.Fatalf("%s /scim/v2%s: %d %v, want %d", method, path, st, m, want)
		}
		return m
	}
	codes := []string{"scim.user.create", "scim.user.update", "scim.user.replace", "scim.user.delete",
		"scim.group.create", "scim.group.update", "scim.group.replace", "scim.group.delete", "user.disable", "user.enable"}
	count := func() map[string]int {
		t.Helper()
		n := map[string]int{}
		for code, es := range ledgerEntries(t, c, erin, codes...) {
			n[code] = len(es)
		}
		return n
	}

	// Without the secret, or with another: refused, and nothing written.
	for _, bearer := range []string{"", "wrong", secret + "x"} {
		if st, _ := do("POST", "/Users", fixture("okta/create-user.json", map[string]string{"userName": "mallory", "externalId": "x"}), bearer); st != http.StatusUnauthorized {
			t.Fatalf("a create with bearer %q: %d, want 401", bearer, st)
		}
	}
	if n := count(); len(n) != 0 {
		t.Fatalf("refused SCIM requests wrote %v", n)
	}

	const name, external = "alice", "00ujl29u0le5T6Aj10h7"
	uid, _ := must("POST", "/Users", fixture("okta/create-user.json", map[string]string{"userName": name, "externalId": external}), 201)["id"].(string)
	if uid == "" {
		t.Fatal("the created user has no id")
	}
	alice := signInAs(t, addr, name)
	owner := func(want bool) {
		t.Helper()
		r := c.as(alice, "whoami", "-o", "json")
		var w struct {
			Groups []string `json:"groups"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.out), &w) != nil {
			t.Fatalf("whoami: %+v", r)
		}
		if got := slices.Contains(w.Groups, "weights-owners"); got != want {
			t.Fatalf("alice in weights-owners: %v, want %v (groups %v)", got, want, w.Groups)
		}
	}
	owner(false)
	vars := map[string]string{"groupName": "weights-owners", "userId": uid, "userName": name}
	gid, _ := must("POST", "/Groups", fixture("okta/create-group.json", vars), 201)["id"].(string)
	if gid == "" {
		t.Fatal("the created group has no id")
	}
	vars["groupId"] = gid
	owner(true)
	must("PATCH", "/Groups/"+gid, fixture("okta/remove-member.json", vars), 200)
	owner(false)
	must("PUT", "/Groups/"+gid, fixture("okta/replace-group.json", vars), 200)
	owner(true)
	if st, m := do("DELETE", "/Groups/"+gid, nil, secret); st != http.StatusNoContent {
		t.Fatalf("delete group: %d %v", st, m)
	}
	owner(false)

	// Deactivated: her session is refused at once. Reactivated: she may sign in anew.
	must("PATCH", "/Users/"+uid, fixture("okta/deactivate-user.json", nil), 200)
	if r := c.as(alice, "whoami"); r.code == 0 {
		t.Fatalf("a deactivated person's session still works: %+v", r)
	}
	must("PUT", "/Users/"+uid, fixture("okta/replace-user.json", map[string]string{"userId": uid, "userName": name, "externalId": external}), 200)
	again := signInAs(t, addr, name)
	if r := c.as(again, "whoami"); r.code != 0 {
		t.Fatalf("alice signed in again after reactivation: %+v", r)
	}
	// Deleted: disabled again.
	if st, m := do("DELETE", "/Users/"+uid, nil, secret); st != http.StatusNoContent {
		t.Fatalf("delete user: %d %v", st, m)
	}
	if r := c.as(again, "whoami"); r.code == 0 {
		t.Fatalf("a deleted person's session still works: %+v", r)
	}

	want := map[string]int{"scim.user.create": 1, "scim.user.update": 1, "scim.user.replace": 1, "scim.user.delete": 1,
		"scim.group.create": 1, "scim.group.update": 1, "scim.group.replace": 1, "scim.group.delete": 1, "user.disable": 2, "user.enable": 1}
	if got := count(); !maps.Equal(got, want) {
		t.Fatalf("ledger entries by code: %v, want %v", got, want)
	}
}
