package secrets

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"rampart.dev/rampart/vault"
)

// sealInfo versions the construction; it is the first part of the associated data.
const sealInfo = "rampart-secret-v1"

// binding is the associated data of a version's value and of its data key's wrap:
// "rampart-secret-v1" 0x00 name 0x00 uint64be(version). Names contain no NUL (CheckName), so
// no two (name, version) pairs share a binding.
func binding(name string, version uint64) []byte {
	b := make([]byte, 0, len(sealInfo)+len(name)+10)
	b = append(b, sealInfo...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, version)
}

// seal encrypts value as version of name under a fresh data key wrapped by kp's current KEK.
func seal(ctx context.Context, kp vault.KeyProvider, name string, version uint64, value []byte) (keyID string, wrapped, ct []byte, err error) {
	dek := make([]byte, 32)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return "", nil, nil, err
	}
	aad := binding(name, version)
	if keyID, wrapped, err = kp.Wrap(ctx, dek, aad); err != nil {
		return "", nil, nil, fmt.Errorf("%w: wrap the data key: %v", ErrUnavailable, err)
	}
	a, err := gcm(dek)
	if err != nil {
		return "", nil, nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(value)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, nil, err
	}
	return keyID, wrapped, a.Seal(nonce, nonce, value, aad), nil
}

// open decrypts a sealed version. The error never contains plaintext.
func open(ctx context.Context, kp vault.KeyProvider, v Sealed) ([]byte, error) {
	m := v.Meta
	if m.State != StateActive || len(v.WrappedDEK) == 0 {
		return nil, fmt.Errorf("%w: %s version %d is %s", ErrNotFound, Resource(m.Name), m.Version, m.State)
	}
	aad := binding(m.Name, m.Version)
	dek, err := kp.Unwrap(ctx, m.KeyID, v.WrappedDEK, aad)
	if err != nil {
		if errors.Is(err, vault.ErrCorrupt) {
			return nil, corrupt(v, "its data key does not unwrap")
		}
		return nil, fmt.Errorf("%w: unwrap the data key of %s version %d: %v", ErrUnavailable, Resource(m.Name), m.Version, err)
	}
	defer clear(dek)
	a, err := gcm(dek)
	if err != nil {
		return nil, err
	}
	if len(v.Ciphertext) < a.NonceSize()+a.Overhead() {
		return nil, corrupt(v, "its ciphertext is truncated")
	}
	n := a.NonceSize()
	plain, err := a.Open(nil, v.Ciphertext[:n], v.Ciphertext[n:], aad)
	if err != nil {
		return nil, corrupt(v, "its value does not decrypt")
	}
	return plain, nil
}

func corrupt(v Sealed, what string) error {
	return fmt.Errorf("%w: %s version %d: %s (altered in the database, or copied from another secret or version); restore the row from backup or put a new version",
		ErrCorrupt, Resource(v.Meta.Name), v.Meta.Version, what)
}

func gcm(key []byte) (cipher.AEAD, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}
