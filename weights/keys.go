package weights

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
)

// KeyRelease is an object's data key sealed to a workload's ephemeral X25519 key (HPKE, RFC
// 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM), with what it needs to use it.
type KeyRelease struct {
	Object Object `json:"object"`
	// Header is the object's vault header (hex); its binding is the HPKE info.
	Header string `json:"header"`
	// Sealed is the HPKE ciphertext of the data key: enc ‖ ct (hex).
	Sealed string `json:"sealed"`
	Suite  string `json:"suite"`
}

// HPKESuite names the suite of KeyRelease.
const HPKESuite = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"

// ReleaseKey seals a version's data key to the caller's ephemeral X25519 public key, so that a
// workload decrypts locally. It needs read; every release is a ledger entry.
func (s *Service) ReleaseKey(ctx context.Context, p identity.Principal, name string, version uint64, publicKey []byte) (KeyRelease, error) {
	if err := CheckName(name); err != nil {
		return KeyRelease{}, err
	}
	pub, err := ecdh.X25519().NewPublicKey(publicKey)
	if err != nil {
		return KeyRelease{}, fmt.Errorf("%w: public_key must be a 32-byte X25519 public key: %v", ErrInvalid, err)
	}
	// A low-order point (such as 32 zero bytes) makes every shared secret zero: refuse it as
	// input, before anything is looked up or sealed.
	if probe, err := ecdh.X25519().GenerateKey(rand.Reader); err == nil {
		if _, err := probe.ECDH(pub); err != nil {
			return KeyRelease{}, fmt.Errorf("%w: public_key is a low-order X25519 point, not a usable public key: %v", ErrInvalid, err)
		}
	}
	d, err := s.authorize(ctx, p, ActionRead, name)
	if err != nil {
		return KeyRelease{}, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return KeyRelease{}, err
	}
	if err := s.checkManifest(o); err != nil {
		return KeyRelease{}, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return KeyRelease{}, err
	}
	dek, err := s.dataKey(ctx, o, h)
	if err != nil {
		return KeyRelease{}, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return KeyRelease{}, fmt.Errorf("%w: public_key: %v", ErrInvalid, err)
	}
	binding := h.Binding()
	sealed, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), binding[:], dek)
	if err != nil {
		return KeyRelease{}, err
	}
	hb, _ := h.MarshalBinary()
	if err := s.Record(ctx, audit.Event{Code: "weights.key_release", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(name)},
		Message: fmt.Sprintf("%s received the data key of %s version %d (%d bytes of ciphertext it can now decrypt)", p.Subject, Resource(name), o.Version, o.Size),
		Details: map[string]any{"version": o.Version, "bytes": o.Size, "grant_id": d.GrantID}}); err != nil {
		return KeyRelease{}, fmt.Errorf("%w: record the key release: %v", ErrUnavailable, err)
	}
	return KeyRelease{Object: o, Header: hex.EncodeToString(hb), Sealed: hex.EncodeToString(sealed), Suite: HPKESuite}, nil
}

// OpenKeyRelease is what a workload runs: it opens a KeyRelease with its ephemeral private key
// and returns the parsed header and the data key.
func OpenKeyRelease(kr KeyRelease, priv *ecdh.PrivateKey) (*vault.Header, []byte, error) {
	hb, err := hex.DecodeString(kr.Header)
	if err != nil {
		return nil, nil, err
	}
	h, err := vault.ReadHeader(bytes.NewReader(hb))
	if err != nil {
		return nil, nil, err
	}
	sealed, err := hex.DecodeString(kr.Sealed)
	if err != nil {
		return nil, nil, err
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	binding := h.Binding()
	dek, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), binding[:], sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("the key release does not open with this key: %w", err)
	}
	return h, dek, nil
}

// KeyRing is a key provider whose keys Rampart manages itself (the local provider): it can add
// a new current KEK and retire old ones. Cloud KMS rotate their keys themselves.
type KeyRing interface {
	Rotate() (string, error)
	Retire(id string) error
}

// KeyUser is another user of the vault's keyring, with data keys of its own wrapped by it.
type KeyUser interface {
	// Rewrap re-wraps every data key not under the current KEK, and says how many it did.
	Rewrap(ctx context.Context) (int, error)
	// UsesKey returns an error naming what still uses keyID, or nil.
	UsesKey(ctx context.Context, keyID string) error
}

// Rotate makes a new KEK current (for a KeyRing provider) and re-wraps every stored data key
// under the current KEK, rewriting only headers, then the data keys of its KeyUsers. It returns
// the key id and how many data keys were re-wrapped.
func (s *Service) Rotate(ctx context.Context, actor string) (string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kr, ok := s.Keys.(KeyRing); ok {
		if _, err := kr.Rotate(); err != nil {
			return "", 0, fmt.Errorf("add a key-encryption key: %w", err)
		}
	}
	n, err := s.rewrapAll(ctx)
	for _, u := range s.KeyUsers {
		if err != nil {
			break
		}
		var k int
		k, err = u.Rewrap(ctx)
		n += k
	}
	cur, _ := s.Keys.Current(ctx)
	if rerr := s.Record(ctx, audit.Event{Code: "vault.rotate", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: actor, Message: fmt.Sprintf("%s rotated the vault to key %s and re-wrapped %d data keys", actor, cur, n),
		Details: map[string]any{"key_id": cur, "rewrapped": n, "complete": err == nil}}); rerr != nil && err == nil {
		err = rerr
	}
	return cur, n, err
}

// Retire stops a KEK from unwrapping, after checking that no stored object still uses it.
func (s *Service) Retire(ctx context.Context, actor, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	kr, ok := s.Keys.(KeyRing)
	if !ok {
		return fmt.Errorf("%w: this key provider manages its keys itself; retire them there", ErrInvalid)
	}
	// Everything that can be refused is refused before the ledger entry is written.
	if lister, ok := s.Keys.(interface{ Keys() []vault.LocalKey }); ok {
		var found *vault.LocalKey
		for _, k := range lister.Keys() {
			if k.ID == keyID {
				found = &k
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("%w: no key-encryption key %q in the keyring", ErrNotFound, keyID)
		case !found.RetiredAt.IsZero():
			return fmt.Errorf("%w: key %s was already retired at %s", ErrConflict, keyID, found.RetiredAt.Format(time.RFC3339))
		}
	}
	if cur, err := s.Keys.Current(ctx); err == nil && cur == keyID {
		return fmt.Errorf("%w: %s is the current key; rotate first", ErrConflict, keyID)
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, o := range all {
		// An upload in progress may have wrapped its key under this one.
		// (An upload in progress re-wraps under the current key before it stores its header,
		// under the same lock; see Put.)
		if o.State == StateReady && o.KeyID == keyID {
			return fmt.Errorf("%w: %s version %d still uses key %s; run rotate first", ErrConflict, Resource(o.Name), o.Version, keyID)
		}
	}
	for _, u := range s.KeyUsers {
		if err := u.UsesKey(ctx, keyID); err != nil {
			return fmt.Errorf("%w: %v", ErrConflict, err)
		}
	}
	if err := s.Record(ctx, audit.Event{Code: "vault.retire", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: actor, Message: fmt.Sprintf("%s retired vault key %s", actor, keyID),
		Details: map[string]any{"key_id": keyID}}); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return kr.Retire(keyID)
}

func (s *Service) rewrapAll(ctx context.Context) (int, error) {
	cur, err := s.Keys.Current(ctx)
	if err != nil {
		return 0, err
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range all {
		if o.State != StateReady {
			continue
		}
		h, err := s.header(ctx, o)
		if err != nil {
			return n, err
		}
		if h.KeyID == cur {
			// A rotation stopped between the header and the metadata: finish it, or Retire
			// would refuse the old key for ever.
			if o.KeyID != cur {
				if err := s.Meta.SetKeyID(ctx, o.Name, o.Version, cur); err != nil {
					return n, err
				}
			}
			continue
		}
		nh, err := vault.Rewrap(ctx, s.Keys, h)
		if err != nil {
			return n, fmt.Errorf("re-wrap %s version %d: %w", Resource(o.Name), o.Version, corrupt(o, err))
		}
		hb, _ := nh.MarshalBinary()
		if _, err := s.Blobs.Put(ctx, headerBlob(o), bytes.NewReader(hb)); err != nil {
			return n, err
		}
		if err := s.Meta.SetKeyID(ctx, o.Name, o.Version, nh.KeyID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
