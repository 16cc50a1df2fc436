package audit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// MaxEntrySize bounds one exported entry line.
const MaxEntrySize = 16 << 20

// ReadExport rebuilds a tree from JSON-lines entries (as `rampart audit export` writes them),
// checking that they are in sequence.
func ReadExport(r io.Reader) (*Tree, error) {
	t := NewTree()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxEntrySize)
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			return nil, fmt.Errorf("line %d is empty; an export has one entry per line and nothing else", line)
		}
		if err := t.AppendEntry(sc.Bytes()); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("after line %d: %w", line, err)
	}
	return t, nil
}

// CheckTree verifies that the tree's first cp.Size leaves have the checkpoint's root.
func CheckTree(t *Tree, cp Checkpoint) error {
	if t.Size() < cp.Size {
		return &TamperError{Reason: fmt.Sprintf("the checkpoint covers %d entries but only %d were given", cp.Size, t.Size())}
	}
	root, err := t.Root(cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Root) {
		return &TamperError{Reason: "the entries differ from what the checkpoint signed", Size: cp.Size, Expected: cp.Root, Calculated: root}
	}
	return nil
}

// VerifyExport verifies exported entries against a signed checkpoint and the ledger's public
// key, with nothing but these three inputs: the auditor's offline check.
func VerifyExport(entries io.Reader, signedCheckpoint []byte, vkey string) (*Tree, Checkpoint, error) {
	v, err := NewVerifier(vkey)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	cp, err := OpenCheckpoint(signedCheckpoint, v)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	t, err := ReadExport(entries)
	if err != nil {
		return nil, cp, err
	}
	return t, cp, CheckTree(t, cp)
}
