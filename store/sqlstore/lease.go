package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// AcquireLease takes or renews the lease called name for holder until now+ttl, and reports
// whether holder holds it. A lease held by another holder is taken only once it has expired.
// Writers are serialized, so of several replicas racing for a free lease exactly one wins.
// Times are the replicas' clocks: they must agree to well within ttl, as grant expiry already
// requires.
func (s *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, now time.Time) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("AcquireLease: name, holder and a positive ttl are required")
	}
	held := false
	err := s.write(ctx, func(tx *sql.Tx) error {
		held = false
		var cur string
		var until int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT holder, expires_at FROM leases WHERE name = ?`), name).Scan(&cur, &until)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)`), name, holder, now.Add(ttl).UnixNano()); err != nil {
				return err
			}
		case err != nil:
			return err
		case cur != holder && until > now.UnixNano():
			return nil // another replica holds it
		default:
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?`), holder, now.Add(ttl).UnixNano(), name); err != nil {
				return err
			}
		}
		held = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return held, nil
}

// ReleaseLease gives the lease up if holder holds it, so another replica can take it at once.
func (s *DB) ReleaseLease(ctx context.Context, name, holder string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM leases WHERE name = ? AND holder = ?`), name, holder)
		return err
	})
}
