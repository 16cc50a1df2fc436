package weights

import (
	"context"
	"errors"
	"fmt"
	"io"

	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
)

// Parts of a stored version that can fail verification (CorruptError.Part); a segment is
// "segment N", counting from 0.
const (
	PartHeader   = "header"
	PartManifest = "manifest"
)

// CorruptError says that a stored version failed verification, and which part: its header (the
// wrapped data key included), a segment of its data, or its manifest (the signed description
// of the version, or the metadata that must match it). It wraps vault.ErrCorrupt. A corrupt
// version never becomes readable by waiting: it must be restored from a backup or deleted.
type CorruptError struct {
	Name    string
	Version uint64
	// Part is PartHeader, PartManifest or "segment N".
	Part   string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s version %d is corrupt: %s: %s; restore the version from a backup, or delete it (rampart weights rm %s --version %d)",
		Resource(e.Name), e.Version, e.Part, e.Reason, e.Name, e.Version)
}

// Unwrap makes a CorruptError match vault.ErrCorrupt.
func (e *CorruptError) Unwrap() error { return vault.ErrCorrupt }

// corrupt names o in a vault.CorruptError; other errors are returned as they are.
func corrupt(o Object, err error) error {
	var ce *vault.CorruptError
	if errors.As(err, &ce) {
		return &CorruptError{Name: o.Name, Version: o.Version, Part: ce.Part(), Reason: ce.Reason}
	}
	return err
}

func corruptf(o Object, part, format string, args ...any) error {
	return &CorruptError{Name: o.Name, Version: o.Version, Part: part, Reason: fmt.Sprintf(format, args...)}
}

// checkManifest verifies o's signed manifest and that the metadata served with the version
// (size, SHA-256, segment size) is what it signs.
func (s *Service) checkManifest(o Object) error {
	if s.OpenNote == nil {
		return fmt.Errorf("%w: the vault has no key to verify manifests with", ErrUnavailable)
	}
	text, err := s.OpenNote([]byte(o.Manifest))
	if err != nil {
		return corruptf(o, PartManifest, "its signature does not verify (%v)", err)
	}
	if text != manifestText(o) {
		return corruptf(o, PartManifest, "the stored metadata (size, SHA-256, segment size, uploader, grant or time) differs from what the manifest signs")
	}
	return nil
}

// header reads and checks o's stored header: well formed, and of this object, version and
// segment size.
func (s *Service) header(ctx context.Context, o Object) (*vault.Header, error) {
	rc, _, err := s.Blobs.Get(ctx, headerBlob(o))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, corruptf(o, PartHeader, "missing from the blob store")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read the header of %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err)
	}
	defer rc.Close()
	h, err := vault.ReadHeader(io.LimitReader(rc, vault.MaxHeaderSize))
	if err != nil {
		return nil, corrupt(o, err)
	}
	switch {
	case h.ObjectID != Resource(o.Name) || h.ObjectVersion != o.Version:
		return nil, corruptf(o, PartHeader, "it belongs to %s version %d", h.ObjectID, h.ObjectVersion)
	case h.SegmentSize != o.SegmentSize:
		return nil, corruptf(o, PartHeader, "its segment size is %d; the manifest says %d", h.SegmentSize, o.SegmentSize)
	}
	return h, nil
}

// dataKey unwraps o's data key from its header h. A wrapped key that does not open is a corrupt
// header, and so is a header naming a key that cannot unwrap when the vault recorded another
// key for the version; a key the vault recorded that cannot be used (not in the keyring,
// retired) is the vault's problem, not the object's (ErrKey: unavailable).
func (s *Service) dataKey(ctx context.Context, o Object, h *vault.Header) ([]byte, error) {
	dek, err := vault.DataKey(ctx, s.Keys, h)
	switch {
	case err == nil:
		return dek, nil
	case errors.Is(err, vault.ErrCorrupt):
		return nil, corrupt(o, err)
	case h.KeyID != o.KeyID:
		// (During a rotation the header may name the new key before the metadata does; that
		// key unwraps, so this is not reached.)
		return nil, corruptf(o, PartHeader, "it names key-encryption key %q, which cannot unwrap (%v), but the vault recorded %q for this version", h.KeyID, err, o.KeyID)
	}
	return nil, fmt.Errorf("the data key of %s version %d: %w", Resource(o.Name), o.Version, err)
}
