package weights

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
)

// Put encrypts and stores a new version of name from body. The caller needs an active grant for
// write on weights/<name> when the upload starts and when it ends.
func (s *Service) Put(ctx context.Context, p identity.Principal, name string, body io.Reader) (Object, error) {
	if err := CheckName(name); err != nil {
		return Object{}, err
	}
	d, err := s.authorize(ctx, p, ActionWrite, name)
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
		_ = s.Blobs.Delete(cctx, dataBlob(o))
		_ = s.Blobs.Delete(cctx, headerBlob(o))
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
	guard := &segmentGate{r: body, segLen: int64(segSize), check: s.stillAllowed(p, ActionWrite, name)}
	go func() {
		h, dg, err := vault.Encrypt(gctx, s.Keys, Resource(name), o.Version, segSize, guard, pw)
		pw.CloseWithError(err)
		done <- result{h, dg, err}
	}()
	if _, err := s.Blobs.Put(gctx, dataBlob(o), pr); err != nil {
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
	if _, err := s.Blobs.Put(ctx, headerBlob(o), bytes.NewReader(hb)); err != nil {
		return fail(fmt.Errorf("store the header: %w", err))
	}
	// The grant must still hold now that the upload is complete.
	if _, err := s.authorize(ctx, p, ActionWrite, name); err != nil {
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
