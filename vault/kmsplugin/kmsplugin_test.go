package kmsplugin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kms "k8s.io/kms/pkg/service"

	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/kmsplugin"
)

func keyring(t *testing.T) (string, *vault.LocalProvider) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kms-keyring.json")
	kp, err := vault.InitLocalKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, kp
}

func TestRoundTripAndRefusals(t *testing.T) {
	ctx := context.Background()
	_, kp := keyring(t)
	s := kmsplugin.New(kp)
	seed := bytes.Repeat([]byte{7}, 32)
	enc, err := s.Encrypt(ctx, "uid-1", seed)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := kp.Current(ctx)
	if enc.KeyID != cur || len(enc.Ciphertext) > 1024 || len(enc.KeyID) > 1024 || bytes.Contains(enc.Ciphertext, seed) {
		t.Fatalf("encrypt: key %q (current %q), %d bytes", enc.KeyID, cur, len(enc.Ciphertext))
	}
	got, err := s.Decrypt(ctx, "uid-2", &kms.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID})
	if err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("decrypt: %x, %v", got, err)
	}

	flipped := bytes.Clone(enc.Ciphertext)
	flipped[len(flipped)-1] ^= 1
	// A vault object's wrapped data key (other associated data) is not a cluster seed.
	_, vaultWrapped, _ := kp.Wrap(ctx, seed, []byte("object binding"))
	for name, c := range map[string]struct {
		req  *kms.DecryptRequest
		want string
	}{
		"altered":     {&kms.DecryptRequest{Ciphertext: flipped, KeyID: enc.KeyID}, "does not open"},
		"unknown key": {&kms.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: "local-0000000000000000"}, "not in the keyring"},
		"no key id":   {&kms.DecryptRequest{Ciphertext: enc.Ciphertext}, "names no key_id"},
		"truncated":   {&kms.DecryptRequest{Ciphertext: enc.Ciphertext[:10], KeyID: enc.KeyID}, "too short"},
		"empty":       {&kms.DecryptRequest{KeyID: enc.KeyID}, "too short"},
		"other use":   {&kms.DecryptRequest{Ciphertext: vaultWrapped, KeyID: enc.KeyID}, "does not open"},
		"annotations": {&kms.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: enc.KeyID, Annotations: map[string][]byte{"x.example.com": nil}}, "not written by this plugin"},
		"nil request": {nil, "names no key_id"},
	} {
		if _, err := s.Decrypt(ctx, "uid", c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	for _, n := range []int{0, 5000} {
		if _, err := s.Encrypt(ctx, "uid", make([]byte, n)); err == nil {
			t.Errorf("encrypt of %d bytes accepted", n)
		}
	}

	// Rotation: a new key_id, old ciphertext still decrypts until the old key is retired.
	old := enc.KeyID
	next, err := kp.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Status(ctx)
	if err != nil || st.KeyID != next || st.KeyID == old || st.Healthz != "ok" || st.Version != "v2" {
		t.Fatalf("status after rotate: %+v, %v", st, err)
	}
	if _, err := s.Decrypt(ctx, "uid", &kms.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: old}); err != nil {
		t.Fatalf("the previous key no longer decrypts before retirement: %v", err)
	}
	if err := kp.Retire(old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(ctx, "uid", &kms.DecryptRequest{Ciphertext: enc.Ciphertext, KeyID: old}); err == nil || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("a retired key decrypted: %v", err)
	}
}

// brokenProvider wraps but cannot unwrap: Status must say unhealthy, not ok.
type brokenProvider struct{ vault.KeyProvider }

func (brokenProvider) Unwrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: the key service is unreachable", vault.ErrKey)
}

func TestStatusUnhealthy(t *testing.T) {
	_, kp := keyring(t)
	st, err := kmsplugin.New(brokenProvider{kp}).Status(context.Background())
	if err != nil || st.Healthz == "ok" || !strings.Contains(st.Healthz, "unreachable") {
		t.Fatalf("status of a provider that cannot unwrap: %+v, %v", st, err)
	}
}

// A rotation made by another process (rampart vault rotate --keyring) reaches the plugin at its
// next Status; a damaged keyring keeps the keys loaded before.
func TestReload(t *testing.T) {
	ctx := context.Background()
	path, kp := keyring(t)
	s := kmsplugin.New(kp)
	s.Reload = kmsplugin.KeyringReloader(path)
	first, _ := kp.Current(ctx)
	if st, _ := s.Status(ctx); st.KeyID != first {
		t.Fatalf("status %q, want %q", st.KeyID, first)
	}
	other, err := vault.OpenLocalKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // a distinct modification time
	next, err := other.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx); st.KeyID != next {
		t.Fatalf("after a rotation elsewhere, status %q, want %q", st.KeyID, next)
	}
	if err := os.WriteFile(path, []byte("{damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx); st.KeyID != next || st.Healthz != "ok" {
		t.Fatalf("a damaged keyring changed the loaded keys: %+v", st)
	}
}

// countingProvider counts the wraps and unwraps the apiserver asks for.
type countingProvider struct {
	vault.KeyProvider
	mu             sync.Mutex
	wraps, unwraps int
}

func (c *countingProvider) Wrap(ctx context.Context, dek, aad []byte) (string, []byte, error) {
	c.mu.Lock()
	c.wraps++
	c.mu.Unlock()
	return c.KeyProvider.Wrap(ctx, dek, aad)
}

func (c *countingProvider) Unwrap(ctx context.Context, id string, w, aad []byte) ([]byte, error) {
	c.mu.Lock()
	c.unwraps++
	c.mu.Unlock()
	return c.KeyProvider.Unwrap(ctx, id, w, aad)
}

// The plugin behind a real kube-apiserver: a Secret is stored in etcd as KMS v2 ciphertext
// (k8s:enc:kms:v2:rampart:) that holds none of its data, and reads back through the API.
func TestKubeAPIServerEncryptsSecrets(t *testing.T) {
	dir, err := os.MkdirTemp("", "kms") // a short path: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "kms.sock")
	_, kp := keyring(t)
	counting := &countingProvider{KeyProvider: kp}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- kmsplugin.Serve(ctx, socket, kmsplugin.New(counting)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	waitForSocket(t, socket)

	cfg := filepath.Join(dir, "encryption.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: v2
          name: rampart
          endpoint: unix://`+socket+`
          timeout: 5s
      - identity: {}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := kubetest.Start(t, kubetest.APIServerFlag("encryption-provider-config", cfg))
	ns := env.Namespace(t)
	secret := "the frontier-7 eval credentials: 5f1c0aa7d2"
	_, err = env.Clientset.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "eval-creds"},
		Data:       map[string][]byte{"token": []byte(secret)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	raw := etcdGet(t, env.EtcdEndpoint, kubetest.EtcdPrefix+"/secrets/"+ns+"/eval-creds")
	if !bytes.HasPrefix(raw, []byte("k8s:enc:kms:v2:rampart:")) {
		t.Fatalf("etcd holds %q…, want the k8s:enc:kms:v2:rampart: prefix", raw[:min(len(raw), 40)])
	}
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(base64.StdEncoding.EncodeToString([]byte(secret)))) {
		t.Fatal("etcd holds the secret's data in the clear")
	}
	got, err := env.Clientset.CoreV1().Secrets(ns).Get(context.Background(), "eval-creds", metav1.GetOptions{})
	if err != nil || string(got.Data["token"]) != secret {
		t.Fatalf("read back: %v, %v", got, err)
	}
	counting.mu.Lock()
	wraps := counting.wraps
	counting.mu.Unlock()
	if wraps == 0 {
		t.Fatal("the apiserver never asked the plugin to encrypt")
	}
	// ConfigMaps are not in the configuration: stored as they are.
	if _, err := env.Clientset.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Data: map[string]string{"k": "visible"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if raw := etcdGet(t, env.EtcdEndpoint, kubetest.EtcdPrefix+"/configmaps/"+ns+"/plain"); bytes.HasPrefix(raw, []byte("k8s:enc:")) {
		t.Fatal("a ConfigMap was encrypted though the configuration names only secrets")
	}
}

func waitForSocket(t *testing.T, path string) {
	t.Helper()
	for range 200 {
		if st, err := os.Stat(path); err == nil && st.Mode().Type() == os.ModeSocket {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the plugin did not create %s", path)
}

// etcdGet reads a key through etcd's JSON gateway (/v3/kv/range).
func etcdGet(t *testing.T, endpoint, key string) []byte {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))})
	resp, err := http.Post(endpoint+"/v3/kv/range", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		KVs []struct {
			Value []byte `json:"value"`
		} `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("etcd range %s: %d, %v", key, resp.StatusCode, err)
	}
	if len(out.KVs) != 1 {
		t.Fatalf("etcd has no key %s", key)
	}
	return out.KVs[0].Value
}

func TestServeRefusesNonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, kp := keyring(t)
	err := kmsplugin.Serve(context.Background(), path, kmsplugin.New(kp))
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("serve over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Fatal("the file was replaced")
	}
}
