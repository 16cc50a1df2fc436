package main_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"rampart.dev/rampart/internal/testenv"
)

// The weights vault through the CLI against `rampart dev`: request the writer role, approve,
// put, get, verify; no grant, no bytes; a tampered object never reaches the output file.
func TestWeightsVault(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	c.ok("login", "--dev", "--user", "alice")
	dir := t.TempDir()
	file := filepath.Join(dir, "model.safetensors")
	plain := make([]byte, 3<<20+12345)
	_, _ = rand.Read(plain)
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}

	// No grant: refused, with the way to ask.
	if r := c.run(nil, "weights", "put", "frontier-7", file); r.code != 3 || !strings.Contains(r.err, "rampart request create --resource weights/frontier-7 --action write") {
		t.Fatalf("put without a grant: %+v", r)
	}
	id := reqID.FindString(c.ok("request", "create", "--role", "weights-writer-frontier-7", "--reason", "store checkpoint 4411", "--duration", "1h"))
	bob := strings.TrimSpace(c.ok("login", "--dev", "--user", "bob", "--print-token"))
	dave := strings.TrimSpace(c.ok("login", "--dev", "--user", "dave", "--print-token"))
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)

	if out := c.ok("weights", "put", "weights/frontier-7", file); !strings.Contains(out, "Stored weights/frontier-7 version 1") {
		t.Fatalf("put: %s", out)
	}
	got := filepath.Join(dir, "fetched.safetensors")
	if out := c.ok("weights", "get", "frontier-7", "-o", got); !strings.Contains(out, "verified") {
		t.Fatalf("get: %s", out)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, plain) {
		t.Fatal("the fetched file differs")
	}
	if out := c.ok("weights", "verify", "frontier-7"); !strings.Contains(out, "OK") {
		t.Fatalf("verify: %s", out)
	}
	if out := c.ok("weights", "ls"); !strings.Contains(out, "weights/frontier-7") {
		t.Fatalf("ls: %s", out)
	}

	// bob has no grant on the weights: nothing comes back, nothing is written.
	none := filepath.Join(dir, "bob.safetensors")
	if r := c.as(bob, "weights", "get", "frontier-7", "-o", none); r.code != 3 || !strings.Contains(r.err, "may not read weights/frontier-7") {
		t.Fatalf("bob: %+v", r)
	}
	if _, err := os.Stat(none); err == nil {
		t.Fatal("a file was written without a grant")
	}

	// Flip one bit of the stored ciphertext: the download fails and leaves no file, and
	// verify says so.
	blob := filepath.Join(data, "vault", "objects", "frontier-7", "1", "data#")
	raw, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	raw[2<<20] ^= 1
	if err := os.WriteFile(blob, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "tampered.safetensors")
	if r := c.run(nil, "weights", "get", "frontier-7", "-o", bad); r.code == 0 || !strings.Contains(r.err, "nothing was written") {
		t.Fatalf("tampered get: %+v", r)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("leftovers after a failed download: %v", entries)
	}
	if r := c.run(nil, "weights", "verify", "frontier-7"); r.code != 1 || !strings.Contains(r.out, "FAILED") {
		t.Fatalf("verify of a tampered object: %+v", r)
	}

	// Every transfer is in the ledger, which still verifies.
	c.ok("audit", "checkpoint")
	erin := strings.TrimSpace(c.ok("login", "--dev", "--user", "erin", "--print-token"))
	tail := c.as(erin, "audit", "tail", "-n", "50")
	for _, code := range []string{"weights.denied", "weights.put", "weights.read"} {
		if !strings.Contains(tail.out, code) {
			t.Errorf("ledger lacks %s:\n%s", code, tail.out)
		}
	}
}

// The vault of a production server (rampart server --config) on Azure Blob Storage (Azurite):
// a keyring from `rampart vault init`, the account key from the environment, weights stored as
// ciphertext in the container, rotation re-wrapping keys without touching data, a rekey
// replacing the data.
func TestWeightsVaultOnAzure(t *testing.T) {
	accountURL, account, key := testenv.Azurite(t)
	t.Setenv("RAMPART_E2E_AZURE_KEY", key)
	dir := t.TempDir()
	addr := freeAddr(t)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	keyring := filepath.Join(dir, "keyring.json")
	if out := c.ok("vault", "init", keyring); !strings.Contains(out, "Created "+keyring) {
		t.Fatalf("vault init: %s", out)
	}
	if r := c.run(nil, "vault", "init", keyring); r.code == 0 {
		t.Fatal("vault init overwrote an existing keyring")
	}
	cfgPath := filepath.Join(dir, "rampart.yaml")
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
policy_dir: ../../internal/demo/policy
oidc:
  dev_provider: true
vault:
  keyring: %s
  store:
    driver: azure
    account_url: %s
    container: rampart-weights
    account_name: %s
    account_key_env: RAMPART_E2E_AZURE_KEY
    create_container: true
    block_size: 1048576
`, addr, filepath.Join(dir, "data"), keyring, accountURL, account)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startServer(t, addr, "server", "--config", cfgPath)
	token := func(user string) string {
		return signInAs(t, addr, user)
	}
	alice, bob, dave, erin := token("alice"), token("bob"), token("dave"), token("erin")
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-writer-frontier-7", "--reason", "checkpoint 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)

	plain := make([]byte, 5<<20+777) // several 1 MiB blocks
	_, _ = rand.Read(plain)
	file := filepath.Join(dir, "model.bin")
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.as(alice, "weights", "put", "frontier-7", file); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}

	// What the container holds is ciphertext: no stretch of the weights appears in it.
	cred, _ := service.NewSharedKeyCredential(account, key)
	svc, err := service.NewClientWithSharedKeyCredential(accountURL+"/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctr := svc.NewContainerClient("rampart-weights")
	var stored int64
	pager := ctr.NewListBlobsFlatPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page.Segment.BlobItems {
			resp, err := ctr.NewBlobClient(*b.Name).DownloadStream(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			stored += int64(len(raw))
			for _, off := range []int{0, 1 << 20, len(plain) - 64} {
				if bytes.Contains(raw, plain[off:off+64]) {
					t.Fatalf("blob %s holds plaintext (offset %d)", *b.Name, off)
				}
			}
		}
	}
	if stored < int64(len(plain)) {
		t.Fatalf("the container holds %d bytes for a %d-byte object", stored, len(plain))
	}

	// Rotation re-wraps the data key; the object still decrypts and verifies.
	if r := c.as(erin, "vault", "rotate"); r.code != 0 || !strings.Contains(r.out, "1 data keys re-wrapped") {
		t.Fatalf("rotate: %+v", r)
	}
	if r := c.as(alice, "vault", "rotate"); r.code != 3 {
		t.Fatalf("a non-admin rotated the vault: %+v", r)
	}
	got := filepath.Join(dir, "fetched.bin")
	if r := c.as(alice, "weights", "get", "frontier-7", "-o", got); r.code != 0 {
		t.Fatalf("get after rotation: %+v", r)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, plain) {
		t.Fatal("the fetched file differs")
	}
	if r := c.as(bob, "weights", "get", "frontier-7", "-o", filepath.Join(dir, "bob.bin")); r.code != 3 {
		t.Fatalf("bob read without a grant: %+v", r)
	}

	// A rekey re-encrypts under a new data key: the blobs of the upload are gone from the
	// container, new ones hold the version, which reads back unchanged.
	names := func() []string {
		var out []string
		pager := ctr.NewListBlobsFlatPager(nil)
		for pager.More() {
			page, err := pager.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range page.Segment.BlobItems {
				out = append(out, *b.Name)
			}
		}
		return out
	}
	if r := c.as(alice, "weights", "rekey", "frontier-7"); r.code != 0 || !strings.Contains(r.out, "Re-encrypted weights/frontier-7 version 1") {
		t.Fatalf("rekey: %+v", r)
	}
	if blobs := names(); len(blobs) != 2 || !strings.HasPrefix(blobs[0], "objects/frontier-7/1/rekey-") || !strings.HasPrefix(blobs[1], "objects/frontier-7/1/rekey-") {
		t.Fatalf("the container after the rekey: %v", blobs)
	}
	if r := c.as(alice, "weights", "get", "frontier-7", "-o", got); r.code != 0 {
		t.Fatalf("get after the rekey: %+v", r)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, plain) {
		t.Fatal("the version changed in the rekey")
	}

	// A wrong account key stops the server at start, saying which container.
	t.Setenv("RAMPART_E2E_AZURE_KEY", "d3Jvbmcga2V5")
	bad := strings.Replace(cfg, addr, freeAddr(t), 1)
	_ = os.WriteFile(cfgPath, []byte(bad), 0o600)
	if r := c.run(nil, "server", "--config", cfgPath); r.code != 1 || !strings.Contains(r.err, `azure container "rampart-weights"`) {
		t.Fatalf("server with a wrong account key: %+v", r)
	}
}

// rampart kms-plugin serves the KMS v2 API on its socket; rampart vault rotate --keyring
// changes the key_id it reports, without a restart. (vault/kmsplugin tests it behind a real
// kube-apiserver.)
func TestKMSPluginCommand(t *testing.T) {
	dir, err := os.MkdirTemp("", "kms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &cli{t: t, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir()}}
	keyring := filepath.Join(dir, "kms-keyring.json")
	c.ok("vault", "init", keyring)
	if r := c.run(nil, "kms-plugin", "--socket", filepath.Join(dir, "x.sock")); r.code != 2 || !strings.Contains(r.err, "--keyring") {
		t.Fatalf("kms-plugin without --keyring: %+v", r)
	}
	socket := filepath.Join(dir, "kms.sock")
	cmd := exec.Command(binary, "kms-plugin", "--socket", socket, "--keyring", keyring)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kc := kmsapi.NewKeyManagementServiceClient(conn)
	status := func() *kmsapi.StatusResponse {
		t.Helper()
		var last error
		for range 100 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := kc.Status(ctx, &kmsapi.StatusRequest{})
			cancel()
			if err == nil {
				return st
			}
			last = err
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("status: %v\n%s", last, logs.String())
		return nil
	}
	first := status()
	if first.Version != "v2" || first.Healthz != "ok" || !strings.HasPrefix(first.KeyId, "local-") {
		t.Fatalf("status: %+v", first)
	}
	enc, err := kc.Encrypt(context.Background(), &kmsapi.EncryptRequest{Uid: "u1", Plaintext: bytes.Repeat([]byte{1}, 32)})
	if err != nil || enc.KeyId != first.KeyId {
		t.Fatalf("encrypt: %v, %v", enc, err)
	}
	time.Sleep(20 * time.Millisecond) // a distinct modification time for the keyring
	if out := c.ok("vault", "rotate", "--keyring", keyring); !strings.Contains(out, "Current key of "+keyring) {
		t.Fatalf("rotate --keyring: %s", out)
	}
	next := status()
	if next.KeyId == first.KeyId || next.Healthz != "ok" {
		t.Fatalf("after rotation: %+v (before %+v)", next, first)
	}
	dec, err := kc.Decrypt(context.Background(), &kmsapi.DecryptRequest{Uid: "u2", Ciphertext: enc.Ciphertext, KeyId: enc.KeyId})
	if err != nil || !bytes.Equal(dec.Plaintext, bytes.Repeat([]byte{1}, 32)) {
		t.Fatalf("decrypt under the previous key: %v", err)
	}
	c.ok("vault", "retire", first.KeyId, "--keyring", keyring)
	status() // reloads the keyring
	if _, err := kc.Decrypt(context.Background(), &kmsapi.DecryptRequest{Uid: "u3", Ciphertext: enc.Ciphertext, KeyId: enc.KeyId}); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("decrypt under a retired key: %v", err)
	}
}
