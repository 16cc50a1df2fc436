package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"rampart.dev/rampart/internal/secretfile"
)

// KeyProvider holds key-encryption keys (KEKs) and wraps data keys with them. The local
// provider keeps KEKs in a file; a cloud KMS (Azure Key Vault, AWS KMS, GCP KMS) implements the
// same three methods with its wrap/unwrap operations, and the KEK never leaves it.
type KeyProvider interface {
	// Wrap encrypts dek under the current KEK, binding aad (the object's header binding); it
	// returns the KEK's id.
	Wrap(ctx context.Context, dek, aad []byte) (keyID string, wrapped []byte, err error)
	// Unwrap decrypts a wrapped DEK with the named KEK. Errors wrap ErrKey when that KEK
	// cannot be used (unknown, retired, provider unreachable), and ErrCorrupt when wrapped is
	// not authentic under it with aad (altered, or bound to other data).
	Unwrap(ctx context.Context, keyID string, wrapped, aad []byte) ([]byte, error)
	// Current is the id of the KEK new wraps use.
	Current(ctx context.Context) (string, error)
}

// LocalKey is one KEK of a local keyring.
type LocalKey struct {
	ID        string    `json:"id"`
	Key       []byte    `json:"key"` // 32 bytes, base64 in the file
	CreatedAt time.Time `json:"created_at"`
	// RetiredAt is set when the key may no longer unwrap (after a rotation re-wrapped every DEK).
	RetiredAt time.Time `json:"retired_at,omitzero"`
}

type keyringFile struct {
	Current string     `json:"current"`
	Keys    []LocalKey `json:"keys"`
}

// LocalProvider keeps KEKs in a file readable only by its owner (rampart vault init creates it).
// Wraps are AES-256-GCM with a random nonce and the header binding as associated data.
type LocalProvider struct {
	path string
	mu   sync.RWMutex
	ring keyringFile
}

const wrapInfo = "rampart-vault-dek-v1"

// InitLocalKeyring creates a keyring file with one fresh KEK; it refuses to overwrite one.
func InitLocalKeyring(path string) (*LocalProvider, error) {
	if _, err := os.Stat(path); err == nil {
		return nil, fmt.Errorf("vault: keyring %s already exists; refusing to replace it (its keys unwrap existing objects)", path)
	}
	p := &LocalProvider{path: path}
	k := newLocalKey()
	p.ring = keyringFile{Current: k.ID, Keys: []LocalKey{k}}
	if err := p.save(); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenLocalKeyring reads a keyring file.
func OpenLocalKeyring(path string) (*LocalProvider, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("vault: keyring %s does not exist; create it with `rampart vault init`", path)
	} else if err != nil {
		return nil, fmt.Errorf("vault: read keyring: %w", err)
	}
	if err := secretfile.Check(path, "vault: keyring"); err != nil {
		return nil, err
	}
	p := &LocalProvider{path: path}
	if err := json.Unmarshal(b, &p.ring); err != nil {
		return nil, fmt.Errorf("vault: keyring %s is damaged: %v", path, err)
	}
	found := false
	for _, k := range p.ring.Keys {
		if len(k.Key) != 32 {
			return nil, fmt.Errorf("vault: keyring %s: key %s is %d bytes, not 32", path, k.ID, len(k.Key))
		}
		found = found || (k.ID == p.ring.Current && k.RetiredAt.IsZero())
	}
	if !found {
		return nil, fmt.Errorf("vault: keyring %s: the current key %q is missing or retired", path, p.ring.Current)
	}
	return p, nil
}

func newLocalKey() LocalKey {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	return LocalKey{ID: "local-" + hex.EncodeToString(id), Key: k, CreatedAt: time.Now().UTC()}
}

func (p *LocalProvider) save() error {
	b, err := json.MarshalIndent(p.ring, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.path)
}

func (p *LocalProvider) key(id string) (LocalKey, error) {
	for _, k := range p.ring.Keys {
		if k.ID == id {
			if !k.RetiredAt.IsZero() {
				return k, fmt.Errorf("%w: key %s was retired at %s", ErrKey, id, k.RetiredAt.Format(time.RFC3339))
			}
			return k, nil
		}
	}
	return LocalKey{}, fmt.Errorf("%w: key %s is not in the keyring %s", ErrKey, id, p.path)
}

func kekAEAD(k LocalKey) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(k.Key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func wrapAAD(keyID string, aad []byte) []byte {
	return append([]byte(wrapInfo+"\x00"+keyID+"\x00"), aad...)
}

// Wrap implements KeyProvider.
func (p *LocalProvider) Wrap(_ context.Context, dek, aad []byte) (string, []byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	k, err := p.key(p.ring.Current)
	if err != nil {
		return "", nil, err
	}
	a, err := kekAEAD(k)
	if err != nil {
		return "", nil, err
	}
	n := make([]byte, a.NonceSize())
	_, _ = rand.Read(n)
	return k.ID, a.Seal(n, n, dek, wrapAAD(k.ID, aad)), nil
}

// Unwrap implements KeyProvider.
func (p *LocalProvider) Unwrap(_ context.Context, keyID string, wrapped, aad []byte) ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	k, err := p.key(keyID)
	if err != nil {
		return nil, err
	}
	a, err := kekAEAD(k)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%w: the wrapped key is %d bytes, too short", ErrCorrupt, len(wrapped))
	}
	dek, err := a.Open(nil, wrapped[:a.NonceSize()], wrapped[a.NonceSize():], wrapAAD(keyID, aad))
	if err != nil {
		return nil, fmt.Errorf("%w: the wrapped key does not open with key %s (altered, or bound to other data)", ErrCorrupt, keyID)
	}
	return dek, nil
}

// Current implements KeyProvider.
func (p *LocalProvider) Current(context.Context) (string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ring.Current, nil
}

// Rotate adds a fresh KEK and makes it current; older keys still unwrap until retired.
func (p *LocalProvider) Rotate() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := newLocalKey()
	p.ring.Keys = append(p.ring.Keys, k)
	prev := p.ring.Current
	p.ring.Current = k.ID
	if err := p.save(); err != nil {
		p.ring.Keys, p.ring.Current = p.ring.Keys[:len(p.ring.Keys)-1], prev
		return "", err
	}
	return k.ID, nil
}

// Retire stops a key from unwrapping (call it after every DEK was re-wrapped). The current key
// cannot be retired.
func (p *LocalProvider) Retire(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id == p.ring.Current {
		return fmt.Errorf("vault: %s is the current key; rotate first", id)
	}
	for i, k := range p.ring.Keys {
		if k.ID == id {
			if k.RetiredAt.IsZero() {
				p.ring.Keys[i].RetiredAt = time.Now().UTC()
				return p.save()
			}
			return nil
		}
	}
	return fmt.Errorf("vault: key %s is not in the keyring", id)
}

// Keys lists the keyring without the key material.
func (p *LocalProvider) Keys() []LocalKey {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]LocalKey, len(p.ring.Keys))
	for i, k := range p.ring.Keys {
		k.Key = nil
		out[i] = k
	}
	return out
}
