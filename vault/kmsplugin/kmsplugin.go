// Package kmsplugin serves the Kubernetes KMS v2 API (k8s.io/kms) with the vault's key
// providers, so that a cluster's Secrets are encrypted at rest under Rampart's keys.
//
// The kube-apiserver encrypts each object with a data key of its own and asks the plugin to
// encrypt only that data key's seed (32 bytes), once per seed; it caches the result and calls
// Status about once a minute. The plugin wraps the seed under the provider's current
// key-encryption key with associated data that binds it to this use ("rampart-kms-v2"), so a
// vault object's wrapped data key can never be passed off as a cluster seed or the reverse.
//
// The API's rules, and how they are kept:
//   - key_id is the KEK's id: stable while that key is current, changed only by rotation, never
//     reused (ids are random, 64 bits). A new key_id in Status is how the apiserver learns of a
//     rotation; it then seals new seeds under it, and the old key must keep decrypting until
//     every object was rewritten (kubectl get secrets -A -o json | kubectl replace -f -), and
//     only then be retired.
//   - Status reports healthz "ok" only after a wrap and unwrap round trip under the current key
//     succeeded; otherwise the reason. An unhealthy plugin makes the apiserver's
//     /healthz/kms-providers fail; it never makes it write plaintext.
//   - Decrypt refuses ciphertext sealed under an unknown or retired key, altered ciphertext, and
//     ciphertext from another use (the associated data differs), each with an error that says
//     which.
//   - Ciphertext and key_id stay well under the API's 1 KiB limits; no annotations are used.
package kmsplugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	kms "k8s.io/kms/pkg/service"

	"rampart.dev/rampart/vault"
)

// aad is the associated data of every wrap the plugin makes.
var aad = []byte("rampart-kms-v2")

// maxPlaintext bounds what Encrypt accepts: the apiserver sends a 32-byte seed; anything much
// larger is not from it.
const maxPlaintext = 4096

// Provider is the vault's key provider interface.
type Provider = vault.KeyProvider

// Service implements k8s.io/kms/pkg/service.Service.
type Service struct {
	mu sync.RWMutex
	kp Provider
	// Reload, when set, is called by Status to pick up a keyring changed by another process
	// (rampart vault rotate --keyring): it returns a new provider, or nil if nothing changed.
	Reload func() (Provider, error)
	Log    *slog.Logger
}

// New returns a service over kp.
func New(kp Provider) *Service { return &Service{kp: kp, Log: slog.New(slog.DiscardHandler)} }

func (s *Service) provider() Provider {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.kp
}

// Encrypt implements kms.Service.
func (s *Service) Encrypt(ctx context.Context, uid string, data []byte) (*kms.EncryptResponse, error) {
	if len(data) == 0 || len(data) > maxPlaintext {
		return nil, fmt.Errorf("rampart kms: encrypt %s: %d bytes of plaintext; the apiserver sends a data-key seed of 32", uid, len(data))
	}
	kid, wrapped, err := s.provider().Wrap(ctx, data, aad)
	if err != nil {
		s.Log.Error("kms encrypt failed", "uid", uid, "err", err)
		return nil, fmt.Errorf("rampart kms: encrypt %s: %w", uid, err)
	}
	s.Log.Debug("kms encrypt", "uid", uid, "key_id", kid)
	return &kms.EncryptResponse{Ciphertext: wrapped, KeyID: kid}, nil
}

// Decrypt implements kms.Service.
func (s *Service) Decrypt(ctx context.Context, uid string, req *kms.DecryptRequest) ([]byte, error) {
	if req == nil || req.KeyID == "" {
		return nil, fmt.Errorf("rampart kms: decrypt %s: the request names no key_id", uid)
	}
	if len(req.Annotations) != 0 {
		return nil, fmt.Errorf("rampart kms: decrypt %s: annotations %v were not written by this plugin", uid, keys(req.Annotations))
	}
	pt, err := s.provider().Unwrap(ctx, req.KeyID, req.Ciphertext, aad)
	if err != nil {
		s.Log.Error("kms decrypt failed", "uid", uid, "key_id", req.KeyID, "err", err)
		return nil, fmt.Errorf("rampart kms: decrypt %s: %w", uid, err)
	}
	return pt, nil
}

// Status implements kms.Service: a round trip under the current key decides health.
func (s *Service) Status(ctx context.Context) (*kms.StatusResponse, error) {
	if s.Reload != nil {
		kp, err := s.Reload()
		switch {
		case err != nil:
			s.Log.Error("kms keyring reload failed; keeping the keys loaded before", "err", err)
		case kp != nil:
			s.mu.Lock()
			s.kp = kp
			s.mu.Unlock()
			cur, _ := kp.Current(ctx)
			s.Log.Info("kms keyring reloaded", "key_id", cur)
		}
	}
	kp := s.provider()
	kid, err := kp.Current(ctx)
	if err != nil {
		return nil, fmt.Errorf("rampart kms: status: %w", err)
	}
	probe := make([]byte, 32)
	_, _ = rand.Read(probe)
	health := "ok"
	wkid, wrapped, err := kp.Wrap(ctx, probe, aad)
	if err == nil {
		var back []byte
		back, err = kp.Unwrap(ctx, wkid, wrapped, aad)
		if err == nil && !bytes.Equal(back, probe) {
			err = errors.New("the round trip returned other bytes")
		}
	}
	if err != nil {
		health = "rampart kms: the current key does not round-trip: " + err.Error()
		s.Log.Error("kms unhealthy", "key_id", kid, "err", err)
	}
	return &kms.StatusResponse{Version: "v2", Healthz: health, KeyID: kid}, nil
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// KeyringReloader returns a Reload function for a local keyring file: it reopens the file when
// its modification time or size changed since the last look.
func KeyringReloader(path string) func() (Provider, error) {
	var last os.FileInfo
	if st, err := os.Stat(path); err == nil {
		last = st
	}
	return func() (Provider, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("keyring %s: %w", path, err)
		}
		if last != nil && st.ModTime().Equal(last.ModTime()) && st.Size() == last.Size() {
			return nil, nil
		}
		kp, err := vault.OpenLocalKeyring(path)
		if err != nil {
			return nil, err
		}
		last = st
		return kp, nil
	}
}

// Serve listens on the unix socket and serves until ctx ends, then stops gracefully (bounded
// by a few seconds). A stale socket file from a previous run is replaced; any other file at
// that path is refused.
func Serve(ctx context.Context, socket string, svc *Service) error {
	if st, err := os.Lstat(socket); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return fmt.Errorf("rampart kms: %s exists and is not a socket; refusing to remove it", socket)
		}
		if err := os.Remove(socket); err != nil {
			return fmt.Errorf("rampart kms: remove the stale socket %s: %w", socket, err)
		}
	}
	g := kms.NewGRPCService(socket, 10*time.Second, svc)
	errc := make(chan error, 1)
	go func() { errc <- g.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("rampart kms: serve on %s: %w", socket, err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.Shutdown(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Close()
	}
	_ = os.Remove(socket)
	return nil
}
