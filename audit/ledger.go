package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Record is one stored ledger entry.
type Record struct {
	Seq  int64
	Data []byte
}

// Appender appends an event to the ledger. Stores implement it on their transactions, so the
// entry commits or rolls back with the change it records (invariant 4).
type Appender interface {
	Append(ctx context.Context, e Event) (seq int64, err error)
}

// Store is what the ledger reads from persistence.
type Store interface {
	// Entries returns up to limit entries with Seq >= from, in order.
	Entries(ctx context.Context, from int64, limit int) ([]Record, error)
	// PutCheckpoint stores a signed checkpoint of the given size.
	PutCheckpoint(ctx context.Context, size int64, signed []byte) error
	// LatestCheckpoint returns the stored signed checkpoint with the largest size, or nil.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// UpdateCheckpoint replaces the stored checkpoint of the given size with the same
	// checkpoint carrying more signatures (witness cosignatures).
	UpdateCheckpoint(ctx context.Context, size int64, signed []byte) error
}

// Pin keeps the newest checkpoint outside the database (a file beside the signing key), so that
// someone who can edit the database cannot also delete the evidence of what it held.
type Pin interface {
	Load() ([]byte, error) // nil, nil when nothing is pinned yet
	Save(signed []byte) error
}

// FilePin is a Pin kept in a file (written atomically, readable only by its owner).
type FilePin string

// Load reads the pinned checkpoint; a missing file is nothing pinned.
func (p FilePin) Load() ([]byte, error) {
	b, err := os.ReadFile(string(p))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// Save replaces the pinned checkpoint.
func (p FilePin) Save(signed []byte) error {
	tmp := string(p) + ".tmp"
	if err := os.WriteFile(tmp, signed, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(p))
}

// TamperError reports that stored history does not match a signed checkpoint. A server that
// gets one refuses to serve: the ledger can no longer prove anything.
type TamperError struct {
	Reason     string
	Size       uint64
	Expected   []byte
	Calculated []byte
	// At is when a running ledger raised it as an alarm (zero for errors found on opening).
	At time.Time
}

func (e *TamperError) Error() string {
	if e.Expected != nil {
		return fmt.Sprintf("ledger tampered: %s: the signed checkpoint of size %d has root %x, but the entries hash to %x", e.Reason, e.Size, e.Expected, e.Calculated)
	}
	return "ledger tampered: " + e.Reason
}

// SequenceError reports an entry out of place: missing, duplicated or reordered.
type SequenceError struct {
	Want, Got int64
}

func (e *SequenceError) Error() string {
	return fmt.Sprintf("ledger entry %d is out of sequence: it says it is entry %d", e.Want, e.Got)
}

// AppendEntry checks that data is the next entry (its metadata.sequence equals the tree size)
// and adds its leaf hash.
func (t *Tree) AppendEntry(data []byte) error {
	var e struct {
		Metadata struct {
			Sequence *int64 `json:"sequence"`
		} `json:"metadata"`
	}
	want := int64(t.Size())
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("ledger entry %d is not valid JSON: %w", want, err)
	}
	if e.Metadata.Sequence == nil || *e.Metadata.Sequence != want {
		got := int64(-1)
		if e.Metadata.Sequence != nil {
			got = *e.Metadata.Sequence
		}
		return &SequenceError{Want: want, Got: got}
	}
	t.Append(LeafHash(data))
	return nil
}

// Ledger is the running ledger: an in-memory Merkle tree kept in step with the store, the
// signing key, and the checkpoints issued so far. It is safe for concurrent use.
type Ledger struct {
	store    Store
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	pin      Pin
	log      *slog.Logger
	now      func() time.Time
	onAlarm  func(*TamperError)
	wits     []note.Verifier

	mu       sync.Mutex
	tree     *Tree
	last     Checkpoint // newest checkpoint verified or issued
	verified uint64     // leaves checked against this process's own appends; what may be signed

	own   ownAppends
	alarm atomic.Pointer[TamperError]
}

// Options configure Open.
type Options struct {
	Store Store
	// SigningKey is the note signing key (PRIVATE+KEY+…); its name is the ledger's origin.
	SigningKey string
	Pin        Pin
	Logger     *slog.Logger
	// Now is the clock that dates checkpoints (default time.Now).
	Now func() time.Time
	// OnAlarm is called once, when the running ledger finds evidence of tampering (see
	// Alarm). It must not call back into the ledger.
	OnAlarm func(*TamperError)
	// Witnesses are the cosignature keys of the witnesses that cosign checkpoints; Cosignatures
	// reports theirs.
	Witnesses []note.Verifier
}

const syncPage = 1000

// Open loads every stored entry, rebuilds the tree and verifies it against the newest checkpoint
// in the store and the pinned one. Any mismatch, gap, or checkpoint the key did not sign is a
// *TamperError or *SequenceError, and the caller must refuse to serve.
func Open(ctx context.Context, o Options) (*Ledger, error) {
	signer, err := NewSigner(o.SigningKey)
	if err != nil {
		return nil, err
	}
	vkey, err := VerifierKey(o.SigningKey)
	if err != nil {
		return nil, err
	}
	verifier, err := NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	l := &Ledger{store: o.Store, signer: signer, verifier: verifier, vkey: vkey, pin: o.Pin, log: o.Logger, now: o.Now, onAlarm: o.OnAlarm, wits: o.Witnesses, tree: NewTree(),
		own: ownAppends{pending: map[int64]struct{}{}, mine: map[int64][]byte{}}}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	if err := l.syncLocked(ctx); err != nil {
		return nil, err
	}
	stored, err := o.Store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("read latest checkpoint: %w", err)
	}
	var pinned []byte
	if o.Pin != nil {
		if pinned, err = o.Pin.Load(); err != nil {
			return nil, fmt.Errorf("read pinned checkpoint: %w", err)
		}
	}
	var sizes [2]uint64
	for i, c := range []struct {
		what   string
		signed []byte
	}{{"checkpoint in the database", stored}, {"pinned checkpoint", pinned}} {
		if c.signed == nil {
			continue
		}
		cp, err := OpenCheckpoint(c.signed, verifier)
		if err != nil {
			return nil, &TamperError{Reason: c.what + ": " + err.Error()}
		}
		if err := l.syncedCheckLocked(ctx, cp); err != nil {
			return nil, fmt.Errorf("%s: %w", c.what, err)
		}
		sizes[i] = cp.Size
		if cp.Size >= l.last.Size {
			l.last = cp
		}
	}
	// Checkpoints are stored before they are pinned, so the database always holds one at least
	// as new as the pin. Less means checkpoints were deleted from the database.
	if pinned != nil && sizes[1] > sizes[0] {
		return nil, &TamperError{Reason: fmt.Sprintf("a checkpoint of size %d is pinned but the database's newest is of size %d; checkpoints were deleted from the database", sizes[1], sizes[0])}
	}
	l.log.Info("ledger verified", "entries", l.tree.Size(), "checkpoint_size", l.last.Size, "origin", signer.Name())
	return l, nil
}

// syncedCheckLocked checks cp after reading every entry it covers. A checkpoint newer than the
// tree is normal with several replicas: another one appended and signed after this one last
// read the store (issue 11, item 10). Only entries still missing after a fresh read mean that
// history was deleted.
func (l *Ledger) syncedCheckLocked(ctx context.Context, cp Checkpoint) error {
	if cp.Size > l.tree.Size() {
		if err := l.syncLocked(ctx); err != nil {
			return err
		}
	}
	return l.checkLocked(cp)
}

// checkLocked verifies that the tree's first cp.Size leaves have cp.Root.
func (l *Ledger) checkLocked(cp Checkpoint) error {
	if cp.Size > l.tree.Size() {
		return &TamperError{Reason: fmt.Sprintf("a signed checkpoint covers %d entries but only %d are stored; history was deleted", cp.Size, l.tree.Size())}
	}
	root, err := l.tree.Root(cp.Size)
	if err != nil {
		return err
	}
	if !bytes.Equal(root, cp.Root) {
		return &TamperError{Reason: "stored entries were changed", Size: cp.Size, Expected: cp.Root, Calculated: root}
	}
	return nil
}

// Origin is the ledger's name, the first line of its checkpoints.
func (l *Ledger) Origin() string { return l.signer.Name() }

// VerifierKey is the public key that verifies this ledger's checkpoints.
func (l *Ledger) VerifierKey() string { return l.vkey }

// Size is the number of entries known to this process.
func (l *Ledger) Size() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tree.Size()
}

// Sync reads entries appended since the last call (by this process or another replica).
func (l *Ledger) Sync(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncLocked(ctx)
}

func (l *Ledger) syncLocked(ctx context.Context) error {
	for {
		recs, err := l.store.Entries(ctx, int64(l.tree.Size()), syncPage)
		if err != nil {
			return fmt.Errorf("read ledger entries: %w", err)
		}
		for _, r := range recs {
			if r.Seq != int64(l.tree.Size()) {
				return &SequenceError{Want: int64(l.tree.Size()), Got: r.Seq}
			}
			if err := l.tree.AppendEntry(r.Data); err != nil {
				return err
			}
		}
		if len(recs) < syncPage {
			return l.verifyOwnLocked()
		}
	}
}

// Checkpoint syncs and, if the ledger grew since the last checkpoint, signs a new one, stores it
// and pins it. It returns the newest signed checkpoint.
//
// It signs only what it can vouch for: every entry this process appended must read back from
// the store with the hash it had when it was committed (a mismatch raises the alarm and nothing
// is signed), and an entry of this process still being committed ends the checkpoint before it.
func (l *Ledger) Checkpoint(ctx context.Context) ([]byte, Checkpoint, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.Alarm(); a != nil {
		return nil, Checkpoint{}, a
	}
	if err := l.syncLocked(ctx); err != nil {
		return nil, Checkpoint{}, err
	}
	size := l.verified
	// Another replica may have issued a newer one.
	if stored, err := l.store.LatestCheckpoint(ctx); err != nil {
		return nil, Checkpoint{}, fmt.Errorf("read latest checkpoint: %w", err)
	} else if stored != nil {
		cp, err := OpenCheckpoint(stored, l.verifier)
		if err != nil {
			return nil, Checkpoint{}, &TamperError{Reason: "checkpoint in the database: " + err.Error()}
		}
		if err := l.syncedCheckLocked(ctx, cp); err != nil {
			return nil, Checkpoint{}, err
		}
		if cp.Size >= size && cp.Size > 0 {
			l.last = cp
			return stored, cp, nil
		}
	}
	root, err := l.tree.Root(size)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	cp := Checkpoint{Origin: l.signer.Name(), Size: size, Root: root, Time: l.now().UTC().Truncate(time.Millisecond)}
	signed, err := Sign(cp, l.signer)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	if err := l.store.PutCheckpoint(ctx, int64(cp.Size), signed); err != nil {
		return nil, Checkpoint{}, fmt.Errorf("store checkpoint: %w", err)
	}
	if l.pin != nil {
		if err := l.pin.Save(signed); err != nil {
			return nil, Checkpoint{}, fmt.Errorf("pin checkpoint: %w", err)
		}
	}
	l.last = cp
	return signed, cp, nil
}

// Verifier verifies the ledger's own signature on checkpoints.
func (l *Ledger) Verifier() note.Verifier { return l.verifier }

// Witnesses are the configured witnesses' cosignature keys.
func (l *Ledger) Witnesses() []note.Verifier { return l.wits }

// Cosignatures returns the configured witnesses' valid cosignatures on a signed checkpoint of
// this ledger (a zero time for a witness that has not cosigned it).
func (l *Ledger) Cosignatures(signed []byte) ([]Cosignature, error) {
	return Cosignatures(signed, l.verifier, l.wits)
}

// StoreCosigned replaces the stored checkpoint of its size with the same checkpoint carrying
// witness cosignatures. It must be a checkpoint this ledger signed, of a tree it holds.
func (l *Ledger) StoreCosigned(ctx context.Context, cosigned []byte) error {
	cp, err := OpenCheckpoint(cosigned, l.verifier)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.syncedCheckLocked(ctx, cp); err != nil {
		return err
	}
	if err := l.store.UpdateCheckpoint(ctx, int64(cp.Size), cosigned); err != nil {
		return fmt.Errorf("store the cosigned checkpoint: %w", err)
	}
	return nil
}

// ErrNoCheckpoint is returned by Latest before any checkpoint was issued.
var ErrNoCheckpoint = errors.New("no checkpoint has been issued yet")

// Latest returns the newest stored checkpoint, verified with the ledger's key and against the
// tree. It writes nothing.
func (l *Ledger) Latest(ctx context.Context) ([]byte, Checkpoint, error) {
	stored, err := l.store.LatestCheckpoint(ctx)
	if err != nil {
		return nil, Checkpoint{}, fmt.Errorf("read latest checkpoint: %w", err)
	}
	if stored == nil {
		return nil, Checkpoint{}, ErrNoCheckpoint
	}
	cp, err := OpenCheckpoint(stored, l.verifier)
	if err != nil {
		return nil, Checkpoint{}, &TamperError{Reason: "checkpoint in the database: " + err.Error()}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensure(ctx, cp.Size); err != nil {
		return nil, Checkpoint{}, err
	}
	if err := l.checkLocked(cp); err != nil {
		return nil, Checkpoint{}, err
	}
	return stored, cp, nil
}

// ErrBeyondTree is returned for proofs about entries this ledger does not have.
var ErrBeyondTree = errors.New("the requested size is beyond the ledger")

// InclusionProof proves entry index is in the tree of the given size.
func (l *Ledger) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensure(ctx, size); err != nil {
		return nil, err
	}
	return l.tree.InclusionProof(index, size)
}

// ConsistencyProof proves the tree of size1 is a prefix of the tree of size2.
func (l *Ledger) ConsistencyProof(ctx context.Context, size1, size2 uint64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensure(ctx, size2); err != nil {
		return nil, err
	}
	return l.tree.ConsistencyProof(size1, size2)
}

// Root returns the root hash at size.
func (l *Ledger) Root(ctx context.Context, size uint64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.ensure(ctx, size); err != nil {
		return nil, err
	}
	return l.tree.Root(size)
}

func (l *Ledger) ensure(ctx context.Context, size uint64) error {
	if size > l.tree.Size() {
		if err := l.syncLocked(ctx); err != nil {
			return err
		}
	}
	if size > l.tree.Size() {
		return fmt.Errorf("%w: size %d requested, %d entries exist", ErrBeyondTree, size, l.tree.Size())
	}
	return nil
}

// SignNote signs text with the ledger's key as a signed note (golang.org/x/mod/sumdb/note), so
// that documents such as vault manifests can be verified offline with the same public key as
// checkpoints. The text's first line must name the document's kind (not the ledger's origin),
// so a signed note is never mistaken for a checkpoint.
func (l *Ledger) SignNote(text string) ([]byte, error) {
	if first, _, _ := strings.Cut(text, "\n"); first == l.signer.Name() {
		return nil, fmt.Errorf("audit: a note may not begin with the ledger's origin %q (that is a checkpoint)", first)
	}
	return note.Sign(&note.Note{Text: text}, l.signer)
}

// OpenNote verifies a note signed by SignNote and returns its text.
func (l *Ledger) OpenNote(signed []byte) (string, error) {
	n, err := note.Open(signed, note.VerifierList(l.verifier))
	if err != nil {
		return "", fmt.Errorf("signature does not verify with key %q: %w", l.verifier.Name(), err)
	}
	return n.Text, nil
}
