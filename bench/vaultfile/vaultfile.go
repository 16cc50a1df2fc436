// Package vaultfile encrypts and decrypts files with Rampart's vault (package vault) and with
// age (filippo.io/age), the same way for both, for the weights-vault benchmarks in bench/
// (vault_test.go). The test process calls these functions directly, and cmd/vaultfile runs
// them in a process of its own, so that Rampart can be compared with the age command paying
// the same process costs. It imports neither OPA nor the rest of the bench package, so that
// process starts as quickly as the age command does.
//
// Every function here uses only the public API a caller of the vault would use: vault.Encrypt
// and vault.Decrypt with a local keyring, io.Copy between files. Nothing is tuned for the
// benchmark (no larger buffers, no bufio), and age gets exactly the same treatment.
package vaultfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"rampart.dev/rampart/vault"
)

// ObjectID and Version name the object every benchmark encrypts, as the weights service would
// name version 1 of weights/bench.
const (
	ObjectID = "weights/bench"
	Version  = 1
)

// HeaderSuffix is appended to a Rampart ciphertext's file name for its header: storage keeps
// the header and the segments apart (docs/vault-format.md), and so does EncryptFile.
const HeaderSuffix = ".hdr"

// EncryptFile encrypts the file in with vault.Encrypt (the default segment size) into out
// (the segments) and out+HeaderSuffix (the header). It returns the plaintext's digest.
func EncryptFile(ctx context.Context, kp vault.KeyProvider, in, out string) (vault.Digest, error) {
	src, err := os.Open(in)
	if err != nil {
		return vault.Digest{}, err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return vault.Digest{}, err
	}
	h, d, err := vault.Encrypt(ctx, kp, ObjectID, Version, 0, src, dst)
	if err != nil {
		dst.Close()
		return vault.Digest{}, fmt.Errorf("encrypt %s: %w", in, err)
	}
	if err := dst.Close(); err != nil {
		return vault.Digest{}, err
	}
	hb, err := h.MarshalBinary()
	if err != nil {
		return vault.Digest{}, err
	}
	return d, os.WriteFile(out+HeaderSuffix, hb, 0o600)
}

// DecryptFile decrypts what EncryptFile wrote to in (and in+HeaderSuffix) into out, with
// vault.Decrypt. It returns the plaintext bytes written.
func DecryptFile(ctx context.Context, kp vault.KeyProvider, in, out string) (int64, error) {
	hb, err := os.ReadFile(in + HeaderSuffix)
	if err != nil {
		return 0, err
	}
	h, err := vault.ReadHeader(bytes.NewReader(hb))
	if err != nil {
		return 0, err
	}
	src, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	r, err := vault.Decrypt(ctx, kp, h, src)
	if err != nil {
		return 0, err
	}
	dst, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(dst, r)
	if err != nil {
		dst.Close()
		return n, fmt.Errorf("decrypt %s: %w", in, err)
	}
	return n, dst.Close()
}

// AgeEncryptFile encrypts the file in to out for the recipient with age.Encrypt, as the age
// command does (io.Copy into the encrypting writer).
func AgeEncryptFile(rcpt age.Recipient, in, out string) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(out)
	if err != nil {
		return err
	}
	w, err := age.Encrypt(dst, rcpt)
	if err == nil {
		_, err = io.Copy(w, src)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		dst.Close()
		return fmt.Errorf("age encrypt %s: %w", in, err)
	}
	return dst.Close()
}

// AgeDecryptFile decrypts the file in to out with age.Decrypt.
func AgeDecryptFile(id age.Identity, in, out string) (int64, error) {
	src, err := os.Open(in)
	if err != nil {
		return 0, err
	}
	defer src.Close()
	r, err := age.Decrypt(src, id)
	if err != nil {
		return 0, fmt.Errorf("age decrypt %s: %w", in, err)
	}
	dst, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(dst, r)
	if err != nil {
		dst.Close()
		return n, fmt.Errorf("age decrypt %s: %w", in, err)
	}
	return n, dst.Close()
}

// ReadAgeIdentity reads an age identity file (as age-keygen writes it) holding one X25519
// identity.
func ReadAgeIdentity(path string) (*age.X25519Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("%s: %d identities, want 1", path, len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an X25519 identity", path, ids[0])
	}
	return id, nil
}

// Pattern is an endless, deterministic stream of pseudo-random bytes: one block of ChaCha8
// output (1 MiB + 4,099 bytes, so that no two consecutive segments or chunks are alike)
// repeated. Producing it costs a memory copy, so a 10 GiB stream needs neither a 10 GiB file
// nor a random-number generator in the measurement.
type Pattern struct {
	block []byte
	off   int
}

// PatternBlock is the length of the block a Pattern repeats.
const PatternBlock = 1<<20 + 4099

// NewPattern returns a Pattern at its start. All Patterns produce the same bytes.
func NewPattern() *Pattern {
	b := make([]byte, PatternBlock)
	_, _ = rand.NewChaCha8([32]byte{'v', 'a', 'u', 'l', 't'}).Read(b)
	return &Pattern{block: b}
}

// Read fills p; it never fails.
func (p *Pattern) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.block[p.off:])
		n += c
		p.off = (p.off + c) % len(p.block)
	}
	return n, nil
}

// PatternChecker is a writer that checks that what it is given is a Pattern's stream from its
// start, comparing in place (no copy).
type PatternChecker struct {
	block []byte
	off   int
	n     int64
}

// NewPatternChecker returns a checker expecting a Pattern's bytes from the start.
func NewPatternChecker() *PatternChecker { return &PatternChecker{block: NewPattern().block} }

// Write fails at the first byte that differs from the pattern.
func (c *PatternChecker) Write(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := min(len(b)-n, len(c.block)-c.off)
		if !bytes.Equal(b[n:n+k], c.block[c.off:c.off+k]) {
			return n, fmt.Errorf("plaintext differs from the generated stream within bytes %d..%d", c.n+int64(n), c.n+int64(n+k))
		}
		n += k
		c.off = (c.off + k) % len(c.block)
	}
	c.n += int64(n)
	return n, nil
}

// N is the number of bytes checked.
func (c *PatternChecker) N() int64 { return c.n }

// counter counts and drops what it is written.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// NewObject does what vault.Encrypt does before it writes the first segment: a header with
// the default segment size and a fresh nonce prefix, and a fresh data key wrapped by kp's
// current key. It is for writing with vault.NewWriter directly, which Encrypt wraps.
func NewObject(ctx context.Context, kp vault.KeyProvider) (*vault.Header, []byte, error) {
	h := &vault.Header{SegmentSize: vault.DefaultSegmentSize, NoncePrefix: vault.NewNoncePrefix(), ObjectID: ObjectID, ObjectVersion: Version, KeyID: "pending", WrappedDEK: []byte{0}}
	dek := vault.NewDEK()
	binding := h.Binding()
	var err error
	if h.KeyID, h.WrappedDEK, err = kp.Wrap(ctx, dek, binding[:]); err != nil {
		return nil, nil, fmt.Errorf("wrap the data key: %w", err)
	}
	return h, dek, nil
}

// StreamResult is what a streaming run measured in its own process.
type StreamResult struct {
	Tool  string `json:"tool"`
	Bytes int64  `json:"bytes"`
	// EncryptSeconds: the generator through the encrypter into a counting sink.
	EncryptSeconds float64 `json:"encrypt_seconds"`
	// RoundTripSeconds: the generator through the encrypter, a pipe and the decrypter into a
	// checker of the plaintext.
	RoundTripSeconds float64 `json:"round_trip_seconds"`
	// Peak resident memory (VmHWM, KiB) of each phase; the high-water mark is reset between
	// them (if /proc/self/clear_refs cannot be written, each is the peak so far). -1 if
	// /proc/self/status could not be read.
	EncryptPeakKiB   int64 `json:"encrypt_peak_kib"`
	RoundTripPeakKiB int64 `json:"round_trip_peak_kib"`
}

// StreamRampart streams size bytes of a Pattern through the vault without touching the disk,
// in two phases: vault.Encrypt into a sink that counts the ciphertext; then a vault.Writer
// (what Encrypt writes with) through an io.Pipe into vault.Decrypt, whose plaintext is checked
// against the pattern. Two phases because Encrypt returns the header only at the end, and
// Decrypt needs it to start; the second phase's encrypter wraps its data key as Encrypt does,
// so Decrypt unwraps it through the key provider.
func StreamRampart(ctx context.Context, kp vault.KeyProvider, size int64) (StreamResult, error) {
	res := StreamResult{Tool: "rampart", Bytes: size}
	resetPeak()
	t0 := time.Now()
	var sink counter
	h, d, err := vault.Encrypt(ctx, kp, ObjectID, Version, 0, io.LimitReader(NewPattern(), size), &sink)
	if err != nil {
		return res, err
	}
	res.EncryptSeconds = time.Since(t0).Seconds()
	res.EncryptPeakKiB = PeakRSS()
	if d.Size != size || sink.n != vault.CiphertextSize(size, h.SegmentSize) {
		return res, fmt.Errorf("encrypt: %d plaintext bytes in, %d ciphertext bytes out; want %d and %d", d.Size, sink.n, size, vault.CiphertextSize(size, h.SegmentSize))
	}

	resetPeak()
	t0 = time.Now()
	h, dek, err := NewObject(ctx, kp)
	if err != nil {
		return res, err
	}
	pr, pw := io.Pipe()
	go func() {
		w, err := vault.NewWriter(pw, h, dek)
		if err == nil {
			_, err = io.Copy(w, io.LimitReader(NewPattern(), size))
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	r, err := vault.Decrypt(ctx, kp, h, pr)
	if err != nil {
		pr.CloseWithError(err)
		return res, err
	}
	check := NewPatternChecker()
	_, err = io.Copy(check, r)
	pr.CloseWithError(errors.New("done"))
	if err != nil {
		return res, err
	}
	res.RoundTripSeconds = time.Since(t0).Seconds()
	res.RoundTripPeakKiB = PeakRSS()
	if check.N() != size {
		return res, fmt.Errorf("round trip: %d bytes decrypted, want %d", check.N(), size)
	}
	return res, nil
}

// StreamAge does for age what StreamRampart does for the vault: age.Encrypt into a counting
// sink, then age.Encrypt through an io.Pipe into age.Decrypt and a checker.
func StreamAge(rcpt age.Recipient, id age.Identity, size int64) (StreamResult, error) {
	res := StreamResult{Tool: "age", Bytes: size}
	resetPeak()
	t0 := time.Now()
	var sink counter
	w, err := age.Encrypt(&sink, rcpt)
	if err == nil {
		_, err = io.Copy(w, io.LimitReader(NewPattern(), size))
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return res, err
	}
	res.EncryptSeconds = time.Since(t0).Seconds()
	res.EncryptPeakKiB = PeakRSS()
	if sink.n < size {
		return res, fmt.Errorf("age encrypt: %d ciphertext bytes for %d plaintext bytes", sink.n, size)
	}

	resetPeak()
	t0 = time.Now()
	pr, pw := io.Pipe()
	go func() {
		w, err := age.Encrypt(pw, rcpt)
		if err == nil {
			_, err = io.Copy(w, io.LimitReader(NewPattern(), size))
		}
		if err == nil {
			err = w.Close()
		}
		pw.CloseWithError(err)
	}()
	r, err := age.Decrypt(pr, id)
	if err != nil {
		pr.CloseWithError(err)
		return res, err
	}
	check := NewPatternChecker()
	_, err = io.Copy(check, r)
	pr.CloseWithError(errors.New("done"))
	if err != nil {
		return res, err
	}
	res.RoundTripSeconds = time.Since(t0).Seconds()
	res.RoundTripPeakKiB = PeakRSS()
	if check.N() != size {
		return res, fmt.Errorf("age round trip: %d bytes decrypted, want %d", check.N(), size)
	}
	return res, nil
}

// PeakRSS is this process's peak resident memory in KiB (VmHWM in /proc/self/status), or -1.
func PeakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// resetPeak resets VmHWM to the current resident size (Linux: "5" to clear_refs).
func resetPeak() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
