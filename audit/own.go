package audit

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// AppendWatcher hears, from the store, of every entry this process appends, so that the ledger
// can check what it signs against what this process wrote (invariant 5). Its calls must not
// block: stores make them while holding their write lock.
type AppendWatcher interface {
	// Appending is called inside the appending transaction once the entry has its sequence
	// number and before it commits. An error refuses the append, and with it the change.
	Appending(seq int64) error
	// Committed is called after the transaction committed, with the entry's leaf hash.
	Committed(seq int64, leafHash []byte)
	// Abandoned is called after the transaction rolled back or its commit failed.
	Abandoned(seq int64)
}

// ownAppends is what this process appended and has not yet found in the tree: the unsigned
// tail it can vouch for. Entries other replicas appended are not here; see docs/ledger.md for
// what a deployment of several replicas can and cannot prove.
type ownAppends struct {
	mu      sync.Mutex
	pending map[int64]struct{} // appended in a transaction not yet finished
	mine    map[int64][]byte   // committed by this process: seq → leaf hash
}

var _ AppendWatcher = (*Ledger)(nil)

// Appending implements AppendWatcher: it refuses every append once the ledger raised a tamper
// alarm (a change the ledger could not vouch for must not happen, invariant 4) and otherwise
// marks seq as in flight, so that no checkpoint covers it before its hash is known.
func (l *Ledger) Appending(seq int64) error {
	if a := l.Alarm(); a != nil {
		return fmt.Errorf("the ledger raised a tamper alarm, so changes are refused until an operator investigates: %w", a)
	}
	l.own.mu.Lock()
	defer l.own.mu.Unlock()
	l.own.pending[seq] = struct{}{}
	return nil
}

// Committed implements AppendWatcher: it remembers the leaf hash of an entry this process
// committed, until the tree has read the entry back and matched it.
func (l *Ledger) Committed(seq int64, leafHash []byte) {
	l.own.mu.Lock()
	defer l.own.mu.Unlock()
	delete(l.own.pending, seq)
	l.own.mine[seq] = bytes.Clone(leafHash)
}

// Abandoned implements AppendWatcher.
func (l *Ledger) Abandoned(seq int64) {
	l.own.mu.Lock()
	defer l.own.mu.Unlock()
	delete(l.own.pending, seq)
}

// verifyOwnLocked compares every leaf read from the store with the hash this process
// remembered when it committed that entry, and advances l.verified, the number of leaves a
// checkpoint may cover. It stops at an entry of this process still in flight: its leaf was read,
// but its hash is not known yet. A mismatch means that someone changed the store between this
// process's commit and its read: it raises the alarm.
func (l *Ledger) verifyOwnLocked() error {
	l.own.mu.Lock()
	defer l.own.mu.Unlock()
	// An entry committed after the tree passed it (a store whose head was moved back) is
	// checked too.
	for seq, h := range l.own.mine {
		if seq < 0 || uint64(seq) >= l.verified {
			continue
		}
		delete(l.own.mine, seq)
		if err := l.compareLocked(uint64(seq), h); err != nil {
			return err
		}
	}
	for l.verified < l.tree.Size() {
		seq := int64(l.verified)
		if _, inFlight := l.own.pending[seq]; inFlight {
			return nil
		}
		if h, ok := l.own.mine[seq]; ok {
			delete(l.own.mine, seq)
			if err := l.compareLocked(l.verified, h); err != nil {
				return err
			}
		}
		l.verified++
	}
	return nil
}

func (l *Ledger) compareLocked(i uint64, want []byte) error {
	got := l.tree.Leaf(i)
	if bytes.Equal(got, want) {
		return nil
	}
	return l.raiseLocked(&TamperError{
		Reason: fmt.Sprintf("entry %d, which this server appended, was changed in the database before any checkpoint covered it (leaf hash %x when committed, %x as stored); no checkpoint will be signed over it", i, want, got),
		Size:   i + 1,
	})
}

// Alarm returns the tamper alarm this ledger raised, or nil. Once raised it stays: the ledger
// signs no checkpoint and refuses every append (the server fails closed, invariant 6).
func (l *Ledger) Alarm() *TamperError {
	return l.alarm.Load()
}

// RaiseAlarm records evidence of tampering found outside the ledger itself (a witness that
// cosigned a longer or different history than the store holds). It returns the alarm in force:
// the first one raised.
func (l *Ledger) RaiseAlarm(e *TamperError) *TamperError {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raiseLocked(e)
}

func (l *Ledger) raiseLocked(e *TamperError) *TamperError {
	if e.At.IsZero() {
		e.At = l.now().UTC()
	}
	if !l.alarm.CompareAndSwap(nil, e) {
		return l.alarm.Load()
	}
	l.log.Error("LEDGER TAMPER ALARM: the ledger will sign nothing more and refuses every change", "reason", e.Reason, "at", e.At.Format(time.RFC3339Nano))
	if l.onAlarm != nil {
		l.onAlarm(e)
	}
	return e
}
