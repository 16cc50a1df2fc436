package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const seg = MinSegmentSize // small segments, so that tests cross many boundaries

func newKeyring(t *testing.T) *LocalProvider {
	t.Helper()
	kp, err := InitLocalKeyring(filepath.Join(t.TempDir(), "keyring.json"))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// encrypt returns the header and the segments of plain as object id/version.
func encrypt(t *testing.T, kp KeyProvider, id string, version uint64, plain []byte) (*Header, []byte) {
	t.Helper()
	var out bytes.Buffer
	h, d, err := Encrypt(context.Background(), kp, id, version, seg, bytes.NewReader(plain), &out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size != int64(len(plain)) || d.SHA256 != sha256.Sum256(plain) {
		t.Fatalf("digest %+v for %d bytes", d, len(plain))
	}
	if int64(out.Len()) != CiphertextSize(int64(len(plain)), seg) {
		t.Fatalf("%d plaintext bytes gave %d ciphertext bytes, CiphertextSize says %d", len(plain), out.Len(), CiphertextSize(int64(len(plain)), seg))
	}
	return h, out.Bytes()
}

// decrypt reads everything; it returns what was read before any error, to check that nothing
// unverified is ever returned.
func decrypt(kp KeyProvider, h *Header, segments []byte) ([]byte, error) {
	r, err := Decrypt(context.Background(), kp, h, bytes.NewReader(segments))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// decryptTo is decrypt through io.Copy, which uses Reader.WriteTo.
func decryptTo(kp KeyProvider, h *Header, segments []byte) ([]byte, error) {
	r, err := Decrypt(context.Background(), kp, h, bytes.NewReader(segments))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = io.Copy(&out, r)
	return out.Bytes(), err
}

func TestRoundTripSizes(t *testing.T) {
	kp := newKeyring(t)
	for _, n := range []int{0, 1, seg - 1, seg, seg + 1, 2 * seg, 3*seg + 17, 10*seg - 1} {
		plain := random(n)
		h, ct := encrypt(t, kp, "weights/frontier-7", 3, plain)
		// The header round-trips through its encoding.
		hb, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ReadHeader(bytes.NewReader(hb))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decrypt(kp, h2, ct)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: %v (got %d bytes)", n, err, len(got))
		}
		if got, err := decryptTo(kp, h2, ct); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes through WriteTo: %v (got %d bytes)", n, err, len(got))
		}
		// Reading in odd-sized pieces gives the same.
		r, _ := Decrypt(context.Background(), kp, h2, bytes.NewReader(ct))
		var b bytes.Buffer
		buf := make([]byte, 7)
		for {
			k, err := r.Read(buf)
			b.Write(buf[:k])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(b.Bytes(), plain) {
			t.Fatalf("%d bytes read 7 at a time differ", n)
		}
		// Ranged reads decrypt single segments.
		if n > 0 {
			sr, err := NewSegmentReaderAt(bytes.NewReader(ct), int64(len(ct)), h2, mustDEK(t, kp, h2))
			if err != nil {
				t.Fatal(err)
			}
			if ps, err := sr.PlaintextSize(); err != nil || ps != int64(n) {
				t.Fatalf("PlaintextSize %d, %v; want %d", ps, err, n)
			}
			lastIdx := uint32((n - 1) / seg)
			lastSeg, err := sr.Segment(lastIdx, nil)
			if err != nil || !bytes.Equal(lastSeg, plain[int(lastIdx)*seg:]) {
				t.Fatalf("last segment: %v", err)
			}
		}
	}
}

func mustDEK(t *testing.T, kp KeyProvider, h *Header) []byte {
	t.Helper()
	d, err := DataKey(context.Background(), kp, h)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Every tampering is detected, and the reader never returns bytes it has not verified.
func TestTamperingDetected(t *testing.T) {
	kp := newKeyring(t)
	plain := random(3*seg + 100) // four segments, the last short
	h, ct := encrypt(t, kp, "weights/frontier-7", 1, plain)
	segLen := seg + TagSize
	// part is the part the error must name: "header" or "segment N".
	check := func(name string, h *Header, ct []byte, part string) {
		t.Helper()
		got, err := decrypt(kp, h, ct)
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Part() != part || !strings.Contains(err.Error(), part+": ") {
			t.Errorf("%s: error %v, want a corrupt %s", name, err, part)
		}
		// The WriterTo path gives the same verified prefix and the same error.
		got2, err2 := decryptTo(kp, h, ct)
		if !bytes.Equal(got, got2) || fmt.Sprint(err) != fmt.Sprint(err2) {
			t.Errorf("%s: WriteTo gave %d bytes and %v; Read gave %d bytes and %v", name, len(got2), err2, len(got), err)
		}
		// What was returned before the error is a verified prefix of the plaintext.
		if !bytes.HasPrefix(plain, got) {
			t.Errorf("%s: returned %d bytes that are not a prefix of the plaintext", name, len(got))
		}
		if err == nil {
			t.Errorf("%s: decrypted without error", name)
		}
	}
	clone := func(b []byte) []byte { return append([]byte(nil), b...) }

	for _, cut := range []int{0, 1, TagSize - 1, segLen - 1, segLen, segLen + 1, 2 * segLen, 3 * segLen, len(ct) - 1} {
		check("truncated to "+strconv.Itoa(cut), h, ct[:cut], fmt.Sprintf("segment %d", max(cut-1, 0)/segLen))
	}
	check("extra byte appended", h, append(clone(ct), 0), "segment 3")
	check("an extra copy of the last segment", h, append(clone(ct), ct[3*segLen:]...), "segment 3")
	swapped := clone(ct)
	copy(swapped[:segLen], ct[segLen:2*segLen])
	copy(swapped[segLen:2*segLen], ct[:segLen])
	check("segments 0 and 1 swapped", h, swapped, "segment 0")
	dropped := append(clone(ct[:segLen]), ct[2*segLen:]...)
	check("segment 1 dropped", h, dropped, "segment 1")
	for _, off := range []int{0, seg - 1, seg, segLen + 5, 3*segLen + 3, len(ct) - 1} {
		flipped := clone(ct)
		flipped[off] ^= 0x01
		check("bit flipped at "+strconv.Itoa(off), h, flipped, fmt.Sprintf("segment %d", off/segLen))
	}

	// Another object's segments, under the same keyring: each object has its own key and binding.
	h2, ct2 := encrypt(t, kp, "weights/frontier-7", 2, plain)
	mixed := append(clone(ct[:segLen]), ct2[segLen:]...)
	check("segments from another version", h, mixed, "segment 1")
	check("another object's segments under this header", h, ct2, "segment 0")

	// Header edits: the fixed part is bound into every segment and the wrapped key, so the
	// wrapped key no longer opens: the header is corrupt (not an unavailable key, ErrKey).
	for name, edit := range map[string]func(*Header){
		"object id":                    func(h *Header) { h.ObjectID = "weights/other" },
		"version":                      func(h *Header) { h.ObjectVersion++ },
		"nonce prefix":                 func(h *Header) { h.NoncePrefix[0] ^= 1 },
		"segment size":                 func(h *Header) { h.SegmentSize *= 2 },
		"wrapped key":                  func(h *Header) { h.WrappedDEK = append([]byte(nil), h.WrappedDEK...); h.WrappedDEK[20] ^= 1 },
		"another object's wrapped key": func(h *Header) { h.KeyID, h.WrappedDEK = h2.KeyID, h2.WrappedDEK },
	} {
		e := *h
		edit(&e)
		check("header "+name+" edited", &e, ct, "header")
	}
}

// A wrong or retired key is ErrKey; rotation re-wraps without touching the segments.
func TestKeysRotateAndRetire(t *testing.T) {
	kp := newKeyring(t)
	plain := random(2*seg + 1)
	h, ct := encrypt(t, kp, "weights/frontier-7", 1, plain)
	old := h.KeyID

	other := newKeyring(t)
	if _, err := decrypt(other, h, ct); !errors.Is(err, ErrKey) {
		t.Fatalf("another keyring: %v", err)
	}

	newID, err := kp.Rotate()
	if err != nil || newID == old {
		t.Fatalf("rotate: %q %v", newID, err)
	}
	if got, err := decrypt(kp, h, ct); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("old key after rotation: %v", err)
	}
	h2, err := Rewrap(context.Background(), kp, h)
	if err != nil || h2.KeyID != newID {
		t.Fatalf("rewrap: %+v %v", h2, err)
	}
	if err := kp.Retire(newID); err == nil {
		t.Fatal("the current key was retired")
	}
	if err := kp.Retire(old); err != nil {
		t.Fatal(err)
	}
	if _, err := decrypt(kp, h, ct); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "retired") {
		t.Fatalf("retired key: %v", err)
	}
	if got, err := decrypt(kp, h2, ct); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("re-wrapped header, same segments: %v", err)
	}

	// The keyring file round-trips and keeps the retirement.
	again, err := OpenLocalKeyring(kp.path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decrypt(again, h, ct); !errors.Is(err, ErrKey) {
		t.Fatalf("retirement lost on reopen: %v", err)
	}
	if _, err := InitLocalKeyring(kp.path); err == nil {
		t.Fatal("init overwrote an existing keyring")
	}
	// A keyring others can read is refused (internal/secretfile's rule).
	if err := os.Chmod(kp.path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalKeyring(kp.path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable keyring: %v", err)
	}
}

// Headers that are not vault headers are refused with a precise error.
func TestReadHeaderRefuses(t *testing.T) {
	kp := newKeyring(t)
	h, _ := encrypt(t, kp, "weights/x", 1, []byte("x"))
	good, _ := h.MarshalBinary()
	for name, b := range map[string][]byte{
		"empty":        nil,
		"magic":        append([]byte("XXXX"), good[4:]...),
		"version":      append(append([]byte(Magic), 9), good[5:]...),
		"truncated":    good[:len(good)-1],
		"segment size": append(append(append([]byte(nil), good[:5]...), 0, 0, 0, 1), good[9:]...),
		"id length 0":  append(append(append([]byte(nil), good[:16]...), 0, 0), good[18:]...),
	} {
		if _, err := ReadHeader(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
