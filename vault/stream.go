package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
)

func newGCM(dek []byte) (cipher.AEAD, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("vault: data key must be %d bytes, got %d", DEKSize, len(dek))
	}
	blk, err := aes.NewCipher(dek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// NewDEK returns a fresh random data key.
func NewDEK() []byte {
	k := make([]byte, DEKSize)
	_, _ = rand.Read(k)
	return k
}

// NewNoncePrefix returns a fresh random nonce prefix.
func NewNoncePrefix() [NoncePrefixSize]byte {
	var p [NoncePrefixSize]byte
	_, _ = rand.Read(p[:])
	return p
}

// Writer encrypts a plaintext stream into segments. Write buffers up to one segment; Close
// writes the final segment and must be called, even for an empty object.
type Writer struct {
	w       io.Writer
	aead    cipher.AEAD
	h       *Header
	binding [32]byte
	buf     []byte // plaintext of the pending segment, len ≤ SegmentSize
	out     []byte // ciphertext scratch
	i       uint32
	n       int64
	closed  bool
	err     error
}

// NewWriter returns a Writer for the segments of h's object under dek. It does not write the
// header (storage keeps it apart, so that a key rotation rewrites only the header).
func NewWriter(w io.Writer, h *Header, dek []byte) (*Writer, error) {
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("vault: header: %w", err)
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	return &Writer{w: w, aead: aead, h: h, binding: h.Binding(),
		buf: make([]byte, 0, h.SegmentSize), out: make([]byte, 0, int(h.SegmentSize)+TagSize)}, nil
}

// Write encrypts p; full segments are written once the next byte shows they are not the last.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("vault: write after close")
	}
	written := 0
	for len(p) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.seal(false); err != nil {
				return written, err
			}
		}
		n := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+n]
		p, written = p[n:], written+n
		w.n += int64(n)
	}
	return written, nil
}

func (w *Writer) seal(last bool) error {
	if w.i == math.MaxUint32 {
		w.err = errors.New("vault: object too large for its segment size")
		return w.err
	}
	nc := nonce(w.h.NoncePrefix, w.i, last)
	aad := segmentAAD(w.binding, w.i)
	w.out = w.aead.Seal(w.out[:0], nc[:], w.buf, aad[:])
	if _, err := w.w.Write(w.out); err != nil {
		w.err = err
		return err
	}
	w.buf = w.buf[:0]
	w.i++
	return nil
}

// Close writes the final segment.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	return w.seal(true)
}

// Size is the number of plaintext bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Reader decrypts segments. It returns plaintext one verified segment at a time, and an error
// (wrapping ErrCorrupt) as soon as a segment fails, including when the stream ends before the
// final segment: a caller that reads to io.EOF has the whole, authentic plaintext.
type Reader struct {
	// Gate, if set, is asked before each verified segment's plaintext is released, the final
	// one included (last is true for it). An error stops the stream there: Read and WriteTo
	// return it, and nothing of that segment or any later one is released. The weights vault
	// re-checks the reader's grant here.
	Gate func(segment uint32, last bool) error

	r       io.Reader
	aead    cipher.AEAD
	h       *Header
	binding [32]byte
	in      []byte // one segment (+1 byte of look-ahead): ciphertext, then opened in place
	pending []byte // verified plaintext not yet returned (a part of in)
	ahead   []byte // the look-ahead byte, if any
	i       uint32
	done    bool
	err     error
	n       int64
}

// NewReader returns a Reader of h's segments from r under dek.
func NewReader(r io.Reader, h *Header, dek []byte) (*Reader, error) {
	if err := h.validate(); err != nil {
		return nil, headerCorrupt("%v", err)
	}
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	seg := int(h.SegmentSize) + TagSize
	return &Reader{r: r, aead: aead, h: h, binding: h.Binding(), in: make([]byte, seg+1)}, nil
}

// Prime reads and verifies the first segment now, asking the Gate as usual but releasing
// nothing, so that a caller learns of a corrupt header or first segment before it commits to an
// answer (a server, to its status line). Read and WriteTo then start with that segment. It is a
// no-op once anything was read.
func (r *Reader) Prime() error {
	if r.i == 0 && !r.done && r.err == nil {
		r.err = r.next()
	}
	return r.err
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		r.err = r.next()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	r.n += int64(n)
	return n, nil
}

// WriteTo implements io.WriterTo: io.Copy hands each verified segment to w whole, with no
// intermediate buffer. As with Read, w receives only verified plaintext, and the error of a
// segment that fails (wrapping ErrCorrupt) is returned after the segments before it.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.pending) > 0 {
			n, err := w.Write(r.pending)
			r.pending = r.pending[n:]
			r.n += int64(n)
			total += int64(n)
			if err != nil {
				return total, err
			}
			if n == 0 {
				return total, io.ErrShortWrite
			}
			continue
		}
		if r.err != nil {
			return total, r.err
		}
		if r.done {
			return total, nil
		}
		r.err = r.next()
	}
}

// next reads and verifies one segment.
func (r *Reader) next() error {
	seg := int(r.h.SegmentSize) + TagSize
	// The segment's bytes: the look-ahead byte from last time, then the rest.
	buf := r.in[:seg+1]
	k := copy(buf, r.ahead)
	n, err := io.ReadFull(r.r, buf[k:])
	n += k
	var last bool
	switch {
	case err == nil: // a full segment and one byte more: not the last
		r.ahead = append(r.ahead[:0], buf[seg])
		buf = buf[:seg]
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		last, buf = true, buf[:n]
		r.ahead = r.ahead[:0]
	default:
		return fmt.Errorf("vault: reading segment %d: %w", r.i, err)
	}
	if len(buf) < TagSize {
		if r.i == 0 && len(buf) == 0 {
			return segmentCorrupt(0, "missing: the data has no segments at all (zero-length, or truncated before the first segment)")
		}
		return segmentCorrupt(r.i, "%d bytes, shorter than its %d-byte tag (truncated)", len(buf), TagSize)
	}
	nc := nonce(r.h.NoncePrefix, r.i, last)
	aad := segmentAAD(r.binding, r.i)
	// Opened in place: the plaintext overwrites the ciphertext it came from (the look-ahead
	// byte was saved above). A failed Open may leave garbage there; none of it is returned.
	plain, err := r.aead.Open(buf[:0], nc[:], buf, aad[:])
	if err != nil {
		if last {
			return segmentCorrupt(r.i, "does not verify as the final segment (truncated, reordered, altered, from another object, or the wrong key)")
		}
		return segmentCorrupt(r.i, "does not verify (reordered, altered, from another object, or the wrong key)")
	}
	if r.Gate != nil {
		if err := r.Gate(r.i, last); err != nil {
			return err
		}
	}
	r.pending = plain
	r.i++
	if last {
		r.done = true
	}
	return nil
}

// Size is the number of verified plaintext bytes returned so far.
func (r *Reader) Size() int64 { return r.n }

// SegmentReaderAt reads plaintext ranges: it decrypts only the segments a range touches. It is
// for ranged downloads; Verify the whole object once first, or the last segment may be missing.
type SegmentReaderAt struct {
	r       io.ReaderAt
	size    int64 // ciphertext bytes of the segments
	aead    cipher.AEAD
	h       *Header
	binding [32]byte
}

// NewSegmentReaderAt reads the segments stored in r (size bytes, header excluded).
func NewSegmentReaderAt(r io.ReaderAt, size int64, h *Header, dek []byte) (*SegmentReaderAt, error) {
	aead, err := newGCM(dek)
	if err != nil {
		return nil, err
	}
	return &SegmentReaderAt{r: r, size: size, aead: aead, h: h, binding: h.Binding()}, nil
}

// PlaintextSize is the plaintext size implied by the ciphertext size.
func (s *SegmentReaderAt) PlaintextSize() (int64, error) {
	seg := int64(s.h.SegmentSize) + TagSize
	full, rest := s.size/seg, s.size%seg
	switch {
	case s.size == 0:
		return 0, segmentCorrupt(0, "missing: the data has no segments at all")
	case rest == 0:
		return full * int64(s.h.SegmentSize), nil
	case rest < TagSize:
		return 0, segmentCorrupt(uint32(full), "shorter than its tag (truncated)")
	}
	return full*int64(s.h.SegmentSize) + rest - TagSize, nil
}

// Segment decrypts segment i.
func (s *SegmentReaderAt) Segment(i uint32, dst []byte) ([]byte, error) {
	seg := int64(s.h.SegmentSize) + TagSize
	off := int64(i) * seg
	if off >= s.size {
		return nil, segmentCorrupt(i, "past the end of the data")
	}
	n := min(seg, s.size-off)
	buf := make([]byte, n)
	if _, err := s.r.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF) && int64(len(buf)) == n) {
		return nil, fmt.Errorf("vault: reading segment %d: %w", i, err)
	}
	last := off+n == s.size
	nc := nonce(s.h.NoncePrefix, i, last)
	aad := segmentAAD(s.binding, i)
	out, err := s.aead.Open(dst[:0], nc[:], buf, aad[:])
	if err != nil {
		return nil, segmentCorrupt(i, "does not verify")
	}
	return out, nil
}
