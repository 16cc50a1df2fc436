package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Witness cosignatures (c2sp.org/tlog-cosignature): a witness that checked a checkpoint against
// the one it cosigned before adds a timestamped signature line to the signed note. Verifying
// them uses github.com/transparency-dev/formats, which implements the cosignature/v1 format.

// Cosignature is a verified witness cosignature on a checkpoint.
type Cosignature struct {
	// Witness is the witness's key name.
	Witness string `json:"witness"`
	// Time is when the witness cosigned: as of then, this was the largest tree it had seen of
	// the ledger.
	Time time.Time `json:"time"`
}

// NewWitnessVerifier parses a witness's cosignature verifier key (name+hash+base64, signature
// type 0x04 for Ed25519 cosignature/v1 or 0x06 for ML-DSA-44), as a witness prints it.
func NewWitnessVerifier(vkey string) (note.Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) == 3 {
		if raw, err := base64.StdEncoding.DecodeString(parts[2]); err == nil && len(raw) > 0 && raw[0] == 0x01 {
			return nil, fmt.Errorf("witness key %q is a plain Ed25519 note key (type 0x01, like a log's), not a witness's cosignature key (type 0x04); use the key the witness prints as its verifier key", truncate(vkey, 60))
		}
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness key %q is malformed (%v); it looks like name+hash+base64, as the witness prints it", truncate(vkey, 60), err)
	}
	return v, nil
}

// MissingCosignatureError says which witness has not cosigned a checkpoint.
type MissingCosignatureError struct {
	Witness string
	Size    uint64
}

func (e *MissingCosignatureError) Error() string {
	return fmt.Sprintf("the checkpoint of size %d carries no valid cosignature from witness %s; without it nothing shows that the witness saw this history (a rolled-back database would look the same)", e.Size, e.Witness)
}

// OpenCosigned verifies a signed checkpoint with the ledger's verifier, as OpenCheckpoint does,
// and requires a valid cosignature from every witness. A signature line that names a known key
// but does not verify fails the whole note. It returns the cosignatures, one per witness, in
// the order of witnesses.
func OpenCosigned(signed []byte, log note.Verifier, witnesses []note.Verifier) (Checkpoint, []Cosignature, error) {
	cp, err := OpenCheckpoint(signed, log)
	if err != nil {
		return cp, nil, err
	}
	cos, err := Cosignatures(signed, log, witnesses)
	if err != nil {
		return cp, nil, err
	}
	for i, w := range witnesses {
		if cos[i].Time.IsZero() {
			return cp, nil, &MissingCosignatureError{Witness: w.Name(), Size: cp.Size}
		}
	}
	return cp, cos, nil
}

// Cosignatures returns, for each witness in order, its verified cosignature on the signed
// checkpoint, or a zero Cosignature (naming the witness) when it has none. An invalid
// signature by a known key is an error.
func Cosignatures(signed []byte, log note.Verifier, witnesses []note.Verifier) ([]Cosignature, error) {
	n, err := note.Open(signed, verifierList(log, witnesses))
	if err != nil {
		return nil, fmt.Errorf("the signed checkpoint does not verify: %w", err)
	}
	out := make([]Cosignature, len(witnesses))
	for i, w := range witnesses {
		out[i].Witness = w.Name()
		for _, s := range n.Sigs {
			if s.Name != w.Name() || s.Hash != w.KeyHash() {
				continue
			}
			ts, err := fnote.CoSigV1Timestamp(s)
			if err != nil {
				return nil, fmt.Errorf("cosignature by %s: %w", w.Name(), err)
			}
			out[i].Time = ts.UTC()
		}
	}
	return out, nil
}

// verifierList lists each distinct key once (the same witness given twice is one witness).
func verifierList(log note.Verifier, witnesses []note.Verifier) note.Verifiers {
	seen := map[string]bool{}
	var list []note.Verifier
	for _, v := range append([]note.Verifier{log}, witnesses...) {
		k := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
		if !seen[k] {
			seen[k] = true
			list = append(list, v)
		}
	}
	return note.VerifierList(list...)
}

// AddCosignatures adds the signature lines a witness returned (c2sp.org/tlog-witness: lines
// beginning with "— ", each ending in a newline) to the signed checkpoint. Only a valid
// cosignature by witness is kept; it replaces an older one by the same key. The log's own
// signature and other witnesses' cosignatures stay as they were.
func AddCosignatures(signed, lines []byte, log, witness note.Verifier) ([]byte, error) {
	n, err := note.Open(signed, note.VerifierList(log))
	if err != nil {
		return nil, fmt.Errorf("the signed checkpoint does not verify: %w", err)
	}
	if len(lines) == 0 || !bytes.HasSuffix(lines, []byte("\n")) {
		return nil, errors.New("the witness returned no signature lines")
	}
	// The lines are signatures on the same text: open them as a note of their own.
	cn, err := note.Open(append([]byte(n.Text+"\n"), lines...), note.VerifierList(witness))
	if err != nil {
		return nil, fmt.Errorf("the witness's cosignature does not verify with its key %s: %w", witness.Name(), err)
	}
	var fresh *note.Signature
	for i, s := range cn.Sigs {
		if s.Name == witness.Name() && s.Hash == witness.KeyHash() {
			fresh = &cn.Sigs[i]
		}
	}
	if fresh == nil {
		return nil, fmt.Errorf("the witness returned no cosignature by its key %s", witness.Name())
	}
	keep := func(list []note.Signature) []note.Signature {
		var out []note.Signature
		for _, s := range list {
			if s.Name != fresh.Name || s.Hash != fresh.Hash {
				out = append(out, s)
			}
		}
		return out
	}
	merged := &note.Note{Text: n.Text, Sigs: append(keep(n.Sigs), *fresh), UnverifiedSigs: keep(n.UnverifiedSigs)}
	out, err := note.Sign(merged)
	if err != nil {
		return nil, err
	}
	if len(out) > maxCheckpoint {
		return nil, fmt.Errorf("the cosigned checkpoint would be %d bytes; the limit is %d", len(out), maxCheckpoint)
	}
	return out, nil
}
