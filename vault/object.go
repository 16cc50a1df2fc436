package vault

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
)

// Digest describes a plaintext: its size and SHA-256.
type Digest struct {
	Size   int64
	SHA256 [32]byte
}

// Encrypt reads a plaintext from src and writes its segments to dst under a fresh data key
// wrapped by kp's current KEK. It returns the header to store beside the segments and the
// plaintext's digest.
func Encrypt(ctx context.Context, kp KeyProvider, objectID string, version uint64, segmentSize uint32, src io.Reader, dst io.Writer) (*Header, Digest, error) {
	if segmentSize == 0 {
		segmentSize = DefaultSegmentSize
	}
	h := &Header{SegmentSize: segmentSize, NoncePrefix: NewNoncePrefix(), ObjectID: objectID, ObjectVersion: version, KeyID: "pending", WrappedDEK: []byte{0}}
	dek := NewDEK()
	binding := h.Binding()
	kid, wrapped, err := kp.Wrap(ctx, dek, binding[:])
	if err != nil {
		return nil, Digest{}, fmt.Errorf("vault: wrap the data key: %w", err)
	}
	h.KeyID, h.WrappedDEK = kid, wrapped
	w, err := NewWriter(dst, h, dek)
	if err != nil {
		return nil, Digest{}, err
	}
	sum := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, sum), src); err != nil {
		return nil, Digest{}, err
	}
	if err := w.Close(); err != nil {
		return nil, Digest{}, err
	}
	d := Digest{Size: w.Size()}
	copy(d.SHA256[:], sum.Sum(nil))
	return h, d, nil
}

// DataKey unwraps h's data key.
func DataKey(ctx context.Context, kp KeyProvider, h *Header) ([]byte, error) {
	binding := h.Binding()
	return kp.Unwrap(ctx, h.KeyID, h.WrappedDEK, binding[:])
}

// Decrypt returns a reader of the plaintext of h's segments read from src.
func Decrypt(ctx context.Context, kp KeyProvider, h *Header, src io.Reader) (*Reader, error) {
	dek, err := DataKey(ctx, kp, h)
	if err != nil {
		return nil, err
	}
	return NewReader(src, h, dek)
}

// Rewrap returns h with its data key wrapped again under kp's current KEK (key rotation: the
// segments do not change).
func Rewrap(ctx context.Context, kp KeyProvider, h *Header) (*Header, error) {
	dek, err := DataKey(ctx, kp, h)
	if err != nil {
		return nil, err
	}
	binding := h.Binding()
	kid, wrapped, err := kp.Wrap(ctx, dek, binding[:])
	if err != nil {
		return nil, err
	}
	n := *h
	n.KeyID, n.WrappedDEK = kid, wrapped
	return &n, nil
}

// Verify reads all of h's segments from src and returns the plaintext digest; any failure
// wraps ErrCorrupt or ErrKey.
func Verify(ctx context.Context, kp KeyProvider, h *Header, src io.Reader) (Digest, error) {
	r, err := Decrypt(ctx, kp, h, src)
	if err != nil {
		return Digest{}, err
	}
	return digest(r)
}

func digest(r io.Reader) (Digest, error) {
	var sum hash.Hash = sha256.New()
	n, err := io.Copy(sum, r)
	if err != nil {
		return Digest{}, err
	}
	d := Digest{Size: n}
	copy(d.SHA256[:], sum.Sum(nil))
	return d, nil
}
