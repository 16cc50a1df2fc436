package vault

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json")

// vector is one test vector of docs/vault-format.md: fixed inputs, and the exact output any
// implementation must produce.
type vector struct {
	Name          string `json:"name"`
	DEK           string `json:"dek"`          // hex
	NoncePrefix   string `json:"nonce_prefix"` // hex
	SegmentSize   uint32 `json:"segment_size"`
	ObjectID      string `json:"object_id"`
	ObjectVersion uint64 `json:"object_version"`
	// Plaintext is PlaintextLen bytes of the pattern byte(i % 251).
	PlaintextLen int    `json:"plaintext_len"`
	Binding      string `json:"binding"`         // hex SHA-256 of the header's fixed part
	Segments     string `json:"segments"`        // hex of all segments (omitted when long)
	SegmentsHash string `json:"segments_sha256"` // hex SHA-256 of all segments
	// Wrapping by the local provider, with a fixed KEK and nonce.
	KEK        string `json:"kek,omitempty"`
	KeyID      string `json:"key_id,omitempty"`
	WrapNonce  string `json:"wrap_nonce,omitempty"`
	WrappedDEK string `json:"wrapped_dek,omitempty"`
	Header     string `json:"header,omitempty"` // hex of the whole header
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v vector) compute(t *testing.T) vector {
	t.Helper()
	var prefix [NoncePrefixSize]byte
	copy(prefix[:], unhex(t, v.NoncePrefix))
	h := &Header{SegmentSize: v.SegmentSize, NoncePrefix: prefix, ObjectID: v.ObjectID, ObjectVersion: v.ObjectVersion, KeyID: v.KeyID}
	binding := h.Binding()
	v.Binding = hex.EncodeToString(binding[:])
	// The local provider's wrap, with its nonce fixed.
	kek, _ := aes.NewCipher(unhex(t, v.KEK))
	gcm, _ := cipher.NewGCM(kek)
	n := unhex(t, v.WrapNonce)
	h.WrappedDEK = gcm.Seal(append([]byte(nil), n...), n, unhex(t, v.DEK), wrapAAD(v.KeyID, binding[:]))
	v.WrappedDEK = hex.EncodeToString(h.WrappedDEK)
	hb, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	v.Header = hex.EncodeToString(hb)
	var out bytes.Buffer
	w, err := NewWriter(&out, h, unhex(t, v.DEK))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(pattern(v.PlaintextLen))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out.Bytes())
	v.SegmentsHash = hex.EncodeToString(sum[:])
	v.Segments = ""
	if out.Len() <= 256 {
		v.Segments = hex.EncodeToString(out.Bytes())
	}
	return v
}

// TestVectors reproduces testdata/vectors.json exactly and decrypts each vector back (run with
// -update to regenerate it after a deliberate format change, which must also bump the version).
func TestVectors(t *testing.T) {
	inputs := []vector{
		{Name: "empty object", PlaintextLen: 0},
		{Name: "one byte", PlaintextLen: 1},
		{Name: "one full segment", PlaintextLen: MinSegmentSize},
		{Name: "one segment and one byte", PlaintextLen: MinSegmentSize + 1},
		{Name: "three segments, the last short", PlaintextLen: 2*MinSegmentSize + 1000},
	}
	for i := range inputs {
		v := &inputs[i]
		v.DEK = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
		v.NoncePrefix = "a0a1a2a3a4a5a6"
		v.SegmentSize = MinSegmentSize
		v.ObjectID = "weights/frontier-7"
		v.ObjectVersion = 42
		v.KEK = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f"
		v.KeyID = "local-0011223344556677"
		v.WrapNonce = "b0b1b2b3b4b5b6b7b8b9babb"
		*v = v.compute(t)
	}
	path := "testdata/vectors.json"
	if *update {
		b, _ := json.MarshalIndent(inputs, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate with go test ./vault -run TestVectors -update)", err)
	}
	var want []vector
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(inputs) {
		t.Fatalf("%d vectors on file, %d computed", len(want), len(inputs))
	}
	for i, w := range want {
		got := w.compute(t)
		if got != w {
			t.Errorf("vector %q: computed\n%+v\nwant\n%+v", w.Name, got, w)
			continue
		}
		// And back: parse the header, unwrap, decrypt.
		h, err := ReadHeader(bytes.NewReader(unhex(t, w.Header)))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		wr, _ := NewWriter(&out, h, unhex(t, w.DEK))
		_, _ = wr.Write(pattern(w.PlaintextLen))
		_ = wr.Close()
		r, _ := NewReader(bytes.NewReader(out.Bytes()), h, unhex(t, w.DEK))
		plain, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(plain, pattern(w.PlaintextLen)) {
			t.Errorf("vector %q does not decrypt: %v", w.Name, err)
		}
		_ = i
	}
}

// The spec, restated independently of Writer: the empty object's only segment is
// AES-256-GCM(DEK, nonce = prefix ‖ 00000000 ‖ 01, plaintext "", aad = binding ‖ uint64 0), and
// the binding is SHA-256 of the header's fixed part laid out byte by byte.
func TestVectorMatchesSpec(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	v := vs[0]
	fixed := []byte("RMPV")
	fixed = append(fixed, 1)                          // format version
	fixed = append(fixed, 0, 0, 0x10, 0)              // segment size 4096
	fixed = append(fixed, unhex(t, v.NoncePrefix)...) // 7 bytes
	fixed = append(fixed, 0, byte(len(v.ObjectID)))
	fixed = append(fixed, v.ObjectID...)
	fixed = append(fixed, 0, 0, 0, 0, 0, 0, 0, byte(v.ObjectVersion))
	binding := sha256.Sum256(fixed)
	if hex.EncodeToString(binding[:]) != v.Binding {
		t.Fatalf("binding %x, vector says %s", binding, v.Binding)
	}
	blk, _ := aes.NewCipher(unhex(t, v.DEK))
	gcm, _ := cipher.NewGCM(blk)
	nonce := append(unhex(t, v.NoncePrefix), 0, 0, 0, 0, 1)
	aad := append(binding[:], 0, 0, 0, 0, 0, 0, 0, 0)
	if got := hex.EncodeToString(gcm.Seal(nil, nonce, nil, aad)); got != v.Segments {
		t.Fatalf("empty object's segment %s, vector says %s", got, v.Segments)
	}
}
