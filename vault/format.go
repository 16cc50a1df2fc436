// Package vault encrypts model artifacts so that they are useless without a grant: every object
// has its own data key (DEK) under a streaming AEAD (AES-256-GCM over fixed-size segments), and
// the DEK is stored only wrapped by a key-encryption key (KEK) that a key provider holds.
//
// The format is specified in docs/vault-format.md; testdata/vectors.json holds test vectors
// that any implementation must reproduce.
package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Format constants (docs/vault-format.md).
const (
	Magic         = "RMPV"
	FormatVersion = 1

	// DefaultSegmentSize is the plaintext bytes per segment: large enough that the per-segment
	// cost (a nonce, a tag, a GCM setup) is negligible, small enough to hold in memory.
	DefaultSegmentSize = 1 << 20
	MinSegmentSize     = 4 << 10
	MaxSegmentSize     = 16 << 20

	NoncePrefixSize = 7
	TagSize         = 16
	DEKSize         = 32

	maxObjectID   = 1024
	maxKeyID      = 256
	maxWrappedDEK = 1024
	// MaxHeaderSize bounds a header: 4+1+4+7+2+1024+8+2+256+2+1024.
	MaxHeaderSize = 2334
)

// Errors. Every failure to read or decrypt wraps ErrCorrupt (as a *CorruptError naming the
// part) or ErrKey, never returns partial
// plaintext as if it were whole, and names what was wrong.
var (
	// ErrCorrupt: the bytes are not a well-formed, authentic vault object (truncated, reordered,
	// edited, or another object's).
	ErrCorrupt = errors.New("vault: object is corrupt or not authentic")
	// ErrKey: the data key cannot be unwrapped because its key-encryption key cannot be used
	// (unknown or retired key, wrong keyring, provider unreachable). A wrapped key that does
	// not open under its key is ErrCorrupt: the header was altered.
	ErrKey = errors.New("vault: data key unavailable")
)

// CorruptError is the ErrCorrupt of an object's reader: it says which part failed, the header
// (Segment < 0, the wrapped data key included) or a segment, so that an operator knows what to
// restore and a caller can tell a corrupt object from an unavailable key.
type CorruptError struct {
	// Segment is the index of the segment that failed, or -1 for the header.
	Segment int64
	// Reason says what is wrong.
	Reason string
}

func (e *CorruptError) Error() string {
	return "vault: object is corrupt: " + e.Part() + ": " + e.Reason
}

// Unwrap makes a CorruptError match ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Part names the part that failed: "header" or "segment N" (counting from 0).
func (e *CorruptError) Part() string {
	if e.Segment < 0 {
		return "header"
	}
	return fmt.Sprintf("segment %d", e.Segment)
}

func headerCorrupt(format string, args ...any) error {
	return &CorruptError{Segment: -1, Reason: fmt.Sprintf(format, args...)}
}

func segmentCorrupt(i uint32, format string, args ...any) error {
	return &CorruptError{Segment: int64(i), Reason: fmt.Sprintf(format, args...)}
}

// Header is what precedes the segments. The fixed part (everything but KeyID and WrappedDEK)
// is authenticated with every segment; the key part can be rewritten when the KEK rotates
// without touching the segments, and is authenticated by the unwrap itself.
type Header struct {
	SegmentSize   uint32
	NoncePrefix   [NoncePrefixSize]byte
	ObjectID      string
	ObjectVersion uint64
	KeyID         string
	WrappedDEK    []byte
}

func (h *Header) validate() error {
	switch {
	case h.SegmentSize < MinSegmentSize || h.SegmentSize > MaxSegmentSize:
		return fmt.Errorf("segment size %d is outside %d..%d", h.SegmentSize, MinSegmentSize, MaxSegmentSize)
	case len(h.ObjectID) == 0 || len(h.ObjectID) > maxObjectID || !utf8.ValidString(h.ObjectID):
		return fmt.Errorf("object id must be 1..%d bytes of UTF-8", maxObjectID)
	case len(h.KeyID) == 0 || len(h.KeyID) > maxKeyID || !utf8.ValidString(h.KeyID):
		return fmt.Errorf("key id must be 1..%d bytes of UTF-8", maxKeyID)
	case len(h.WrappedDEK) == 0 || len(h.WrappedDEK) > maxWrappedDEK:
		return fmt.Errorf("wrapped data key must be 1..%d bytes", maxWrappedDEK)
	}
	return nil
}

// Fixed returns the encoding of the fixed part.
func (h *Header) Fixed() []byte {
	b := make([]byte, 0, 32+len(h.ObjectID))
	b = append(b, Magic...)
	b = append(b, FormatVersion)
	b = binary.BigEndian.AppendUint32(b, h.SegmentSize)
	b = append(b, h.NoncePrefix[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.ObjectID)))
	b = append(b, h.ObjectID...)
	b = binary.BigEndian.AppendUint64(b, h.ObjectVersion)
	return b
}

// Binding is SHA-256 of the fixed part: the associated data of every segment and of the DEK's
// wrapping, so that segments and wrapped keys belong to exactly one object version.
func (h *Header) Binding() [32]byte { return sha256.Sum256(h.Fixed()) }

// MarshalBinary encodes the whole header.
func (h *Header) MarshalBinary() ([]byte, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	b := h.Fixed()
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.KeyID)))
	b = append(b, h.KeyID...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.WrappedDEK)))
	b = append(b, h.WrappedDEK...)
	return b, nil
}

// ReadHeader reads and checks a header from r, consuming exactly its bytes.
func ReadHeader(r io.Reader) (*Header, error) {
	bad := func(format string, args ...any) (*Header, error) {
		return nil, headerCorrupt(format, args...)
	}
	var fixed [4 + 1 + 4 + NoncePrefixSize + 2]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return bad("too short (%v)", err)
	}
	if !bytes.Equal(fixed[:4], []byte(Magic)) {
		return bad("not a Rampart vault object (magic %q, want %q)", fixed[:4], Magic)
	}
	if fixed[4] != FormatVersion {
		return bad("format version %d; this build reads %d", fixed[4], FormatVersion)
	}
	h := &Header{SegmentSize: binary.BigEndian.Uint32(fixed[5:9])}
	copy(h.NoncePrefix[:], fixed[9:16])
	readString := func(n int, limit int, what string) (string, error) {
		if n == 0 || n > limit {
			return "", fmt.Errorf("%s length %d is outside 1..%d", what, n, limit)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("%s: %v", what, err)
		}
		return string(b), nil
	}
	var err error
	if h.ObjectID, err = readString(int(binary.BigEndian.Uint16(fixed[16:18])), maxObjectID, "object id"); err != nil {
		return bad("%v", err)
	}
	var rest [8 + 2]byte
	if _, err := io.ReadFull(r, rest[:]); err != nil {
		return bad("object version: %v", err)
	}
	h.ObjectVersion = binary.BigEndian.Uint64(rest[:8])
	if h.KeyID, err = readString(int(binary.BigEndian.Uint16(rest[8:])), maxKeyID, "key id"); err != nil {
		return bad("%v", err)
	}
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return bad("wrapped key length: %v", err)
	}
	w, err := readString(int(binary.BigEndian.Uint16(n[:])), maxWrappedDEK, "wrapped data key")
	if err != nil {
		return bad("%v", err)
	}
	h.WrappedDEK = []byte(w)
	if err := h.validate(); err != nil {
		return bad("%v", err)
	}
	return h, nil
}

// nonce is the GCM nonce of segment i: prefix ‖ counter (big endian) ‖ last flag.
func nonce(prefix [NoncePrefixSize]byte, i uint32, last bool) [12]byte {
	var n [12]byte
	copy(n[:], prefix[:])
	binary.BigEndian.PutUint32(n[7:11], i)
	if last {
		n[11] = 1
	}
	return n
}

// segmentAAD is the associated data of segment i: the header binding ‖ i (uint64).
func segmentAAD(binding [32]byte, i uint32) [40]byte {
	var a [40]byte
	copy(a[:], binding[:])
	binary.BigEndian.PutUint64(a[32:], uint64(i))
	return a
}

// CiphertextSize is the size of the segments of a plaintext of n bytes (not counting the
// header): every segment but the last is full, and an empty plaintext is one empty segment.
func CiphertextSize(n int64, segmentSize uint32) int64 {
	s := int64(segmentSize)
	segments := max((n+s-1)/s, 1)
	return n + segments*TagSize
}
