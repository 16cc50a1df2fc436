package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/weights"
)

const vaultCols = `name, version, state, size, sha256, segment_size, key_id, manifest, uploaded_by, grant_id, created_at, deleted_at, location, leftover`

func scanVault(sc interface{ Scan(...any) error }) (weights.Object, error) {
	var o weights.Object
	var version, seg, created, deleted int64
	err := sc.Scan(&o.Name, &version, &o.State, &o.Size, &o.SHA256, &seg, &o.KeyID, &o.Manifest, &o.UploadedBy, &o.GrantID, &created, &deleted, &o.Location, &o.Leftover)
	o.Version, o.SegmentSize = uint64(version), uint32(seg)
	o.CreatedAt, o.DeletedAt = fromNanos(created), fromNanos(deleted)
	return o, err
}

// BeginObject implements weights.Meta: the next version of the name, in one serialized write.
func (s *DB) BeginObject(ctx context.Context, o weights.Object) (uint64, error) {
	var v int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COALESCE(MAX(version), 0) FROM vault_objects WHERE name = ?`), o.Name).Scan(&v); err != nil {
			return err
		}
		v++
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO vault_objects (`+vaultCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			o.Name, v, o.State, o.Size, o.SHA256, int64(o.SegmentSize), o.KeyID, o.Manifest, o.UploadedBy, o.GrantID, toNanos(o.CreatedAt), toNanos(o.DeletedAt), o.Location, o.Leftover)
		return err
	})
	return uint64(v), err
}

// FinishObject implements weights.Meta: the row and its ledger entry commit together.
func (s *DB) FinishObject(ctx context.Context, o weights.Object, ev *audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if ev != nil {
			if _, err := appendEntry(ctx, s, tx, *ev); err != nil {
				return fmt.Errorf("append to ledger: %w", err)
			}
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE vault_objects SET state = ?, size = ?, sha256 = ?, segment_size = ?, key_id = ?, manifest = ?, deleted_at = ? WHERE name = ? AND version = ?`),
			o.State, o.Size, o.SHA256, int64(o.SegmentSize), o.KeyID, o.Manifest, toNanos(o.DeletedAt), o.Name, int64(o.Version))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: %s version %d", weights.ErrNotFound, o.Name, o.Version)
		}
		return nil
	})
}

// DeleteObjects implements weights.Meta: every version and its ledger entry in one transaction,
// each only if it is still ready.
func (s *DB) DeleteObjects(ctx context.Context, objs []weights.Object, evs []audit.Event) error {
	if len(objs) != len(evs) {
		return fmt.Errorf("DeleteObjects: %d objects, %d events", len(objs), len(evs))
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		for i, o := range objs {
			res, err := tx.ExecContext(ctx, s.q(`UPDATE vault_objects SET state = ?, deleted_at = ? WHERE name = ? AND version = ? AND state = ?`),
				weights.StateDeleted, toNanos(o.DeletedAt), o.Name, int64(o.Version), weights.StateReady)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("%w: weights/%s version %d is not stored", weights.ErrNotFound, o.Name, o.Version)
			}
			if _, err := appendEntry(ctx, s, tx, evs[i]); err != nil {
				return fmt.Errorf("append to ledger: %w", err)
			}
		}
		return nil
	})
}

// Objects implements weights.Meta ("" lists every name), by name then version.
func (s *DB) Objects(ctx context.Context, name string) ([]weights.Object, error) {
	q, args := `SELECT `+vaultCols+` FROM vault_objects`, []any{}
	if name != "" {
		q, args = q+` WHERE name = ?`, append(args, name)
	}
	return queryAll(ctx, s.db, s.q(q+` ORDER BY name, version`), args, scanVault)
}

// Object implements weights.Meta.
func (s *DB) Object(ctx context.Context, name string, version uint64) (weights.Object, error) {
	o, err := scanVault(s.db.QueryRowContext(ctx, s.q(`SELECT `+vaultCols+` FROM vault_objects WHERE name = ? AND version = ?`), name, int64(version)))
	if errors.Is(err, sql.ErrNoRows) {
		return o, fmt.Errorf("%w: weights/%s version %d", weights.ErrNotFound, name, version)
	}
	return o, err
}

// SetKeyID implements weights.Meta.
func (s *DB) SetKeyID(ctx context.Context, name string, version uint64, keyID string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`UPDATE vault_objects SET key_id = ? WHERE name = ? AND version = ?`), keyID, name, int64(version))
		return err
	})
}

// RekeyObject implements weights.Meta: the move and its ledger entry commit together, and only
// from the location the rekey read (compare and swap), so that of two rekeys racing one wins.
func (s *DB) RekeyObject(ctx context.Context, o weights.Object, from string, ev audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var state, loc, leftover string
		err := tx.QueryRowContext(ctx, s.q(`SELECT state, location, leftover FROM vault_objects WHERE name = ? AND version = ?`), o.Name, int64(o.Version)).Scan(&state, &loc, &leftover)
		switch {
		case errors.Is(err, sql.ErrNoRows) || err == nil && state != weights.StateReady:
			return fmt.Errorf("%w: weights/%s version %d is not stored (deleted meanwhile?)", weights.ErrNotFound, o.Name, o.Version)
		case err != nil:
			return err
		case loc != from:
			return fmt.Errorf("%w: weights/%s version %d was re-encrypted meanwhile by another rekey", weights.ErrConflict, o.Name, o.Version)
		case leftover != "":
			return fmt.Errorf("%w: weights/%s version %d still has the blobs of an earlier rekey to remove", weights.ErrConflict, o.Name, o.Version)
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE vault_objects SET location = ?, leftover = ?, key_id = ? WHERE name = ? AND version = ? AND state = ? AND location = ? AND leftover = ''`),
			o.Location, o.Leftover, o.KeyID, o.Name, int64(o.Version), weights.StateReady, from)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: weights/%s version %d changed meanwhile", weights.ErrConflict, o.Name, o.Version)
		}
		if _, err := appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
}

// ClearLeftover implements weights.Meta.
func (s *DB) ClearLeftover(ctx context.Context, name string, version uint64, leftover string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`UPDATE vault_objects SET leftover = '' WHERE name = ? AND version = ? AND leftover = ?`), name, int64(version), leftover)
		return err
	})
}
