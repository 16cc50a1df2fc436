package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/secrets"
)

const secretCols = `name, version, state, size, key_id, wrapped_dek, ciphertext, created_by, grant_id, created_at, deleted_at`

func scanSecret(sc interface{ Scan(...any) error }) (secrets.Sealed, error) {
	var v secrets.Sealed
	var version, size, created, deleted int64
	var wrapped, ct string
	m := &v.Meta
	if err := sc.Scan(&m.Name, &version, &m.State, &size, &m.KeyID, &wrapped, &ct, &m.CreatedBy, &m.GrantID, &created, &deleted); err != nil {
		return v, err
	}
	m.Version, m.Size = uint64(version), int(size)
	m.CreatedAt, m.DeletedAt = fromNanos(created), fromNanos(deleted)
	var err error
	if v.WrappedDEK, err = base64.StdEncoding.DecodeString(wrapped); err != nil {
		return v, fmt.Errorf("secrets/%s version %d: the wrapped key column is not base64", m.Name, m.Version)
	}
	if v.Ciphertext, err = base64.StdEncoding.DecodeString(ct); err != nil {
		return v, fmt.Errorf("secrets/%s version %d: the ciphertext column is not base64", m.Name, m.Version)
	}
	return v, nil
}

// InsertSecretVersion implements secrets.Store: the version and its ledger entry commit
// together, and only as the next version of the name.
func (s *DB) InsertSecretVersion(ctx context.Context, v secrets.Sealed, ev audit.Event) error {
	m := v.Meta
	return s.write(ctx, func(tx *sql.Tx) error {
		var newest int64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(version), 0) FROM secret_versions WHERE name = ?`), m.Name).Scan(&newest); err != nil {
			return err
		}
		if uint64(newest)+1 != m.Version {
			return fmt.Errorf("%w: secrets/%s version %d was written meanwhile", secrets.ErrConflict, m.Name, newest)
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO secret_versions (`+secretCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			m.Name, int64(m.Version), m.State, int64(m.Size), m.KeyID, base64.StdEncoding.EncodeToString(v.WrappedDEK), base64.StdEncoding.EncodeToString(v.Ciphertext),
			m.CreatedBy, m.GrantID, toNanos(m.CreatedAt), toNanos(m.DeletedAt)); err != nil {
			return err
		}
		if _, err := appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
}

// SecretVersions implements secrets.Store ("" lists every name), by name then version.
func (s *DB) SecretVersions(ctx context.Context, name string) ([]secrets.Sealed, error) {
	q, args := `SELECT `+secretCols+` FROM secret_versions`, []any{}
	if name != "" {
		q, args = q+` WHERE name = ?`, append(args, name)
	}
	return queryAll(ctx, s.db, s.q(q+` ORDER BY name, version`), args, scanSecret)
}

// SecretVersion implements secrets.Store.
func (s *DB) SecretVersion(ctx context.Context, name string, version uint64) (secrets.Sealed, error) {
	v, err := scanSecret(s.db.QueryRowContext(ctx, s.q(`SELECT `+secretCols+` FROM secret_versions WHERE name = ? AND version = ?`), name, int64(version)))
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("%w: secrets/%s has no version %d", secrets.ErrNotFound, name, version)
	}
	return v, err
}

// DeleteSecret implements secrets.Store: the ciphertexts and wrapped keys are dropped with the
// rows' state, in the transaction of the ledger entry.
func (s *DB) DeleteSecret(ctx context.Context, name string, at time.Time, ev audit.Event) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE secret_versions SET state = ?, deleted_at = ?, wrapped_dek = '', ciphertext = '' WHERE name = ? AND state = ?`),
			secrets.StateDeleted, toNanos(at), name, secrets.StateActive)
		if err != nil {
			return err
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: secrets/%s has no active version", secrets.ErrNotFound, name)
		}
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["versions"] = n
		if _, err := appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
	return int(n), err
}

// RewrapSecretVersion implements secrets.Store (compare and swap on the key id).
func (s *DB) RewrapSecretVersion(ctx context.Context, name string, version uint64, fromKeyID, keyID string, wrapped []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE secret_versions SET key_id = ?, wrapped_dek = ? WHERE name = ? AND version = ? AND key_id = ? AND state = ?`),
			keyID, base64.StdEncoding.EncodeToString(wrapped), name, int64(version), fromKeyID, secrets.StateActive)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: secrets/%s version %d is no longer wrapped by %s", secrets.ErrConflict, name, version, fromKeyID)
		}
		return nil
	})
}

const leaseCols = `id, name, version, subject, grant_id, ttl, created_at, expires_at, revoked_at`

func scanLease(sc interface{ Scan(...any) error }) (secrets.Lease, error) {
	var l secrets.Lease
	var version, ttl, created, expires, revoked int64
	err := sc.Scan(&l.ID, &l.Name, &version, &l.Subject, &l.GrantID, &ttl, &created, &expires, &revoked)
	l.Version, l.TTL = uint64(version), time.Duration(ttl)
	l.CreatedAt, l.ExpiresAt, l.RevokedAt = fromNanos(created), fromNanos(expires), fromNanos(revoked)
	return l, err
}

// InsertSecretLease implements secrets.Store.
func (s *DB) InsertSecretLease(ctx context.Context, l secrets.Lease, ev audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO secret_leases (`+leaseCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			l.ID, l.Name, int64(l.Version), l.Subject, l.GrantID, int64(l.TTL), toNanos(l.CreatedAt), toNanos(l.ExpiresAt), toNanos(l.RevokedAt)); err != nil {
			return err
		}
		if _, err := appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
}

// SecretLease implements secrets.Store.
func (s *DB) SecretLease(ctx context.Context, id string) (secrets.Lease, error) {
	l, err := scanLease(s.db.QueryRowContext(ctx, s.q(`SELECT `+leaseCols+` FROM secret_leases WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return l, fmt.Errorf("%w: no lease %s", secrets.ErrNotFound, id)
	}
	return l, err
}

// UpdateSecretLease implements secrets.Store: only a lease that is not revoked changes.
func (s *DB) UpdateSecretLease(ctx context.Context, l secrets.Lease, ev audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE secret_leases SET expires_at = ?, revoked_at = ? WHERE id = ? AND revoked_at = 0`),
			toNanos(l.ExpiresAt), toNanos(l.RevokedAt), l.ID)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: lease %s is revoked or gone", secrets.ErrConflict, l.ID)
		}
		if _, err := appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
}
