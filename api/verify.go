package api

import (
	"context"
	"fmt"
	"net/http"

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
func VerifyLedger(ctx context.Context, c *Client, pinnedKey string, previous []byte) (LedgerReport, error) {
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
