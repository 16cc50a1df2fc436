package weights

import (
	"context"
	"errors"
	"fmt"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault/blob"
)

// Delete removes a version (0: every version) of name. The caller needs delete on
// weights/<name> (write is not enough).
func (s *Service) Delete(ctx context.Context, p identity.Principal, name string, version uint64) ([]Object, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d, err := s.authorize(ctx, p, ActionDelete, name)
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
	// ciphertext, never a listed object without data). Every blob of the version goes, at every
	// location: the current one, one a rekey moved away from, one a rekey was writing. (Once a
	// version is deleted no rekey can move it, so nothing listed here is still wanted.)
	for _, o := range targets {
		s.removeBlobs(context.WithoutCancel(ctx), versionDir(name, o.Version))
	}
	return targets, nil
}

// removeBlobs deletes every blob under prefix, as far as the store lets it; what it cannot
// delete stays unreachable ciphertext. It reports whether everything went.
func (s *Service) removeBlobs(ctx context.Context, prefix string) bool {
	list, err := s.Blobs.List(ctx, prefix)
	if err != nil {
		return false
	}
	ok := true
	for _, b := range list {
		if err := s.Blobs.Delete(ctx, b.Key); err != nil && !errors.Is(err, blob.ErrNotFound) {
			ok = false
		}
	}
	return ok
}
