package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint commits to the first Size entries of a ledger.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Time is when the ledger signed the checkpoint (millisecond precision), written as the
	// one extension line Rampart uses (TimeLine). Checkpoints signed before Rampart wrote it
	// have none: Time is zero.
	Time time.Time
}

// TimeLine is the prefix of the checkpoint extension line that carries the signing time, in
// UTC with milliseconds (TimeLayout): "rampart-time 2026-12-07T11:12:13.042Z". It follows the
// root hash, as c2sp.org/tlog-checkpoint places extension lines. The name keeps it apart from
// other logs' extensions and from the "time" line of a witness's cosigned message.
const TimeLine = "rampart-time "

// TimeLayout is the one layout of the time line: fixed width, so that a time has one spelling.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// Marshal returns the checkpoint body: origin, size and base64 root, then the time line when
// the checkpoint has a time, each followed by a newline.
func (c Checkpoint) Marshal() []byte {
	b := fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
	if !c.Time.IsZero() {
		b = fmt.Appendf(b, "%s%s\n", TimeLine, c.Time.UTC().Format(TimeLayout))
	}
	return b
}

// maxCheckpoint bounds the signed note accepted from anyone (with room for the cosignatures of
// many witnesses).
const maxCheckpoint = 16 << 10

// ParseCheckpoint parses a checkpoint body: origin, size and root hash, optionally followed by
// the time line Rampart writes (TimeLine). Every other extension line is refused, and so is
// any spelling that does not re-marshal to the same bytes: a body that meant different things
// to different readers would defeat the signature.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	lines := strings.Split(string(text), "\n")
	if (len(lines) != 4 && len(lines) != 5) || lines[len(lines)-1] != "" {
		return Checkpoint{}, errors.New("checkpoint must be three lines (origin, size, root hash) and at most Rampart's time line, each ending in a newline")
	}
	if lines[0] == "" {
		return Checkpoint{}, errors.New("checkpoint origin line is empty")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || (len(lines[1]) > 1 && lines[1][0] == '0') {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is not a decimal number", lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	c := Checkpoint{Origin: lines[0], Size: size, Root: root}
	if len(lines) == 5 {
		ts, ok := strings.CutPrefix(lines[3], TimeLine)
		if !ok {
			return Checkpoint{}, fmt.Errorf("checkpoint extension line %q is not one Rampart writes (only %q followed by a time)", truncate(lines[3], 60), TimeLine)
		}
		t, err := time.Parse(TimeLayout, ts)
		if err != nil || t.IsZero() || t.Format(TimeLayout) != ts {
			return Checkpoint{}, fmt.Errorf("checkpoint time %q is not a UTC time like 2026-12-07T11:12:13.042Z", truncate(ts, 40))
		}
		c.Time = t
	}
	return c, nil
}

// Sign returns the checkpoint as a signed note.
func Sign(c Checkpoint, s note.Signer) ([]byte, error) {
	if c.Origin != s.Name() {
		return nil, fmt.Errorf("audit: checkpoint origin %q differs from signing key name %q", c.Origin, s.Name())
	}
	return note.Sign(&note.Note{Text: string(c.Marshal())}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the verifier and parses it. The origin must
// equal the key's name, so a checkpoint of one ledger is never accepted for another.
func OpenCheckpoint(signed []byte, v note.Verifier) (Checkpoint, error) {
	if len(signed) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("signed checkpoint is %d bytes; the limit is %d", len(signed), maxCheckpoint)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature does not verify with key %q: %w", v.Name(), err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint is for ledger %q, but the key is for %q", c.Origin, v.Name())
	}
	return c, nil
}

// GenerateKey creates a new Ed25519 note signing key for a ledger named origin. skey is secret;
// vkey is the public verifier key to hand to auditors.
func GenerateKey(origin string) (skey, vkey string, err error) {
	if err := ValidOrigin(origin); err != nil {
		return "", "", err
	}
	return note.GenerateKey(rand.Reader, origin)
}

// ValidOrigin checks a ledger's name as signed notes require it: not empty, no spaces, no '+'.
func ValidOrigin(origin string) error {
	if origin == "" || strings.ContainsFunc(origin, func(r rune) bool { return r == '+' || unicode.IsSpace(r) }) {
		return fmt.Errorf("ledger origin %q: want a non-empty name without spaces or '+' (e.g. rampart.example.com)", origin)
	}
	return nil
}

// NewVerifier parses a verifier key ("<name>+<hash>+<base64 key>").
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("ledger public key %q is malformed (%v); it looks like name+hash+base64", truncate(vkey, 60), err)
	}
	return v, nil
}

// NewSigner parses a signing key ("PRIVATE+KEY+<name>+<hash>+<base64 key>").
func NewSigner(skey string) (note.Signer, error) {
	s, err := note.NewSigner(string(bytes.TrimSpace([]byte(skey))))
	if err != nil {
		return nil, fmt.Errorf("ledger signing key is malformed: %v", err)
	}
	return s, nil
}

// VerifierKey derives the public verifier key from a signing key.
func VerifierKey(skey string) (string, error) {
	// A signing key is PRIVATE+KEY+name+hash+base64(alg||seed); note does not expose the
	// derivation, so rebuild it from the Ed25519 seed.
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", errors.New("ledger signing key is malformed: want PRIVATE+KEY+name+hash+key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 33 || raw[0] != 1 {
		return "", errors.New("ledger signing key is not an Ed25519 note key")
	}
	return note.NewEd25519VerifierKey(parts[2], ed25519Public(raw[1:]))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func ed25519Public(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
