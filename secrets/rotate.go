package secrets

import (
	"context"
	"errors"
	"fmt"
)

// Rewrap re-wraps the data key of every active version that is not under the key provider's
// current KEK, without touching values; it returns how many it re-wrapped. The weights vault
// calls it when it rotates (weights.KeyUser), so one rotation covers the whole keyring.
func (s *Service) Rewrap(ctx context.Context) (int, error) {
	cur, err := s.Keys.Current(ctx)
	if err != nil {
		return 0, fmt.Errorf("%w: the key provider: %v", ErrUnavailable, err)
	}
	all, err := s.Store.SecretVersions(ctx, "")
	if err != nil {
		return 0, unavailable("list secrets", err)
	}
	n := 0
	for _, sv := range all {
		v := sv.Meta
		if v.State != StateActive || v.KeyID == cur {
			continue
		}
		aad := binding(v.Name, v.Version)
		dek, err := s.Keys.Unwrap(ctx, v.KeyID, sv.WrappedDEK, aad)
		if err != nil {
			return n, fmt.Errorf("re-wrap %s version %d: %w", Resource(v.Name), v.Version, err)
		}
		kid, wrapped, err := s.Keys.Wrap(ctx, dek, aad)
		clear(dek)
		if err != nil {
			return n, fmt.Errorf("re-wrap %s version %d: %w", Resource(v.Name), v.Version, err)
		}
		err = s.Store.RewrapSecretVersion(ctx, v.Name, v.Version, v.KeyID, kid, wrapped)
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
			continue // re-wrapped or deleted meanwhile
		}
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// UsesKey returns an error wrapping ErrConflict, naming the version, when an active version's
// data key is still wrapped by keyID: retiring that key would make it unreadable.
func (s *Service) UsesKey(ctx context.Context, keyID string) error {
	all, err := s.Store.SecretVersions(ctx, "")
	if err != nil {
		return unavailable("list secrets", err)
	}
	for _, sv := range all {
		if v := sv.Meta; v.State == StateActive && v.KeyID == keyID {
			return fmt.Errorf("%w: %s version %d still uses key %s; run rotate first", ErrConflict, Resource(v.Name), v.Version, keyID)
		}
	}
	return nil
}
