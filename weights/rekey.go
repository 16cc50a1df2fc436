package weights

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
)

// Rekey re-encrypts a stored version of name (0: every ready version, one after the other)
// under a new data key, so that a data key released before (ReleaseKey, to a workload no
// longer trusted) no longer decrypts what is stored. Rotation (Rotate) cannot do that: it
// re-wraps data keys without changing them. The caller needs write on weights/<name> when the
// rekey starts, before every segment, and when each version is switched.
//
// The version keeps its number, its plaintext and its signed manifest; its ciphertext gets a
// fresh data key and nonce prefix, at a new location in the blob store. The new ciphertext is
// written there, read back and checked against the manifest, and only then does the metadata
// move to it, in one transaction with the weights.rekey ledger entry; the old ciphertext is
// removed after that. So a failure or a crash leaves the version readable at every point: before
// the move, under its old key (the new blobs are unreferenced; a failure removes them); after
// it, under the new one. Old ciphertext that a crash or a failing store left after the move is
// the version's leftover: the next rekey of the version removes it first, and does nothing else
// until it can.
//
// It returns the versions re-encrypted; on an error, those re-encrypted before it.
func (s *Service) Rekey(ctx context.Context, p identity.Principal, name string, version uint64) ([]Object, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d, err := s.authorize(ctx, p, ActionWrite, name)
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
	done := []Object{}
	for _, o := range targets {
		next, err := s.rekey(ctx, p, d.GrantID, o)
		if err != nil {
			if len(done) > 0 {
				vs := make([]string, len(done))
				for i, o := range done {
					vs[i] = strconv.FormatUint(o.Version, 10)
				}
				err = fmt.Errorf("%w (versions %s were re-encrypted before this failed)", err, strings.Join(vs, ", "))
			}
			return done, err
		}
		done = append(done, next)
	}
	return done, nil
}

// rekey re-encrypts one version; see Rekey.
func (s *Service) rekey(ctx context.Context, p identity.Principal, grant string, o Object) (Object, error) {
	if o.Leftover != "" {
		if err := s.removeLeftover(ctx, o); err != nil {
			return o, err
		}
		o.Leftover = ""
	}
	if err := s.checkManifest(o); err != nil {
		return o, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return o, err
	}
	dek, err := s.dataKey(ctx, o, h)
	if err != nil {
		return o, err
	}
	src, err := s.data(ctx, o)
	if err != nil {
		return o, err
	}
	defer src.Close()
	r, err := vault.NewReader(src, h, dek)
	if err != nil {
		return o, corrupt(o, err)
	}
	check := s.stillAllowed(p, ActionWrite, o.Name)
	r.Gate = func(segment uint32, _ bool) error { return check(segment, r.Size()) }

	next := o
	next.Location, next.Leftover = newLocation(), blobDir(o)
	// Until the metadata moves, a failure removes the new blobs and leaves the version as it was.
	abandon := func(cause error) (Object, error) {
		s.removeBlobs(context.WithoutCancel(ctx), blobDir(next))
		return o, cause
	}

	// Decrypt and verify the old ciphertext, encrypt it under a fresh data key, and store that
	// at the new location, streaming (memory stays bounded whatever the size).
	pr, pw := io.Pipe()
	type result struct {
		h   *vault.Header
		d   vault.Digest
		err error
	}
	encrypted := make(chan result, 1)
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		nh, dg, err := vault.Encrypt(gctx, s.Keys, Resource(o.Name), o.Version, o.SegmentSize, r, pw)
		pw.CloseWithError(err)
		encrypted <- result{nh, dg, err}
	}()
	if _, err := s.Blobs.Put(gctx, dataBlob(next), pr); err != nil {
		cancel()
		pr.CloseWithError(err)
		if res := <-encrypted; res.err != nil && !errors.Is(res.err, context.Canceled) {
			err = res.err
		}
		return abandon(rekeyErr(o, "write the re-encrypted copy", err))
	}
	res := <-encrypted
	if res.err != nil {
		return abandon(rekeyErr(o, "re-encrypt", res.err))
	}
	if res.d.Size != o.Size || hex.EncodeToString(res.d.SHA256[:]) != o.SHA256 {
		return abandon(corruptf(o, PartManifest, "the data decrypts to %d bytes with SHA-256 %x; the manifest says %d bytes, %s", res.d.Size, res.d.SHA256, o.Size, o.SHA256))
	}
	// The old ciphertext goes only once the new one is known to decrypt to the manifest's bytes.
	if err := s.verifyCopy(ctx, next, res.h); err != nil {
		return abandon(fmt.Errorf("%w: the re-encrypted copy of %s version %d did not verify when read back, so nothing changed: %v", ErrUnavailable, Resource(o.Name), o.Version, err))
	}

	// The move, under the lock that Rotate and Retire hold: re-wrap under a key rotated in
	// meanwhile, so that a retirement never strands the new data key.
	s.mu.Lock()
	defer s.mu.Unlock()
	nh := res.h
	if cur, err := s.Keys.Current(ctx); err == nil && cur != nh.KeyID {
		if nh, err = vault.Rewrap(ctx, s.Keys, nh); err != nil {
			return abandon(fmt.Errorf("re-wrap the new data key under the key rotated in meanwhile: %w", err))
		}
	}
	hb, err := nh.MarshalBinary()
	if err != nil {
		return abandon(err)
	}
	if _, err := s.Blobs.Put(ctx, headerBlob(next), bytes.NewReader(hb)); err != nil {
		return abandon(fmt.Errorf("%w: store the new header of %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err))
	}
	if _, err := s.authorize(ctx, p, ActionWrite, o.Name); err != nil {
		return abandon(err)
	}
	next.KeyID = nh.KeyID
	ev := audit.Event{Code: "weights.rekey", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(o.Name)},
		Message: fmt.Sprintf("%s re-encrypted %s version %d (%d bytes) under a new data key, under grant %s: data keys released before no longer decrypt what is stored", p.Subject, Resource(o.Name), o.Version, o.Size, grant),
		Details: map[string]any{"version": o.Version, "bytes": o.Size, "grant_id": grant, "key_id": next.KeyID}}
	if err := s.Meta.RekeyObject(ctx, next, o.Location, ev); err != nil {
		switch {
		case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict):
			return abandon(err)
		}
		// The store failed, perhaps after it committed (its answer lost): look.
		switch moved, lerr := s.moved(context.WithoutCancel(ctx), next); {
		case lerr != nil:
			// Cannot tell: the new blobs stay (they may be referenced), and the version reads
			// at whichever location the metadata records.
			return o, fmt.Errorf("%w: record the rekey of %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err)
		case !moved:
			return abandon(fmt.Errorf("%w: record the rekey of %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err))
		}
	}
	// Moved: the ciphertext under the old data key goes now.
	if err := s.removeLeftover(ctx, next); err != nil {
		return next, fmt.Errorf("%s version %d is re-encrypted, but %w; run rampart weights rekey %s --version %d again to remove it", Resource(o.Name), o.Version, err, o.Name, o.Version)
	}
	next.Leftover = ""
	return next, nil
}

// rekeyErr says why re-encrypting failed: the old ciphertext is corrupt, the grant ended, or
// the store failed.
func rekeyErr(o Object, what string, err error) error {
	if errors.Is(err, vault.ErrCorrupt) || errors.Is(err, ErrGrantEnded) {
		return readErr(o, err)
	}
	return fmt.Errorf("%w: %s %s version %d: %v", ErrUnavailable, what, Resource(o.Name), o.Version, err)
}

// verifyCopy reads o's ciphertext back with header h and checks it against the manifest.
func (s *Service) verifyCopy(ctx context.Context, o Object, h *vault.Header) error {
	rc, _, err := s.Blobs.Get(ctx, dataBlob(o))
	if err != nil {
		return err
	}
	defer rc.Close()
	d, err := vault.Verify(ctx, s.Keys, h, rc)
	if err != nil {
		return err
	}
	if d.Size != o.Size || hex.EncodeToString(d.SHA256[:]) != o.SHA256 {
		return fmt.Errorf("it decrypts to %d bytes with SHA-256 %x; the manifest says %d bytes, %s", d.Size, d.SHA256, o.Size, o.SHA256)
	}
	return nil
}

// moved reports whether the metadata records o at its location (after a failed move, which
// may have committed).
func (s *Service) moved(ctx context.Context, o Object) (bool, error) {
	now, err := s.Meta.Object(ctx, o.Name, o.Version)
	return err == nil && now.Location == o.Location, err
}

// removeLeftover removes the ciphertext and header a rekey replaced, then forgets them.
func (s *Service) removeLeftover(ctx context.Context, o Object) error {
	ctx = context.WithoutCancel(ctx)
	for _, key := range []string{o.Leftover + "data", o.Leftover + "header"} {
		if err := s.Blobs.Delete(ctx, key); err != nil && !errors.Is(err, blob.ErrNotFound) {
			return fmt.Errorf("%w: the ciphertext under its previous data key is still stored (%s: %v)", ErrUnavailable, key, err)
		}
	}
	if err := s.Meta.ClearLeftover(ctx, o.Name, o.Version, o.Leftover); err != nil {
		return fmt.Errorf("%w: the ciphertext under its previous data key was removed, but recording that failed (%v)", ErrUnavailable, err)
	}
	return nil
}

// newLocation names a fresh location for a version's blobs: random, so that two rekeys of one
// version (on two replicas) never write the same blobs.
func newLocation() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "rekey-" + hex.EncodeToString(b)
}
