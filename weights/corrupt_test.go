package weights_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/weights"
)

// corruption is one way a stored version goes bad, and the part the vault must name.
type corruption struct {
	name string
	part string
	// edit damages the stored version of e (version 1 of frontier-7, four segments).
	edit func(t *testing.T, e *env)
}

// headerPath and dataPath are the stored blobs of frontier-7 version 1 in a filesystem store.
func (e *env) headerPath() string {
	return filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "header#")
}
func (e *env) dataPath() string {
	return filepath.Join(e.dir, "blobs", "objects", "frontier-7", "1", "data#")
}

func editFile(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// editHeader rewrites the stored header with edit applied to its parsed form.
func editHeader(t *testing.T, e *env, edit func(h *vault.Header)) {
	t.Helper()
	editFile(t, e.headerPath(), func(b []byte) []byte {
		h, err := vault.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		edit(h)
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return out
	})
}

func (e *env) sql(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := e.st.SQL().Exec(query, args...); err != nil {
		t.Fatal(err)
	}
}

var corruptions = []corruption{
	// Before, these three were "key … is not in the keyring" or "does not open" (ErrKey: 503,
	// retry later), although the object can never be read again.
	{"header key id edited", weights.PartHeader, func(t *testing.T, e *env) {
		editHeader(t, e, func(h *vault.Header) { h.KeyID = "local-00000000deadbeef" })
	}},
	{"header nonce prefix edited", weights.PartHeader, func(t *testing.T, e *env) {
		editHeader(t, e, func(h *vault.Header) { h.NoncePrefix[3] ^= 1 })
	}},
	{"header wrapped key edited", weights.PartHeader, func(t *testing.T, e *env) {
		editHeader(t, e, func(h *vault.Header) { h.WrappedDEK[len(h.WrappedDEK)-1] ^= 1 })
	}},
	{"header segment size edited", weights.PartHeader, func(t *testing.T, e *env) {
		editHeader(t, e, func(h *vault.Header) { h.SegmentSize *= 2 })
	}},
	{"header truncated", weights.PartHeader, func(t *testing.T, e *env) {
		editFile(t, e.headerPath(), func(b []byte) []byte { return b[:len(b)/2] })
	}},
	{"header missing", weights.PartHeader, func(t *testing.T, e *env) {
		if err := os.Remove(e.headerPath()); err != nil {
			t.Fatal(err)
		}
	}},
	// Before, the first segment failing reached a client as a connection closed before any
	// answer ("cannot reach the server").
	{"first segment flipped", "segment 0", func(t *testing.T, e *env) {
		editFile(t, e.dataPath(), func(b []byte) []byte { b[10] ^= 1; return b })
	}},
	{"data missing", "segment 0", func(t *testing.T, e *env) {
		if err := os.Remove(e.dataPath()); err != nil {
			t.Fatal(err)
		}
	}},
	{"third segment flipped", "segment 2", func(t *testing.T, e *env) {
		editFile(t, e.dataPath(), func(b []byte) []byte { b[2*(vault.MinSegmentSize+vault.TagSize)+7] ^= 1; return b })
	}},
	{"last segment cut off", "segment 2", func(t *testing.T, e *env) {
		editFile(t, e.dataPath(), func(b []byte) []byte { return b[:3*(vault.MinSegmentSize+vault.TagSize)] })
	}},
	{"manifest signature edited", weights.PartManifest, func(t *testing.T, e *env) {
		e.sql(t, `UPDATE vault_objects SET manifest = replace(manifest, 'size ', 'size 1') WHERE name = 'frontier-7'`)
	}},
	{"metadata differs from the manifest", weights.PartManifest, func(t *testing.T, e *env) {
		e.sql(t, `UPDATE vault_objects SET size = size - 1 WHERE name = 'frontier-7'`)
	}},
}

// Every kind of corruption is reported as a corrupt version, naming the part: by Get (before
// any byte for the header, the manifest and the first segment; at the segment for a later one),
// by Verify (a result, not an error), by a key release and by a ciphertext stream.
func TestCorruptionNamesThePart(t *testing.T) {
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			alice := person("alice")
			e.grant("alice", "weights-writer-frontier-7", time.Hour)
			plain := random(3*vault.MinSegmentSize + 99) // four segments
			if _, err := e.v.Put(e.ctx, alice, "frontier-7", bytes.NewReader(plain)); err != nil {
				t.Fatal(err)
			}
			c.edit(t, e)
			isPart := func(what string, err error) {
				t.Helper()
				var ce *weights.CorruptError
				if !errors.As(err, &ce) || ce.Part != c.part || ce.Name != "frontier-7" || ce.Version != 1 || !errors.Is(err, vault.ErrCorrupt) ||
					!strings.Contains(err.Error(), "weights/frontier-7 version 1 is corrupt: "+c.part+": ") {
					t.Fatalf("%s: %v, want a corrupt %s", what, err, c.part)
				}
			}

			dl, err := e.v.Get(e.ctx, alice, "frontier-7", 0)
			if strings.HasPrefix(c.part, "segment ") && c.part != "segment 0" {
				if err != nil {
					t.Fatalf("get: %v", err)
				}
				got, err := io.ReadAll(dl)
				isPart("read", err)
				if !bytes.HasPrefix(plain, got) || len(got) != 2*vault.MinSegmentSize {
					t.Fatalf("read %d bytes before the bad segment", len(got))
				}
				dl.Close()
			} else {
				isPart("get", err)
			}
			res, err := e.v.Verify(e.ctx, alice, "frontier-7", 0)
			if err != nil || res.OK || res.Part != c.part || !strings.Contains(res.Problem, "is corrupt: "+c.part) || res.Object.Version != 1 {
				t.Fatalf("verify: %+v %v", res, err)
			}
			if c.part == weights.PartHeader || c.part == weights.PartManifest {
				_, err := e.v.ReleaseKey(e.ctx, alice, "frontier-7", 0, x25519Public(t))
				isPart("key release", err)
			}
			if c.part == weights.PartManifest || c.name == "data missing" {
				_, _, err := e.v.Segments(e.ctx, alice, "frontier-7", 0)
				isPart("ciphertext stream", err)
			}
		})
	}
}

// A key the vault recorded that the keyring cannot use is not a corrupt object: the keyring is
// wrong (replaced, or the key retired outside the vault), and that is unavailable (503), not
// "restore from a backup".
func TestUnusableRecordedKeyIsNotCorruption(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", strings.NewReader("weights")); err != nil {
		t.Fatal(err)
	}
	other, err := vault.InitLocalKeyring(filepath.Join(t.TempDir(), "other.json"))
	if err != nil {
		t.Fatal(err)
	}
	e.v.Keys = other
	_, err = e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if !errors.Is(err, vault.ErrKey) || errors.Is(err, vault.ErrCorrupt) || !strings.Contains(err.Error(), "not in the keyring") {
		t.Fatalf("get with another keyring: %v", err)
	}
}

func x25519Public(t *testing.T) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

// A rotation that stopped after it rewrote a header but before it recorded the new key id is
// finished by the next one. Before, the next rotation skipped the version (its header already
// named the current key), so the metadata kept naming the old key for ever: with a provider
// that rotates its own keys (a cloud KMS), nothing else ever corrected it.
func TestRotationFinishesAnInterruptedOne(t *testing.T) {
	e := newEnv(t)
	e.v.Keys = struct{ vault.KeyProvider }{e.keys} // rotates its keys itself: not a KeyRing
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", strings.NewReader("weights")); err != nil {
		t.Fatal(err)
	}
	cur, err := e.keys.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	// What the interrupted rotation did: the header re-wrapped under the new key, the metadata
	// still naming the old one.
	editFile(t, e.headerPath(), func(b []byte) []byte {
		h, err := vault.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		nh, err := vault.Rewrap(e.ctx, e.keys, h)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := nh.MarshalBinary()
		return out
	})
	// Reads work meanwhile: the header's key unwraps.
	dl, err := e.v.Get(e.ctx, person("alice"), "frontier-7", 0)
	if err != nil {
		t.Fatalf("read during the interrupted rotation: %v", err)
	}
	dl.Close()
	if _, _, err := e.v.Rotate(e.ctx, "erin"); err != nil {
		t.Fatal(err)
	}
	if o, err := e.st.Object(e.ctx, "frontier-7", 1); err != nil || o.KeyID != cur {
		t.Fatalf("after the next rotation the vault records key %q (%v), want %q", o.KeyID, err, cur)
	}
}
