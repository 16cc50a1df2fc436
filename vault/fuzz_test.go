package vault

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

// FuzzReadHeader: any input either parses to a header that encodes back to exactly the bytes
// read, or is refused with ErrCorrupt naming the header; nothing panics.
func FuzzReadHeader(f *testing.F) {
	h := &Header{SegmentSize: DefaultSegmentSize, ObjectID: "weights/frontier-7", ObjectVersion: 7, KeyID: "local-00", WrappedDEK: make([]byte, 60)}
	good, _ := h.MarshalBinary()
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte("RMPV\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := ReadHeader(r)
		if err != nil {
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || ce.Part() != "header" {
				t.Fatalf("error not a corrupt header: %v", err)
			}
			return
		}
		used := len(b) - r.Len()
		enc, err := h.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b[:used]) {
			t.Fatalf("parsed header re-encodes differently: %v", err)
		}
	})
}

// FuzzSegments: the segments of a known object, mutated any way, either decrypt to exactly the
// original plaintext or fail with ErrCorrupt naming the first segment not returned, and
// whatever was returned before the failure is a prefix of the original. Nothing forged is ever
// returned as plaintext.
func FuzzSegments(f *testing.F) {
	kp, err := InitLocalKeyring(filepath.Join(f.TempDir(), "k.json"))
	if err != nil {
		f.Fatal(err)
	}
	plain := pattern(3*MinSegmentSize + 77)
	var ct bytes.Buffer
	h, _, err := Encrypt(context.Background(), kp, "weights/fuzz", 1, MinSegmentSize, bytes.NewReader(plain), &ct)
	if err != nil {
		f.Fatal(err)
	}
	dek, _ := DataKey(context.Background(), kp, h)
	f.Add(ct.Bytes())
	f.Add(ct.Bytes()[:MinSegmentSize+TagSize])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b), h, dek)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if !bytes.HasPrefix(plain, got) {
			t.Fatalf("returned %d bytes that are not a prefix of the plaintext", len(got))
		}
		switch {
		case err == nil && !bytes.Equal(got, plain):
			t.Fatalf("a mutated object decrypted without error to %d bytes", len(got))
		case err != nil && !errors.Is(err, ErrCorrupt):
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		case err != nil:
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Segment != int64(len(got)/MinSegmentSize) {
				t.Fatalf("after %d bytes, the error names %v: %v", len(got), ce, err)
			}
		}
	})
}
