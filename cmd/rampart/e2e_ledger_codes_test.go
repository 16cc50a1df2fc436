package main_test

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
	"rampart.dev/rampart/internal/demo"
)

// demoPolicyWith copies the demo policy into a directory, changing what edit says.
func demoPolicyWith(t *testing.T, edit map[string][2]string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		if err != nil {
			return err
		}
		if e, ok := edit[path]; ok {
			if !bytes.Contains(b, []byte(e[0])) {
				t.Fatalf("the demo policy's %s no longer has %q", path, e[0])
			}
			b = bytes.Replace(b, []byte(e[0]), []byte(e[1]), 1)
		}
		return os.WriteFile(filepath.Join(dir, path), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// The entries the other end-to-end tests do not make a server write, made here through the CLI
// and the API of `rampart dev`, so that every entry code's canonical form is checked
// (e2e_ledger_test.go): denials, cancellation, expiry of a request, break-glass and its review
// both ways, renewal, token revocation, weights deletion and key release, key retirement.
func TestLedgerEntryCodes(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	// Dataset requests lapse after two seconds, so that one expires during the test.
	policy := demoPolicyWith(t, map[string][2]string{"approvals.yaml": {"  request_ttl: 48h\n", "  request_ttl: 2s\n"}})
	startServer(t, addr, "dev", "--addr", addr, "--data", data, "--policy", policy)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	login := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, carol, dave, erin := login("alice"), login("bob"), login("carol"), login("dave"), login("erin")
	must := func(tok string, args ...string) string {
		t.Helper()
		r := c.as(tok, args...)
		if r.code != 0 {
			t.Fatalf("rampart %s: %+v", strings.Join(args, " "), r)
		}
		return r.out
	}
	create := func(args ...string) string {
		t.Helper()
		var created struct {
			Request struct {
				ID string `json:"id"`
			} `json:"request"`
		}
		out := must(alice, append([]string{"-o", "json", "request", "create"}, args...)...)
		if err := json.Unmarshal([]byte(out), &created); err != nil || created.Request.ID == "" {
			t.Fatalf("request create %v: %s %v", args, out, err)
		}
		return created.Request.ID
	}
	weights := []string{"--role", "weights-reader-frontier-7", "--reason", "eval"}
	dataset := []string{"--role", "dataset-reader-eval-suite-v3", "--reason", "eval"}

	// request.deny, request.denied: one eligible denial decides.
	must(bob, "request", "deny", create(weights...))
	// request.cancel.
	must(alice, "request", "cancel", create(weights...))
	// request.expire: a dataset request nobody reviews (the sweep runs every second).
	lapsing := create(dataset...)
	// grant.break_glass, then request.post_review.approve and .accepted.
	bg := create(append(dataset, "--break-glass", "--duration", "30m")...)
	must(carol, "request", "approve", bg)
	// grant.renew: a renewal of an active grant, approved.
	w := create(weights...)
	must(bob, "request", "approve", w)
	must(dave, "request", "approve", w)
	grant := regexp.MustCompile(`grt_[a-z2-7]{16}`).FindString(must(alice, "request", "show", w))
	renewal := reqID.FindString(must(alice, "grant", "renew", grant, "--reason", "longer eval"))
	must(bob, "request", "approve", renewal)
	must(dave, "request", "approve", renewal)
	// grant.expire: a grant of one second, which the expiry sweep (every second) ends; the wait
	// below is for its entry, with a limit only for failures.
	short := create(append(weights, "--duration", "1s")...)
	must(bob, "request", "approve", short)
	must(dave, "request", "approve", short)
	// request.post_review.deny, .rejected (and the grant's revocation).
	bg2 := create(append(dataset, "--break-glass", "--duration", "30m")...)
	must(carol, "request", "deny", bg2)
	// token.revoke.
	tokens := must(erin, "-o", "json", "token", "create", "--subject", "service:ci", "--kind", "service", "--ttl", "1h")
	var tok struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(tokens), &tok); err != nil || tok.ID == "" {
		t.Fatalf("token create: %s %v", tokens, err)
	}
	must(erin, "token", "revoke", tok.ID)

	// The vault: write, release a data key to a workload's ephemeral key, delete (under the
	// deleter role: a writer may not); rotate the key-encryption key and retire the old one.
	wr := create("--role", "weights-writer-frontier-7", "--reason", "store")
	must(bob, "request", "approve", wr)
	must(dave, "request", "approve", wr)
	file := filepath.Join(t.TempDir(), "model.bin")
	blob := make([]byte, 1<<16)
	_, _ = rand.Read(blob)
	if err := os.WriteFile(file, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	must(alice, "weights", "put", "frontier-7", file)
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"public_key": base64.StdEncoding.EncodeToString(eph.PublicKey().Bytes())})
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/weights/frontier-7/key", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+alice)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("key release: %d %s", resp.StatusCode, answer)
	}
	del := create("--role", "weights-deleter-frontier-7", "--reason", "prune")
	must(bob, "request", "approve", del)
	must(dave, "request", "approve", del)
	must(alice, "weights", "rm", "frontier-7", "--version", "1")
	current := regexp.MustCompile(`Current key is (\S+);`)
	first := current.FindStringSubmatch(must(erin, "vault", "rotate"))
	if first == nil {
		t.Fatal("vault rotate did not name the new key")
	}
	must(erin, "vault", "rotate") // re-wraps every data key away from the first rotation's key
	must(erin, "vault", "retire", first[1])

	// Every code above is in the ledger (the run's check then compares each with its
	// canonical form).
	want := []string{"request.deny", "request.denied", "request.cancel", "request.expire", "grant.break_glass",
		"request.post_review.approve", "request.post_review.accepted", "grant.renew", "request.post_review.deny",
		"request.post_review.rejected", "grant.expire", "token.revoke", "weights.key_release", "weights.delete", "vault.rotate", "vault.retire"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		tail := c.as(erin, "audit", "tail", "-n", "500").out
		var missing []string
		for _, code := range want {
			if !strings.Contains(tail, " "+code+" ") {
				missing = append(missing, code)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the ledger lacks %v (request %s should have expired):\n%s", missing, lapsing, tail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The identity entries the sign-in test does not make: a second factor enrolled (from a session
// that signed in with the provider's MFA), a session stepped up with it, the factor reset, an
// account unbound, and a refresh token used twice.
func TestLedgerIdentityCodes(t *testing.T) {
	addr := startSignInServer(t)
	cfgDir := t.TempDir()
	alice := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + cfgDir, "RAMPART_TOKEN="}}
	if out, errOut, err := browserLogin(t, alice, "", "alice", func() string { return devCode(t) }, "--step-up"); err != nil {
		t.Fatalf("alice login: %v\n%s%s", err, out, errOut)
	}
	erin := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	if out, errOut, err := browserLogin(t, erin, "", "erin", nil); err != nil {
		t.Fatalf("erin login: %v\n%s%s", err, out, errOut)
	}
	// mfa.enrolled, session.step_up.
	secret := regexp.MustCompile(`secret: (\S+)`).FindStringSubmatch(alice.ok("mfa", "enrol"))
	if secret == nil {
		t.Fatal("mfa enrol printed no secret")
	}
	key, err := identity.DecodeTOTPSecret(secret[1])
	if err != nil {
		t.Fatal(err)
	}
	code := func() string { return identity.TOTPAt(key, identity.TOTPStepAt(time.Now())) }
	alice.ok("mfa", "confirm", code())
	// A code is accepted once: step up with the next step's code (within the allowed skew).
	alice.ok("mfa", "step-up", identity.TOTPAt(key, identity.TOTPStepAt(time.Now())+1))
	// session.refresh_reused: alice's refresh token, used twice.
	b, err := os.ReadFile(filepath.Join(cfgDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	refresh := regexp.MustCompile(`"refresh_token":\s*"([^"]+)"`).FindSubmatch(b)
	if refresh == nil {
		t.Fatalf("no refresh token in the CLI's state:\n%s", b)
	}
	// From the CLI's own device, or the risk engine refuses the refresh as coming from elsewhere.
	device := regexp.MustCompile(`"device_id":\s*"([^"]+)"`).FindSubmatch(b)
	statuses := []int{}
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/auth/token", strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {string(refresh[1])}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("User-Agent", "rampart-cli")
		if device != nil {
			req.Header.Set(signin.DeviceHeader, string(device[1]))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if statuses[0] != 200 || statuses[1] < 400 {
		t.Fatalf("refresh token used twice: %v", statuses)
	}
	// mfa.reset, user.unbind.
	erin.ok("mfa", "reset", "alice")
	erin.ok("user", "unbind", "alice")
	erin.ok("audit", "checkpoint")
	tail := erin.ok("audit", "tail", "-n", "200")
	for _, c := range []string{"mfa.enrolled", "session.step_up", "mfa.reset", "user.unbind", "session.refresh_reused"} {
		if !strings.Contains(tail, " "+c+" ") {
			t.Errorf("the ledger lacks %s:\n%s", c, tail)
		}
	}
}

// egress.budget_exhausted: the egress gateway process (sharing the server's database) records
// a subject that sent more than its budget.
func TestLedgerEgressBudgetCode(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	port := echo.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	pdir := demoPolicyWith(t, nil)
	_ = os.WriteFile(filepath.Join(pdir, "egress-local.yaml"), []byte(fmt.Sprintf(`apiVersion: rampart.dev/v1alpha1
kind: EgressPolicy
metadata: {name: local-sink}
spec:
  subjects: [group:researchers]
  allow: [{host: 127.0.0.1, ports: [%d]}]
  budget: {bytes: 4KiB, window: 1h}
`, port)), 0o600)
	db := filepath.Join(dir, "rampart.db")
	apiAddr, gwAddr := freeAddr(t), freeAddr(t)
	srvCfg := filepath.Join(dir, "server.yaml")
	_ = os.WriteFile(srvCfg, []byte(fmt.Sprintf("listen: %s\ndata_dir: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\noidc:\n  dev_provider: true\n", apiAddr, filepath.Join(dir, "data"), pdir, db)), 0o600)
	gwCfg := filepath.Join(dir, "egress.yaml")
	_ = os.WriteFile(gwCfg, []byte(fmt.Sprintf("listen: %s\npolicy_dir: %s\nstore: {driver: sqlite, path: %s}\n", gwAddr, pdir, db)), 0o600)
	startServer(t, apiAddr, "server", "--config", srvCfg)
	startServer(t, gwAddr, "egress", "--config", gwCfg, "--allow-range", "127.0.0.1/32")
	c := &cli{t: t, addr: apiAddr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	token := func(user string) string {
		r := c.run(nil, "admin", "token", "--config", srvCfg, "--subject", user)
		if r.code != 0 {
			t.Fatalf("token: %+v", r)
		}
		return strings.TrimSpace(r.out)
	}
	// alice signs in (a bootstrap token is only for admins); erin is one.
	alice, erin := signInAs(t, apiAddr, "alice"), token("erin")
	conn, err := net.Dial("tcp", gwAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	target := fmt.Sprintf("127.0.0.1:%d", port)
	_, _ = conn.Write([]byte("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + alice + "\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	chunk := make([]byte, 1024)
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 64; i++ { // 64 KiB against a budget of 4: the gateway cuts the tunnel
		if _, err := conn.Write(chunk); err != nil {
			break
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.as(erin, "audit", "tail", "-n", "50").out, " egress.budget_exhausted ") {
		if time.Now().After(deadline) {
			t.Fatal("no egress.budget_exhausted entry 20s after the budget was spent")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledgerEntry is what the end-to-end tests read of a ledger entry.
type ledgerEntry struct {
	Metadata struct {
		EventCode string `json:"event_code"`
	} `json:"metadata"`
	Actor struct {
		User struct {
			Name string `json:"name"`
		} `json:"user"`
	} `json:"actor"`
	Severity string         `json:"severity"`
	Unmapped map[string]any `json:"unmapped"`
}

// ledgerEntries has the server sign a checkpoint, exports the ledger up to it with `rampart
// audit export` (token must be an auditor's; "" for the CLI's own session) and returns the
// entries of each code asked for, in order.
func ledgerEntries(t *testing.T, c *cli, token string, codes ...string) map[string][]ledgerEntry {
	t.Helper()
	if r := c.as(token, "audit", "checkpoint"); r.code != 0 {
		t.Fatalf("audit checkpoint: %+v", r)
	}
	r := c.as(token, "audit", "export")
	if r.code != 0 {
		t.Fatalf("audit export: %+v", r)
	}
	out := map[string][]ledgerEntry{}
	for line := range strings.Lines(r.out) {
		var e ledgerEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("an exported entry does not decode: %v\n%s", err, line)
		}
		if slices.Contains(codes, e.Metadata.EventCode) {
			out[e.Metadata.EventCode] = append(out[e.Metadata.EventCode], e)
		}
	}
	return out
}
