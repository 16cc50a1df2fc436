package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
)

// LedgerReport is what VerifyLedger established.
type LedgerReport struct {
	Origin     string
	Key        string
	Checkpoint audit.Checkpoint
	Signed     []byte
	// Previous is the checkpoint remembered from an earlier run, proven to be a prefix.
	Previous *audit.Checkpoint
	// Full is true when every entry was downloaded and re-hashed (admins and auditors).
	Full bool
	// Cosignatures are the required witnesses' verified cosignatures, in the order given.
	Cosignatures []audit.Cosignature
}

// VerifyOptions are what VerifyLedger requires beyond the ledger's own signature.
type VerifyOptions struct {
	// Witnesses are cosignature verifier keys: the checkpoint must carry a valid cosignature by
	// each (c2sp.org/tlog-cosignature).
	Witnesses []string
	// MaxAge, if not zero, also requires each of those cosignatures to be at most this old: a
	// witness that still cosigns the server's newest checkpoint has seen no longer history.
	MaxAge time.Duration
	// Wait bounds how long to wait for the witnesses to cosign the newest checkpoint (the
	// server asks them within a second or two of signing). Default 15s.
	Wait time.Duration
	// Now is the clock MaxAge is measured with (default time.Now).
	Now func() time.Time
}

// WitnessVerifiers parses witness keys.
func WitnessVerifiers(keys []string) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, k := range keys {
		v, err := audit.NewWitnessVerifier(k)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// CheckFresh requires every cosignature to be at most maxAge old (0: any age).
func CheckFresh(cos []audit.Cosignature, maxAge time.Duration, now time.Time) error {
	if maxAge == 0 {
		return nil
	}
	for _, c := range cos {
		if age := now.Sub(c.Time); age > maxAge {
			return fmt.Errorf("witness %s last cosigned this checkpoint at %s, %s ago (more than --max-age %s): either no witness has seen this history lately, or the witness has seen a longer one and refuses this one (a rolled-back ledger)",
				c.Witness, c.Time.Format(time.RFC3339), age.Round(time.Second), maxAge)
		}
	}
	return nil
}

// KeyChangedError means the server's ledger key differs from the one pinned on first use.
type KeyChangedError struct{ Pinned, Served string }

func (e *KeyChangedError) Error() string {
	return fmt.Sprintf("the server's ledger key changed: pinned %q, served %q; a new key cannot vouch for old history. If the change is legitimate, verify the new key out of band and run `rampart audit verify --reset-key`", e.Pinned, e.Served)
}

// VerifyLedger verifies the server's ledger from the outside: the newest checkpoint is signed by
// the pinned key (or the served one on first use), it is consistent with the checkpoint
// remembered from the last run (so history was not rewritten or truncated), and, for callers
// allowed to read entries, every entry re-hashes to the signed root.
//
// With witnesses (o.Witnesses), the checkpoint verified is the newest one that the server has
// stored, and it must carry each witness's valid cosignature (and be fresh enough, o.MaxAge).
func VerifyLedger(ctx context.Context, c *Client, pinnedKey string, previous []byte, o VerifyOptions) (LedgerReport, error) {
	var rep LedgerReport
	k, err := c.LedgerKey(ctx)
	if err != nil {
		return rep, err
	}
	if pinnedKey != "" && pinnedKey != k.Key {
		return rep, &KeyChangedError{Pinned: pinnedKey, Served: k.Key}
	}
	rep.Origin, rep.Key = k.Origin, k.Key
	v, err := audit.NewVerifier(k.Key)
	if err != nil {
		return rep, err
	}
	cr, err := c.Checkpoint(ctx)
	if err != nil {
		return rep, err
	}
	rep.Signed = []byte(cr.Checkpoint)
	if rep.Checkpoint, err = audit.OpenCheckpoint(rep.Signed, v); err != nil {
		return rep, err
	}
	if len(o.Witnesses) > 0 {
		if err := witnessed(ctx, c, v, &rep, o); err != nil {
			return rep, err
		}
	}
	if previous != nil {
		prev, err := audit.OpenCheckpoint(previous, v)
		if err != nil {
			return rep, fmt.Errorf("the remembered checkpoint does not verify: %w", err)
		}
		if prev.Size > rep.Checkpoint.Size {
			return rep, &audit.TamperError{Reason: fmt.Sprintf("the server's newest checkpoint covers %d entries, fewer than the %d it showed before: history was truncated", rep.Checkpoint.Size, prev.Size)}
		}
		proof, err := c.ConsistencyProof(ctx, prev.Size, rep.Checkpoint.Size)
		if err != nil {
			return rep, err
		}
		if err := audit.VerifyConsistency(prev.Size, rep.Checkpoint.Size, proof, prev.Root, rep.Checkpoint.Root); err != nil {
			return rep, &audit.TamperError{Reason: fmt.Sprintf("the ledger is not an extension of the checkpoint of size %d seen before (%v): history was rewritten", prev.Size, err)}
		}
		rep.Previous = &prev
	}
	tree := audit.NewTree()
	if rep.Checkpoint.Size == 0 {
		rep.Full = true
		return rep, nil
	}
	err = c.Entries(ctx, 0, rep.Checkpoint.Size, func(_ uint64, data []byte) error { return tree.AppendEntry(data) })
	switch {
	case IsStatus(err, http.StatusForbidden):
		return rep, nil
	case err != nil:
		return rep, err
	}
	if err := audit.CheckTree(tree, rep.Checkpoint); err != nil {
		return rep, err
	}
	rep.Full = true
	return rep, nil
}

// witnessed waits for the newest stored checkpoint to carry every witness's cosignature, and
// puts it in rep.
func witnessed(ctx context.Context, c *Client, v note.Verifier, rep *LedgerReport, o VerifyOptions) error {
	ws, err := WitnessVerifiers(o.Witnesses)
	if err != nil {
		return err
	}
	wait, now := o.Wait, o.Now
	if wait == 0 {
		wait = 15 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	deadline := time.Now().Add(wait)
	for {
		cp, cos, err := audit.OpenCosigned(rep.Signed, v, ws)
		var missing *audit.MissingCosignatureError
		switch {
		case err == nil:
			rep.Checkpoint, rep.Cosignatures = cp, cos
			return CheckFresh(cos, o.MaxAge, now())
		case !errors.As(err, &missing) || time.Now().After(deadline):
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		cr, err := c.LatestCheckpoint(ctx)
		if err != nil {
			return err
		}
		rep.Signed = []byte(cr.Checkpoint)
	}
}

// ProvenEntry is a ledger entry proven to be in the ledger under a signed checkpoint.
type ProvenEntry struct {
	Seq   uint64 `json:"seq"`
	Entry []byte `json:"entry"`
	// Proof is the inclusion proof (RFC 6962) of the entry's leaf in the checkpoint's tree.
	Proof [][]byte `json:"proof"`
}

// ProveEntries fetches ledger entries (admins and auditors may read them) and proves each is
// in the ledger: its leaf hash, with the server's inclusion proof, must recompute the root of
// the newest checkpoint, signed by pinnedKey (or the served key when pinnedKey is empty). The
// entries are what an alert names as evidence (`rampart alerts show`).
func ProveEntries(ctx context.Context, c *Client, pinnedKey string, seqs []uint64) (LedgerReport, []ProvenEntry, error) {
	var rep LedgerReport
	k, err := c.LedgerKey(ctx)
	if err != nil {
		return rep, nil, err
	}
	if pinnedKey != "" && pinnedKey != k.Key {
		return rep, nil, &KeyChangedError{Pinned: pinnedKey, Served: k.Key}
	}
	rep.Origin, rep.Key = k.Origin, k.Key
	v, err := audit.NewVerifier(k.Key)
	if err != nil {
		return rep, nil, err
	}
	cr, err := c.Checkpoint(ctx)
	if err != nil {
		return rep, nil, err
	}
	rep.Signed = []byte(cr.Checkpoint)
	if rep.Checkpoint, err = audit.OpenCheckpoint(rep.Signed, v); err != nil {
		return rep, nil, err
	}
	size := rep.Checkpoint.Size
	var out []ProvenEntry
	for _, seq := range seqs {
		if seq >= size {
			return rep, out, fmt.Errorf("entry %d is not in the ledger: the newest checkpoint covers entries 0 to %d", seq, int64(size)-1)
		}
		var entry []byte
		if err := c.Entries(ctx, seq, 1, func(_ uint64, b []byte) error { entry = b; return nil }); err != nil {
			return rep, out, err
		}
		proof, err := c.InclusionProof(ctx, seq, size)
		if err != nil {
			return rep, out, err
		}
		if err := audit.VerifyInclusion(seq, size, audit.LeafHash(entry), proof, rep.Checkpoint.Root); err != nil {
			return rep, out, &audit.TamperError{Reason: fmt.Sprintf("entry %d as served is not the entry the signed checkpoint of size %d covers (%v)", seq, size, err)}
		}
		out = append(out, ProvenEntry{Seq: seq, Entry: entry, Proof: proof})
	}
	return rep, out, nil
}
