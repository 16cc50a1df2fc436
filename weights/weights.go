// Package weights is the weights vault: model artifacts stored encrypted (package vault) in a
// blob store (vault/blob), written and read only under an active grant on weights/<name>, with
// a signed manifest per version and a ledger entry, with its byte count, for every write, read,
// key release and deletion.
//
// Grants are checked by the decision engine when a transfer starts, again at every segment
// boundary while it runs (before each segment is released, the last one included; the check is
// an in-memory lookup, a few hundred nanoseconds per segment of 1 MiB by default), and, for an
// upload, when it ends (invariant 2): a download whose grant expires or is revoked stops before
// the next segment, and the client, which has not seen the end, discards what it received.
// A refusal is a weights.denied entry; since anyone can ask again and again, the server
// aggregates them per person and window (Service.Refused, invariant 11).
package weights

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
)

// Object is one version of a stored artifact.
type Object struct {
	Name        string    `json:"name"`
	Version     uint64    `json:"version"`
	State       string    `json:"state"` // uploading, ready, failed, deleted
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	SegmentSize uint32    `json:"segment_size"`
	KeyID       string    `json:"key_id"`
	Manifest    string    `json:"manifest"` // the signed note
	UploadedBy  string    `json:"uploaded_by"`
	GrantID     string    `json:"grant_id"`
	CreatedAt   time.Time `json:"created_at"`
	DeletedAt   time.Time `json:"deleted_at,omitzero"`
}

// Object states.
const (
	StateUploading = "uploading"
	StateReady     = "ready"
	StateFailed    = "failed"
	StateDeleted   = "deleted"
)

// Resource is the policy resource of an artifact.
func Resource(name string) string { return "weights/" + name }

// Meta keeps object metadata; ledger entries commit with the change they record.
type Meta interface {
	// BeginObject allocates the next version of name in state uploading.
	BeginObject(ctx context.Context, o Object) (uint64, error)
	// FinishObject stores o (state ready or failed) and appends ev, in one transaction.
	FinishObject(ctx context.Context, o Object, ev *audit.Event) error
	// DeleteObjects marks every version in objs deleted (at its DeletedAt) and appends its
	// event, all in one transaction, provided each is still ready; otherwise nothing changes
	// and the error wraps ErrNotFound.
	DeleteObjects(ctx context.Context, objs []Object, evs []audit.Event) error
	Objects(ctx context.Context, name string) ([]Object, error) // "" lists every name
	Object(ctx context.Context, name string, version uint64) (Object, error)
	SetKeyID(ctx context.Context, name string, version uint64, keyID string) error
}

// ErrNotFound means there is no such object (or version).
var ErrNotFound = errors.New("weights: no such object")

// Denied is a refusal by the decision engine, with what to do about it.
type Denied struct {
	Subject, Action, Resource, Reason string
}

func (d *Denied) Error() string {
	return fmt.Sprintf("%s may not %s %s: %s; request a role that grants it (rampart request create --resource %s --action %s)",
		d.Subject, d.Action, d.Resource, d.Reason, d.Resource, d.Action)
}

// ErrInvalid means the caller's input is wrong (a bad public key, a key id in use).
var ErrInvalid = errors.New("weights: invalid request")

// ErrConflict means the request conflicts with the vault's state (a key still in use).
var ErrConflict = errors.New("weights: conflict")

// ErrUnavailable means the decision engine or a store cannot answer: the vault refuses.
var ErrUnavailable = errors.New("weights: unavailable")

// Decider is the decision engine (authz.Index) as the vault asks it: before, during and after
// every transfer, and whether its answers can be trusted when it filters a list.
type Decider interface {
	Check(authz.Query) authz.Decision
	Health() error
}

// Service is the vault.
type Service struct {
	Keys  vault.KeyProvider
	Blobs blob.Store
	Meta  Meta
	// Decide answers every access decision (the server's *authz.Index).
	Decide Decider
	// Record appends a ledger entry on its own (reads, key releases).
	Record func(ctx context.Context, e audit.Event) error
	// Refused records a refusal, which any user can provoke at will: the server aggregates them
	// per user and window (audit/refusals, invariant 11). Nil: Record, one entry each.
	Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	// Sign signs a manifest (the ledger key's SignNote).
	Sign func(text string) ([]byte, error)
	Now  func() time.Time
	Log  *slog.Logger
	// SegmentSize for new objects (vault.DefaultSegmentSize if zero).
	SegmentSize uint32

	mu sync.Mutex // serializes rotation, retirement and the end of each upload
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$`)

// CheckName validates an artifact name (the part after weights/).
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("%w: %q is not an artifact name: 1-128 lowercase letters, digits, '.', '_' or '-', starting and ending with a letter or digit", ErrInvalid, name)
	}
	return nil
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// authorize asks the decision engine; a refusal is recorded.
func (s *Service) authorize(ctx context.Context, p identity.Principal, action, name string) (authz.Decision, error) {
	res := Resource(name)
	d := s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: res})
	if d.Unavailable {
		return d, fmt.Errorf("%w: the decision engine cannot answer (%s); refusing", ErrUnavailable, d.Reason)
	}
	if !d.Allowed {
		ev := audit.Event{Code: "weights.denied", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
			Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{res}, Failed: true,
			Message: fmt.Sprintf("%s may not %s %s: %s", p.Subject, action, res, d.Reason), Details: map[string]any{"action": action, "reason": d.Reason}}
		if s.Refused != nil {
			_, _ = s.Refused(ctx, "user "+p.Subject, ev)
		} else {
			_ = s.Record(ctx, ev)
		}
		return d, &Denied{Subject: p.Subject, Action: action, Resource: res, Reason: d.Reason}
	}
	return d, nil
}

func dataKey(name string, v uint64) string {
	return "objects/" + name + "/" + strconv.FormatUint(v, 10) + "/data"
}
func headerKey(name string, v uint64) string {
	return "objects/" + name + "/" + strconv.FormatUint(v, 10) + "/header"
}

// Put encrypts and stores a new version of name from body. The caller needs an active grant for
// write on weights/<name> when the upload starts and when it ends.
func (s *Service) Put(ctx context.Context, p identity.Principal, name string, body io.Reader) (Object, error) {
	if err := CheckName(name); err != nil {
		return Object{}, err
	}
	d, err := s.authorize(ctx, p, "write", name)
	if err != nil {
		return Object{}, err
	}
	segSize := s.SegmentSize
	if segSize == 0 {
		segSize = vault.DefaultSegmentSize
	}
	o := Object{Name: name, State: StateUploading, SegmentSize: segSize, UploadedBy: p.Subject, GrantID: d.GrantID, CreatedAt: s.now()}
	if o.Version, err = s.Meta.BeginObject(ctx, o); err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	fail := func(cause error) (Object, error) {
		o.State = StateFailed
		cctx := context.WithoutCancel(ctx)
		_ = s.Blobs.Delete(cctx, dataKey(name, o.Version))
		_ = s.Blobs.Delete(cctx, headerKey(name, o.Version))
		if err := s.Meta.FinishObject(cctx, o, nil); err != nil {
			s.Log.Error("cannot mark a failed upload", "name", name, "version", o.Version, "err", err)
		}
		return Object{}, cause
	}
	// Encrypt while uploading: a pipe between the encrypter and the blob store.
	pr, pw := io.Pipe()
	type result struct {
		h   *vault.Header
		d   vault.Digest
		err error
	}
	done := make(chan result, 1)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	guard := &segmentGate{r: body, segLen: int64(segSize), check: s.stillAllowed(p, "write", name)}
	go func() {
		h, dg, err := vault.Encrypt(gctx, s.Keys, Resource(name), o.Version, segSize, guard, pw)
		pw.CloseWithError(err)
		done <- result{h, dg, err}
	}()
	if _, err := s.Blobs.Put(gctx, dataKey(name, o.Version), pr); err != nil {
		cancel()
		pr.CloseWithError(err)
		res := <-done
		if res.err != nil {
			err = res.err
		}
		return fail(fmt.Errorf("store the encrypted object: %w", err))
	}
	res := <-done
	if res.err != nil {
		return fail(res.err)
	}
	// Under the lock that Rotate and Retire hold: if a rotation happened while the data
	// streamed, re-wrap under the new current key now, so a retirement can never strand this
	// object under a key that no longer unwraps.
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, err := s.Keys.Current(ctx); err == nil && cur != res.h.KeyID {
		nh, err := vault.Rewrap(ctx, s.Keys, res.h)
		if err != nil {
			return fail(fmt.Errorf("re-wrap the data key under the key rotated in during the upload: %w", err))
		}
		res.h = nh
	}
	hb, err := res.h.MarshalBinary()
	if err != nil {
		return fail(err)
	}
	if _, err := s.Blobs.Put(ctx, headerKey(name, o.Version), bytes.NewReader(hb)); err != nil {
		return fail(fmt.Errorf("store the header: %w", err))
	}
	// The grant must still hold now that the upload is complete.
	if _, err := s.authorize(ctx, p, "write", name); err != nil {
		return fail(err)
	}
	o.Size, o.SHA256, o.KeyID, o.State = res.d.Size, hex.EncodeToString(res.d.SHA256[:]), res.h.KeyID, StateReady
	signed, err := s.Sign(manifestText(o))
	if err != nil {
		return fail(err)
	}
	o.Manifest = string(signed)
	ev := &audit.Event{Code: "weights.put", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
		Severity: audit.SeverityLow, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(name)},
		Message: fmt.Sprintf("%s stored %s version %d (%d bytes) under grant %s", p.Subject, Resource(name), o.Version, o.Size, d.GrantID),
		Details: map[string]any{"version": o.Version, "bytes": o.Size, "sha256": o.SHA256, "grant_id": d.GrantID, "key_id": o.KeyID}}
	if err := s.Meta.FinishObject(ctx, o, ev); err != nil {
		return fail(fmt.Errorf("%w: record the upload: %v", ErrUnavailable, err))
	}
	return o, nil
}

// manifestText is the signed manifest of a version (docs/vault-format.md).
func manifestText(o Object) string {
	// No key id: rotation re-wraps the data key under another key-encryption key, and the
	// manifest must still describe the object.
	return fmt.Sprintf("rampart-vault-manifest-v1\nobject %s\nversion %d\nsize %d\nsha256 %s\nsegment-size %d\nuploaded-by %s\ngrant %s\nuploaded-at %s\n",
		Resource(o.Name), o.Version, o.Size, o.SHA256, o.SegmentSize, o.UploadedBy, o.GrantID, o.CreatedAt.UTC().Format(time.RFC3339Nano))
}

// ErrGrantEnded means the grant under which a transfer ran ended during it.
var ErrGrantEnded = errors.New("weights: the grant ended during the transfer")

// stillAllowed returns the check a running transfer makes at each segment boundary.
func (s *Service) stillAllowed(p identity.Principal, action, name string) func(segment uint32, done int64) error {
	q := authz.Query{Subject: p.Subject, Action: action, Resource: Resource(name)}
	return func(segment uint32, done int64) error {
		if d := s.Decide.Check(q); !d.Allowed {
			return fmt.Errorf("%w: stopped before segment %d, after %d bytes: %s", ErrGrantEnded, segment, done, d.Reason)
		}
		return nil
	}
}

// segmentGate passes a stream on segment by segment: before the first byte of each segment
// (of segLen bytes) it asks check, and no Read spans two segments. A refusal ends the stream.
type segmentGate struct {
	r      io.Reader
	segLen int64
	check  func(segment uint32, done int64) error
	n      int64 // bytes passed on
	err    error
}

func (g *segmentGate) Read(b []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	off := g.n % g.segLen
	if off == 0 {
		if err := g.check(uint32(g.n/g.segLen), g.n); err != nil {
			g.err = err
			return 0, err
		}
	}
	if rest := g.segLen - off; int64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := g.r.Read(b)
	g.n += int64(n)
	return n, err
}

// latest returns the newest ready version of name, or the given one.
func (s *Service) find(ctx context.Context, name string, version uint64) (Object, error) {
	if version != 0 {
		o, err := s.Meta.Object(ctx, name, version)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return o, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		if err != nil {
			return o, err
		}
		if o.State != StateReady {
			return o, fmt.Errorf("%w: %s version %d is %s", ErrNotFound, Resource(name), version, o.State)
		}
		return o, nil
	}
	list, err := s.Meta.Objects(ctx, name)
	if err != nil {
		return Object{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].State == StateReady {
			return list[i], nil
		}
	}
	return Object{}, fmt.Errorf("%w: %s has no stored version", ErrNotFound, Resource(name))
}

func (s *Service) header(ctx context.Context, o Object) (*vault.Header, error) {
	rc, _, err := s.Blobs.Get(ctx, headerKey(o.Name, o.Version))
	if err != nil {
		return nil, fmt.Errorf("read the header of %s version %d: %w", Resource(o.Name), o.Version, err)
	}
	defer rc.Close()
	h, err := vault.ReadHeader(io.LimitReader(rc, vault.MaxHeaderSize))
	if err != nil {
		return nil, err
	}
	if h.ObjectID != Resource(o.Name) || h.ObjectVersion != o.Version {
		return nil, fmt.Errorf("%w: the stored header belongs to %s version %d, not %s version %d", vault.ErrCorrupt, h.ObjectID, h.ObjectVersion, Resource(o.Name), o.Version)
	}
	return h, nil
}

// Download is a running read of one version: plaintext, verified segment by segment, while the
// grant holds. Close records the read (with its byte count) in the ledger.
type Download struct {
	Object Object
	s      *Service
	ctx    context.Context
	p      identity.Principal
	body   io.Closer
	r      *vault.Reader
	grant  string
	err    error
	closed bool
}

// Get opens a version for reading (0: the newest). The caller needs an active grant for read.
func (s *Service) Get(ctx context.Context, p identity.Principal, name string, version uint64) (*Download, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d, err := s.authorize(ctx, p, "read", name)
	if err != nil {
		return nil, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return nil, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return nil, err
	}
	rc, _, err := s.Blobs.Get(ctx, dataKey(name, o.Version))
	if err != nil {
		return nil, fmt.Errorf("read %s version %d: %w", Resource(name), o.Version, err)
	}
	r, err := vault.Decrypt(ctx, s.Keys, h, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	// Before each verified segment is released, the last one included: a grant that ends
	// between two segments stops the download there, and one revoked before the last segment
	// means the client never sees the end (invariant 2).
	check := s.stillAllowed(p, "read", name)
	r.Gate = func(segment uint32, _ bool) error { return check(segment, r.Size()) }
	return &Download{Object: o, s: s, ctx: ctx, p: p, body: rc, r: r, grant: d.GrantID}, nil
}

// Read returns verified plaintext.
func (dl *Download) Read(b []byte) (int, error) {
	n, err := dl.r.Read(b)
	if err != nil && err != io.EOF {
		dl.err = err
	}
	return n, err
}

// Complete reports whether the whole object was read and verified.
func (dl *Download) Complete() bool { return dl.err == nil && dl.r.Size() == dl.Object.Size }

// Close ends the read and records it.
func (dl *Download) Close() error {
	if dl.closed {
		return nil
	}
	dl.closed = true
	dl.body.Close()
	complete := dl.Complete()
	sev, msg := audit.SeverityLow, fmt.Sprintf("%s read %s version %d: %d of %d bytes", dl.p.Subject, Resource(dl.Object.Name), dl.Object.Version, dl.r.Size(), dl.Object.Size)
	if !complete {
		sev = audit.SeverityMedium
		if dl.err != nil {
			msg += " (stopped: " + dl.err.Error() + ")"
		}
	}
	return dl.s.Record(context.WithoutCancel(dl.ctx), audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: sev, Time: dl.s.now(), Actor: dl.p.Subject, Resources: []string{Resource(dl.Object.Name)}, Message: msg,
		Details: map[string]any{"version": dl.Object.Version, "bytes": dl.r.Size(), "complete": complete, "grant_id": dl.grant}})
}

// List returns the versions the caller may see: of names it may read or write, or all for
// admins and auditors (see).
func (s *Service) List(ctx context.Context, p identity.Principal, seeAll bool) ([]Object, error) {
	if !seeAll {
		// The list is filtered by decisions: when they cannot be trusted, say so rather than
		// answer with an empty list.
		if err := s.Decide.Health(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := []Object{}
	for _, o := range all {
		if o.State == StateUploading || o.State == StateFailed {
			continue
		}
		if seeAll || s.may(p, "read", o.Name) || s.may(p, "write", o.Name) {
			out = append(out, o)
		}
	}
	return out, nil
}

func (s *Service) may(p identity.Principal, action, name string) bool {
	return s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: Resource(name)}).Allowed
}

// Delete removes a version (0: every version) of name. The caller needs write.
func (s *Service) Delete(ctx context.Context, p identity.Principal, name string, version uint64) ([]Object, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d, err := s.authorize(ctx, p, "write", name)
	if err != nil {
		return nil, err
	}
	var targets []Object
	if version != 0 {
		o, err := s.find(ctx, name, version)
		if err != nil {
			return nil, err
		}
		targets = []Object{o}
	} else {
		list, err := s.Meta.Objects(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		for _, o := range list {
			if o.State == StateReady {
				targets = append(targets, o)
			}
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("%w: %s has no stored version", ErrNotFound, Resource(name))
		}
	}
	// Every version goes in one transaction, each with its ledger entry: a failure deletes none,
	// and a version deleted meanwhile by someone else makes the whole request fail rather than
	// be recorded twice.
	evs := make([]audit.Event, len(targets))
	for i := range targets {
		o := &targets[i]
		o.State, o.DeletedAt = StateDeleted, s.now()
		evs[i] = audit.Event{Code: "weights.delete", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityDelete, ActivityName: "Delete",
			Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(name)},
			Message: fmt.Sprintf("%s deleted %s version %d", p.Subject, Resource(name), o.Version), Details: map[string]any{"version": o.Version, "grant_id": d.GrantID}}
	}
	if err := s.Meta.DeleteObjects(ctx, targets, evs); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w (deleted meanwhile; list again and retry)", err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// The metadata says deleted first; the blobs go after (a crash leaves unreachable
	// ciphertext, never a listed object without data).
	for _, o := range targets {
		_ = s.Blobs.Delete(ctx, dataKey(name, o.Version))
		_ = s.Blobs.Delete(ctx, headerKey(name, o.Version))
	}
	return targets, nil
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Object   Object `json:"object"`
	OK       bool   `json:"ok"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Manifest string `json:"manifest_text"`
	Problem  string `json:"problem,omitempty"`
}

// Verify decrypts a whole version and compares it with its signed manifest. It needs read.
func (s *Service) Verify(ctx context.Context, p identity.Principal, name string, version uint64, openNote func([]byte) (string, error)) (VerifyResult, error) {
	dl, err := s.Get(ctx, p, name, version)
	if err != nil {
		return VerifyResult{}, err
	}
	defer dl.Close()
	res := VerifyResult{Object: dl.Object}
	text, err := openNote([]byte(dl.Object.Manifest))
	if err != nil {
		res.Problem = "the manifest's signature does not verify: " + err.Error()
		return res, nil
	}
	res.Manifest = text
	sum, n, err := sha(dl)
	res.Size, res.SHA256 = n, sum
	switch {
	case err != nil:
		res.Problem = err.Error()
	case text != manifestText(dl.Object):
		res.Problem = "the stored metadata differs from the signed manifest"
	case n != dl.Object.Size || sum != dl.Object.SHA256:
		res.Problem = fmt.Sprintf("decrypted %d bytes with SHA-256 %s; the manifest says %d bytes, %s", n, sum, dl.Object.Size, dl.Object.SHA256)
	default:
		res.OK = true
	}
	return res, nil
}

// KeyRelease is an object's data key sealed to a workload's ephemeral X25519 key (HPKE, RFC
// 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM), with what it needs to use it.
type KeyRelease struct {
	Object Object `json:"object"`
	// Header is the object's vault header (hex); its binding is the HPKE info.
	Header string `json:"header"`
	// Sealed is the HPKE ciphertext of the data key: enc ‖ ct (hex).
	Sealed string `json:"sealed"`
	Suite  string `json:"suite"`
}

// HPKESuite names the suite of KeyRelease.
const HPKESuite = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM"

// ReleaseKey seals a version's data key to the caller's ephemeral X25519 public key, so that a
// workload decrypts locally. It needs read; every release is a ledger entry.
func (s *Service) ReleaseKey(ctx context.Context, p identity.Principal, name string, version uint64, publicKey []byte) (KeyRelease, error) {
	if err := CheckName(name); err != nil {
		return KeyRelease{}, err
	}
	pub, err := ecdh.X25519().NewPublicKey(publicKey)
	if err != nil {
		return KeyRelease{}, fmt.Errorf("%w: public_key must be a 32-byte X25519 public key: %v", ErrInvalid, err)
	}
	// A low-order point (such as 32 zero bytes) makes every shared secret zero: refuse it as
	// input, before anything is looked up or sealed.
	if probe, err := ecdh.X25519().GenerateKey(rand.Reader); err == nil {
		if _, err := probe.ECDH(pub); err != nil {
			return KeyRelease{}, fmt.Errorf("%w: public_key is a low-order X25519 point, not a usable public key: %v", ErrInvalid, err)
		}
	}
	d, err := s.authorize(ctx, p, "read", name)
	if err != nil {
		return KeyRelease{}, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return KeyRelease{}, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return KeyRelease{}, err
	}
	dek, err := vault.DataKey(ctx, s.Keys, h)
	if err != nil {
		return KeyRelease{}, err
	}
	pk, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return KeyRelease{}, fmt.Errorf("%w: public_key: %v", ErrInvalid, err)
	}
	binding := h.Binding()
	sealed, err := hpke.Seal(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), binding[:], dek)
	if err != nil {
		return KeyRelease{}, err
	}
	hb, _ := h.MarshalBinary()
	if err := s.Record(ctx, audit.Event{Code: "weights.key_release", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(name)},
		Message: fmt.Sprintf("%s received the data key of %s version %d (%d bytes of ciphertext it can now decrypt)", p.Subject, Resource(name), o.Version, o.Size),
		Details: map[string]any{"version": o.Version, "bytes": o.Size, "grant_id": d.GrantID}}); err != nil {
		return KeyRelease{}, fmt.Errorf("%w: record the key release: %v", ErrUnavailable, err)
	}
	return KeyRelease{Object: o, Header: hex.EncodeToString(hb), Sealed: hex.EncodeToString(sealed), Suite: HPKESuite}, nil
}

// OpenKeyRelease is what a workload runs: it opens a KeyRelease with its ephemeral private key
// and returns the parsed header and the data key.
func OpenKeyRelease(kr KeyRelease, priv *ecdh.PrivateKey) (*vault.Header, []byte, error) {
	hb, err := hex.DecodeString(kr.Header)
	if err != nil {
		return nil, nil, err
	}
	h, err := vault.ReadHeader(bytes.NewReader(hb))
	if err != nil {
		return nil, nil, err
	}
	sealed, err := hex.DecodeString(kr.Sealed)
	if err != nil {
		return nil, nil, err
	}
	sk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, nil, err
	}
	binding := h.Binding()
	dek, err := hpke.Open(sk, hpke.HKDFSHA256(), hpke.AES256GCM(), binding[:], sealed)
	if err != nil {
		return nil, nil, fmt.Errorf("the key release does not open with this key: %w", err)
	}
	return h, dek, nil
}

// Segments streams a version's raw ciphertext segments (for a workload that holds a key
// release). It needs read, re-checked before each segment is passed on, and it is recorded
// like a read (weights.read with "ciphertext": true) when the stream is closed.
func (s *Service) Segments(ctx context.Context, p identity.Principal, name string, version uint64) (io.ReadCloser, Object, error) {
	if err := CheckName(name); err != nil {
		return nil, Object{}, err
	}
	d, err := s.authorize(ctx, p, "read", name)
	if err != nil {
		return nil, Object{}, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return nil, Object{}, err
	}
	rc, info, err := s.Blobs.Get(ctx, dataKey(name, o.Version))
	if err != nil {
		return nil, o, fmt.Errorf("%w: read %s version %d: %v", ErrUnavailable, Resource(name), o.Version, err)
	}
	g := &segmentGate{r: rc, segLen: int64(o.SegmentSize) + vault.TagSize, check: s.stillAllowed(p, "read", name)}
	return &ciphertextRead{g: g, s: s, ctx: ctx, p: p, body: rc, size: info.Size, o: o, grant: d.GrantID}, o, nil
}

// ciphertextRead is a Segments stream: gated at each segment, and recorded when closed.
type ciphertextRead struct {
	g      *segmentGate
	s      *Service
	ctx    context.Context
	p      identity.Principal
	body   io.Closer
	size   int64
	o      Object
	grant  string
	err    error
	closed bool
}

func (c *ciphertextRead) Read(b []byte) (int, error) {
	n, err := c.g.Read(b)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *ciphertextRead) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	c.body.Close()
	s, p := c.s, c.p
	complete := c.err == nil && c.g.n == c.size
	sev, msg := audit.SeverityLow, fmt.Sprintf("%s read the ciphertext of %s version %d: %d of %d bytes", p.Subject, Resource(c.o.Name), c.o.Version, c.g.n, c.size)
	if !complete {
		sev = audit.SeverityMedium
		if c.err != nil {
			msg += " (stopped: " + c.err.Error() + ")"
		}
	}
	return s.Record(context.WithoutCancel(c.ctx), audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: sev, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(c.o.Name)}, Message: msg,
		Details: map[string]any{"version": c.o.Version, "bytes": c.g.n, "complete": complete, "ciphertext": true, "grant_id": c.grant}})
}

// KeyRing is a key provider whose keys Rampart manages itself (the local provider): it can add
// a new current KEK and retire old ones. Cloud KMS rotate their keys themselves.
type KeyRing interface {
	Rotate() (string, error)
	Retire(id string) error
}

// Rotate makes a new KEK current (for a KeyRing provider) and re-wraps every stored data key
// under the current KEK, rewriting only headers. It returns the key id and how many data keys
// were re-wrapped.
func (s *Service) Rotate(ctx context.Context, actor string) (string, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kr, ok := s.Keys.(KeyRing); ok {
		if _, err := kr.Rotate(); err != nil {
			return "", 0, fmt.Errorf("add a key-encryption key: %w", err)
		}
	}
	n, err := s.rewrapAll(ctx)
	cur, _ := s.Keys.Current(ctx)
	if rerr := s.Record(ctx, audit.Event{Code: "vault.rotate", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: actor, Message: fmt.Sprintf("%s rotated the vault to key %s and re-wrapped %d data keys", actor, cur, n),
		Details: map[string]any{"key_id": cur, "rewrapped": n, "complete": err == nil}}); rerr != nil && err == nil {
		err = rerr
	}
	return cur, n, err
}

// Retire stops a KEK from unwrapping, after checking that no stored object still uses it.
func (s *Service) Retire(ctx context.Context, actor, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	kr, ok := s.Keys.(KeyRing)
	if !ok {
		return fmt.Errorf("%w: this key provider manages its keys itself; retire them there", ErrInvalid)
	}
	// Everything that can be refused is refused before the ledger entry is written.
	if lister, ok := s.Keys.(interface{ Keys() []vault.LocalKey }); ok {
		var found *vault.LocalKey
		for _, k := range lister.Keys() {
			if k.ID == keyID {
				found = &k
			}
		}
		switch {
		case found == nil:
			return fmt.Errorf("%w: no key-encryption key %q in the keyring", ErrNotFound, keyID)
		case !found.RetiredAt.IsZero():
			return fmt.Errorf("%w: key %s was already retired at %s", ErrConflict, keyID, found.RetiredAt.Format(time.RFC3339))
		}
	}
	if cur, err := s.Keys.Current(ctx); err == nil && cur == keyID {
		return fmt.Errorf("%w: %s is the current key; rotate first", ErrConflict, keyID)
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, o := range all {
		// An upload in progress may have wrapped its key under this one.
		// (An upload in progress re-wraps under the current key before it stores its header,
		// under the same lock; see Put.)
		if o.State == StateReady && o.KeyID == keyID {
			return fmt.Errorf("%w: %s version %d still uses key %s; run rotate first", ErrConflict, Resource(o.Name), o.Version, keyID)
		}
	}
	if err := s.Record(ctx, audit.Event{Code: "vault.retire", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: actor, Message: fmt.Sprintf("%s retired vault key %s", actor, keyID),
		Details: map[string]any{"key_id": keyID}}); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return kr.Retire(keyID)
}

func (s *Service) rewrapAll(ctx context.Context) (int, error) {
	cur, err := s.Keys.Current(ctx)
	if err != nil {
		return 0, err
	}
	all, err := s.Meta.Objects(ctx, "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range all {
		if o.State != StateReady {
			continue
		}
		h, err := s.header(ctx, o)
		if err != nil {
			return n, err
		}
		if h.KeyID == cur {
			continue
		}
		nh, err := vault.Rewrap(ctx, s.Keys, h)
		if err != nil {
			return n, fmt.Errorf("re-wrap %s version %d: %w", Resource(o.Name), o.Version, err)
		}
		hb, _ := nh.MarshalBinary()
		if _, err := s.Blobs.Put(ctx, headerKey(o.Name, o.Version), bytes.NewReader(hb)); err != nil {
			return n, err
		}
		if err := s.Meta.SetKeyID(ctx, o.Name, o.Version, nh.KeyID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func sha(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
