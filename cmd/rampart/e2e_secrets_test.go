package main_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var leaseRE = regexp.MustCompile(`lease (sl_[a-z2-7]{16})`)

// Issue 16: the secrets store through the real binary: reads and writes under a standing
// binding and under a two-party grant, path tricks refused before anything is sent or served,
// a revocation that ends reads and leases, rotation that re-wraps secrets, and the value never
// in the server's log, the ledger, or an error.
func TestSecretsEndToEnd(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	srv := startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	tok := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		tok[u] = strings.TrimSpace(c.ok("login", "--dev", "--user", u, "--print-token"))
	}
	c.ok("login", "--dev", "--user", "alice")
	dir := t.TempDir()
	mark := make([]byte, 12)
	_, _ = rand.Read(mark)
	value := "tracking-" + hex.EncodeToString(mark)
	valueFile := filepath.Join(dir, "v")
	_ = os.WriteFile(valueFile, []byte(value), 0o600)

	// A standing binding: alice stores and reads the research key, carol may do neither.
	if out := c.ok("secret", "put", "research/tracking-key", "--file", valueFile); !strings.Contains(out, "Stored secrets/research/tracking-key version 1") {
		t.Fatalf("put: %s", out)
	}
	if out := c.ok("secret", "get", "secrets/research/tracking-key"); out != value {
		t.Fatalf("get: %q", out)
	}
	if r := c.as(tok["carol"], "secret", "get", "research/tracking-key"); r.code != 3 || !strings.Contains(r.err, "may not read secrets/research/tracking-key") || strings.Contains(r.err+r.out, value) {
		t.Fatalf("carol reads: %+v", r)
	}

	// Path tricks: the CLI refuses them before sending (exit 2), the server before routing
	// (400, never a redirect to the cleaned path).
	for _, name := range []string{"../deploy/registry-token", "research/../deploy/registry-token", "research//tracking-key", "/research/tracking-key", "research/tracking-kеy", "research/tracking-key\n", "Research/tracking-key"} {
		if r := c.run(nil, "secret", "get", name); r.code != 2 || !strings.Contains(r.err, "secret name") {
			t.Errorf("secret get %q: %+v", name, r)
		}
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{
		// A name is one segment: these paths are no route (404), never a redirect to the
		// cleaned path, which would be another secret.
		"/v1/secrets/research/../deploy%2Fregistry-token": 404, "/v1/secret-versions/research/./tracking-key": 404, "/v1/secrets/research/tracking-key": 404,
		// One segment, not a name.
		"/v1/secrets/..%2Fdeploy%2Fregistry-token": 400, "/v1/secrets/research%2F%2Ftracking-key": 400, "/v1/secrets/%2Fresearch%2Ftracking-key": 400,
		"/v1/secrets/research%2Ftracking-k%D0%B5y": 400, "/v1/secrets/research%2Ftracking-key%00": 400, "/v1/secrets/%2e%2e": 400, "/v1/secrets/research%5Ctracking-key": 400,
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok["alice"])
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(b), "secret name") || strings.Contains(string(b), value) {
			t.Errorf("GET %s: %d %s; want %d", path, resp.StatusCode, b, want)
		}
	}

	// Leases: take one, renew it, revoke it, and the renewal is refused.
	r := c.run(nil, "secret", "get", "research/tracking-key", "--lease-ttl", "10m")
	m := leaseRE.FindStringSubmatch(r.err)
	if r.code != 0 || r.out != value || m == nil {
		t.Fatalf("get with a lease: %+v", r)
	}
	if r := c.run(nil, "secret", "get", "research/tracking-key", "--lease", m[1]); r.code != 0 || r.out != value || !strings.Contains(r.err, m[1]) {
		t.Fatalf("renew: %+v", r)
	}
	if r := c.as(tok["bob"], "secret", "get", "research/tracking-key", "--lease", m[1]); r.code == 0 {
		t.Fatalf("bob renews alice's lease: %+v", r)
	}
	c.ok("secret", "revoke-lease", m[1])
	if r := c.run(nil, "secret", "get", "research/tracking-key", "--lease", m[1]); r.code != 3 || !strings.Contains(r.err, "revoked") {
		t.Fatalf("renew a revoked lease: %+v", r)
	}

	// A critical secret: no access without a two-party grant; the grant's revocation ends
	// reads and the lease taken under it.
	deploy := filepath.Join(dir, "d")
	_ = os.WriteFile(deploy, []byte("registry-"+value), 0o600)
	if r := c.run(nil, "secret", "put", "deploy/registry-token", "--file", deploy); r.code != 3 || !strings.Contains(r.err, "rampart request create --resource secrets/deploy/registry-token --action write") {
		t.Fatalf("put without a grant: %+v", r)
	}
	id := reqID.FindString(c.ok("request", "create", "--role", "secret-deploy-registry", "--reason", "release 7.1", "--duration", "1h"))
	c.as(tok["bob"], "request", "approve", id)
	var view struct {
		Grant struct{ ID string } `json:"grant"`
	}
	if err := json.Unmarshal([]byte(c.as(tok["dave"], "-o", "json", "request", "approve", id).out), &view); err != nil || view.Grant.ID == "" {
		t.Fatalf("approve: %v", err)
	}
	c.ok("secret", "put", "deploy/registry-token", "--file", deploy)
	r = c.run(nil, "secret", "get", "deploy/registry-token", "--lease-ttl", "30m")
	dm := leaseRE.FindStringSubmatch(r.err)
	if r.code != 0 || r.out != "registry-"+value || dm == nil {
		t.Fatalf("get under the grant: %+v", r)
	}
	if out := c.ok("secret", "versions", "deploy/registry-token"); !strings.Contains(out, "active") {
		t.Fatalf("versions: %s", out)
	}
	c.as(tok["dave"], "grant", "revoke", view.Grant.ID, "--reason", "release done")
	if r := c.run(nil, "secret", "get", "deploy/registry-token"); r.code != 3 || strings.Contains(r.out+r.err, value) {
		t.Fatalf("get after the revocation: %+v", r)
	}
	if r := c.run(nil, "secret", "get", "deploy/registry-token", "--lease", dm[1]); r.code != 3 || strings.Contains(r.out+r.err, value) {
		t.Fatalf("renew after the revocation: %+v", r)
	}

	// Rotation re-wraps the secrets' data keys; the old key then retires and reads go on.
	var before []struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(c.ok("-o", "json", "secret", "ls")), &before); err != nil || len(before) != 1 {
		t.Fatalf("ls: %v %+v", err, before)
	}
	if r := c.as(tok["erin"], "vault", "retire", before[0].KeyID); r.code == 0 {
		t.Fatalf("retired the key in use: %+v", r)
	}
	if r := c.as(tok["erin"], "vault", "rotate"); r.code != 0 || !strings.Contains(r.out, "2 data keys re-wrapped") {
		t.Fatalf("rotate: %+v", r)
	}
	if r := c.as(tok["erin"], "vault", "retire", before[0].KeyID); r.code != 0 {
		t.Fatalf("retire after the rotation: %+v", r)
	}
	if out := c.ok("secret", "get", "research/tracking-key"); out != value {
		t.Fatalf("get after the rotation: %q", out)
	}
	if r := c.run(nil, "secret", "rm", "research/tracking-key"); r.code != 0 || !strings.Contains(r.out, "Deleted 1 version") {
		t.Fatalf("rm: %+v", r)
	}
	if r := c.run(nil, "secret", "get", "research/tracking-key"); r.code != 1 || !strings.Contains(r.err, "no stored version") {
		t.Fatalf("get after rm: %+v", r)
	}

	// The value is nowhere but in the answers to reads: not in the server's log, not in the
	// ledger.
	export := filepath.Join(dir, "entries.jsonl")
	c.as(tok["erin"], "audit", "export", "--file", export, "--checkpoint", filepath.Join(dir, "cp"))
	ledger, _ := os.ReadFile(export)
	if !strings.Contains(string(ledger), "secret.read") || !strings.Contains(string(ledger), "secret.lease_renew") {
		t.Fatalf("the ledger has no secret reads:\n%s", ledger)
	}
	srv.stop(t)
	logs := srv.logs.String()
	if !strings.Contains(logs, "/v1/secrets/") {
		t.Fatalf("the server log has no secret requests, so this test sees nothing:\n%s", logs)
	}
	for _, leak := range []string{value, base64.StdEncoding.EncodeToString([]byte(value)), base64.StdEncoding.EncodeToString([]byte("registry-" + value))} {
		if strings.Contains(logs, leak) {
			t.Errorf("the server log holds the value (%s)", leak)
		}
		if strings.Contains(string(ledger), leak) {
			t.Errorf("the ledger holds the value (%s)", leak)
		}
	}
}

// A workload reads a secret with its Kubernetes service-account token (issue 16): the tracker,
// bound to the research secrets, reads; another service account of the same namespace, and a
// token signed by a key the cluster never published, do not.
func TestSecretsWorkloadToken(t *testing.T) {
	dir := t.TempDir()
	k8s := newK8sIssuer(t)
	addr := freeAddr(t)
	keyring := filepath.Join(dir, "keyring.json")
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("vault", "init", keyring)
	cfg := filepath.Join(dir, "server.yaml")
	_ = os.WriteFile(cfg, []byte(fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: ../../internal/demo/policy\nstore: {driver: sqlite, path: %s}\noidc: {dev_provider: true}\nvault: {keyring: %s}\nworkloads: {clusters: [{name: dev, issuer: %q}]}\n",
		addr, filepath.Join(dir, "data"), filepath.Join(dir, "rampart.db"), keyring, k8s.srv.URL)), 0o600)
	startServer(t, addr, "server", "--config", cfg)
	alice := signInAs(t, addr, "alice")
	value := filepath.Join(dir, "v")
	_ = os.WriteFile(value, []byte("tracker-key-7f3a"), 0o600)
	if r := c.as(alice, "secret", "put", "research/tracking-key", "--file", value); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	if r := c.as(k8s.token(t, "research", "tracker", k8s.key), "secret", "get", "research/tracking-key", "--lease-ttl", "1h"); r.code != 0 || r.out != "tracker-key-7f3a" || !strings.Contains(r.err, "lease sl_") {
		t.Fatalf("the tracker workload reads: %+v", r)
	}
	if r := c.as(k8s.token(t, "research", "other", k8s.key), "secret", "get", "research/tracking-key"); r.code != 3 || !strings.Contains(r.err, "k8s:dev/research/other may not read secrets/research/tracking-key") {
		t.Fatalf("another workload reads: %+v", r)
	}
	forged, _ := rsa.GenerateKey(rand.Reader, 2048)
	if r := c.as(k8s.token(t, "research", "tracker", forged), "secret", "get", "research/tracking-key"); r.code != 1 || strings.Contains(r.out, "tracker-key") {
		t.Fatalf("a forged token reads: %+v", r)
	}
}
