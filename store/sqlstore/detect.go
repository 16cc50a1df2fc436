package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"rampart.dev/rampart/detect"
)

// DetectState implements detect.RunnerStore.
func (s *DB) DetectState(ctx context.Context) (detect.State, error) {
	var st detect.State
	var snap sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT cursor, snapshot, snapshot_seq FROM detect_state WHERE id = 1`).Scan(&st.Cursor, &snap, &st.SnapshotSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return st, errors.New("the detection state row is missing (migration 21 adds it); restore it or recreate the store")
	}
	if snap.Valid {
		st.Snapshot = []byte(snap.String)
	}
	return st, err
}

// CommitDetections implements detect.RunnerStore: in one write transaction it moves the cursor
// from c.From to c.To (refusing with detect.ErrCursorMoved if the cursor is no longer c.From),
// appends each firing's detect.alert entry, records it in its alert, and stores the snapshot if
// there is one. Writers are serialized by the ledger's write lock, so two replicas cannot both
// move the cursor from the same place.
func (s *DB) CommitDetections(ctx context.Context, c detect.Commit) ([]detect.Recorded, error) {
	var out []detect.Recorded
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		res, err := tx.ExecContext(ctx, s.q(`UPDATE detect_state SET cursor = ?, updated = ? WHERE id = 1 AND cursor = ?`), c.To, toNanos(c.At), c.From)
		if err != nil {
			return fmt.Errorf("move the detection cursor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return detect.ErrCursorMoved
		}
		for _, a := range c.Alerts {
			seq, err := appendEntry(ctx, s, tx, a.Event)
			if err != nil {
				return fmt.Errorf("append the detect.alert entry of rule %s: %w", a.Firing.Rule, err)
			}
			al, err := upsertAlert(ctx, s, tx, AlertFiring{Rule: a.Firing.Rule, Key: a.Firing.Key, Severity: a.Firing.Severity, Seq: seq, Count: 1, At: c.At})
			if err != nil {
				return fmt.Errorf("record the alert of rule %s: %w", a.Firing.Rule, err)
			}
			out = append(out, detect.Recorded{Firing: a.Firing, Alert: al, Seq: seq})
		}
		if c.Snapshot != nil {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE detect_state SET snapshot = ?, snapshot_seq = ? WHERE id = 1`), string(c.Snapshot), c.To); err != nil {
				return fmt.Errorf("store the detection snapshot: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
