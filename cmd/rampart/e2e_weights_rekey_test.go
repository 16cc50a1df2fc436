package main_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/weights"
)

// releaseKey asks the server at addr for the data key of weights/frontier-7, sealed to a fresh
// ephemeral key, as a workload does, and opens it.
func releaseKey(t *testing.T, addr, token string) (*vault.Header, []byte) {
	t.Helper()
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"public_key": base64.StdEncoding.EncodeToString(eph.PublicKey().Bytes())})
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/weights/frontier-7/key", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var kr weights.KeyRelease
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&kr) != nil {
		t.Fatalf("key release: %d", resp.StatusCode)
	}
	h, dek, err := weights.OpenKeyRelease(kr, eph)
	if err != nil {
		t.Fatal(err)
	}
	return h, dek
}

// decryptsStored reports whether a released key decrypts the ciphertext the server streams
// now (GET /v1/weights/frontier-7/segments), and returns the plaintext if it does.
func decryptsStored(t *testing.T, addr, token string, h *vault.Header, dek []byte) ([]byte, bool) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/weights/frontier-7/segments", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("segments: %d", resp.StatusCode)
	}
	r, err := vault.NewReader(resp.Body, h, dek)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, vault.ErrCorrupt) {
		t.Fatal(err)
	}
	return plain, err == nil
}

// Through the binary: a data key released to a workload decrypts the stored ciphertext until
// `rampart weights rekey`, and nothing stored after it; the version reads and verifies as
// before, under the same number; a rekey needs write, and is in the ledger.
func TestWeightsRekey(t *testing.T) {
	addr := freeAddr(t)
	data := filepath.Join(t.TempDir(), "data")
	startServer(t, addr, "dev", "--addr", addr, "--data", data)
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	login := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, dave, erin := login("alice"), login("bob"), login("dave"), login("erin")
	id := reqID.FindString(c.as(alice, "request", "create", "--role", "weights-writer-frontier-7", "--reason", "checkpoint 4411", "--duration", "1h").out)
	c.as(bob, "request", "approve", id)
	c.as(dave, "request", "approve", id)
	dir := t.TempDir()
	file := filepath.Join(dir, "model.bin")
	plain := make([]byte, 3<<20+4321)
	_, _ = rand.Read(plain)
	if err := os.WriteFile(file, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := c.as(alice, "weights", "put", "frontier-7", file); r.code != 0 {
		t.Fatalf("put: %+v", r)
	}
	h, dek := releaseKey(t, addr, alice)
	if got, ok := decryptsStored(t, addr, alice, h, dek); !ok || !bytes.Equal(got, plain) {
		t.Fatal("the released key does not decrypt the stored ciphertext before the rekey")
	}
	if r := c.as(bob, "weights", "rekey", "frontier-7"); r.code == 0 || !strings.Contains(r.err, "may not write weights/frontier-7") {
		t.Fatalf("rekey without a grant: %+v", r)
	}

	r := c.as(alice, "weights", "rekey", "frontier-7")
	if r.code != 0 || !strings.Contains(r.out, "Re-encrypted weights/frontier-7 version 1 under a new data key") {
		t.Fatalf("rekey: %+v", r)
	}
	if _, ok := decryptsStored(t, addr, alice, h, dek); ok {
		t.Fatal("the key released before the rekey still decrypts what is stored")
	}
	if _, err := os.Stat(filepath.Join(data, "vault", "objects", "frontier-7", "1", "data#")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ciphertext under the old data key is still stored: %v", err)
	}
	h2, dek2 := releaseKey(t, addr, alice)
	if got, ok := decryptsStored(t, addr, alice, h2, dek2); !ok || !bytes.Equal(got, plain) {
		t.Fatal("a key released after the rekey does not decrypt the version")
	}
	got := filepath.Join(dir, "fetched.bin")
	if r := c.as(alice, "weights", "get", "frontier-7", "--version", "1", "-o", got); r.code != 0 {
		t.Fatalf("get after the rekey: %+v", r)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, plain) {
		t.Fatal("the version changed")
	}
	if r := c.as(alice, "weights", "verify", "frontier-7"); r.code != 0 || !strings.Contains(r.out, "OK") {
		t.Fatalf("verify after the rekey: %+v", r)
	}
	tail := c.as(erin, "audit", "tail", "-n", "50").out
	if !strings.Contains(tail, "weights.rekey") || !strings.Contains(tail, "alice re-encrypted weights/frontier-7 version 1") {
		t.Fatalf("the ledger lacks the rekey:\n%s", tail)
	}
}
