package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
)

// Outbox states of a notification.
const (
	NotificationPending = "pending"
	NotificationSent    = "sent"
	NotificationFailed  = "failed"
)

// InsertNotification implements access.Tx: the row commits or rolls back with the ledger entry
// that caused it.
func (t *txn) InsertNotification(ctx context.Context, n access.Notification) error {
	_, err := insertNotification(ctx, t.s, t.q, n, "")
	return err
}

// InsertNotificationOnce implements access.Tx: it writes n unless a notification with its id was
// ever written (and not yet pruned), and reports whether it wrote it.
func (t *txn) InsertNotificationOnce(ctx context.Context, n access.Notification) (bool, error) {
	return insertNotification(ctx, t.s, t.q, n, " ON CONFLICT (id) DO NOTHING")
}

func insertNotification(ctx context.Context, s *DB, q querier, n access.Notification, onConflict string) (bool, error) {
	body, err := json.Marshal(n)
	if err != nil {
		return false, err
	}
	res, err := q.ExecContext(ctx, s.q(`INSERT INTO notifications (id, seq, body, state, attempts, next_at, claimed_until, last_error, created_at, delivered, done_at) VALUES (?, ?, ?, ?, 0, ?, 0, '', ?, '[]', 0)`+onConflict),
		n.ID, n.Seq, string(body), NotificationPending, toNanos(n.CreatedAt), toNanos(n.CreatedAt))
	if err != nil {
		return false, err
	}
	c, err := res.RowsAffected()
	return c == 1, err
}

// ClaimNotifications claims up to limit pending notifications that are due at now and not
// claimed by anyone (or whose claim lapsed, e.g. a replica died mid-delivery), until now+lease,
// counting one more attempt on each. Writers are serialized, so two replicas never claim the
// same row at once; a row whose delivery is not reported within lease is claimed again (delivery
// is at least once).
func (s *DB) ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]access.Notification, error) {
	if limit <= 0 || lease <= 0 {
		return nil, errors.New("ClaimNotifications: a positive limit and lease are required")
	}
	// A read first, so that an idle outbox costs no write lock (which every workflow step waits on).
	var one int
	err := s.db.QueryRowContext(ctx, s.q(`SELECT 1 FROM notifications WHERE state = ? AND next_at <= ? AND claimed_until <= ? LIMIT 1`),
		NotificationPending, now.UnixNano(), now.UnixNano()).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	var out []access.Notification
	err = s.write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id, body, attempts, delivered FROM notifications WHERE state = ? AND next_at <= ? AND claimed_until <= ? ORDER BY seq, id LIMIT ?`),
			NotificationPending, now.UnixNano(), now.UnixNano(), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id, body, delivered string
			var attempts int
			if err := rows.Scan(&id, &body, &attempts, &delivered); err != nil {
				rows.Close()
				return err
			}
			var n access.Notification
			if err := json.Unmarshal([]byte(body), &n); err != nil {
				rows.Close()
				return fmt.Errorf("notification %s: stored body is not valid JSON: %w", id, err)
			}
			if err := json.Unmarshal([]byte(delivered), &n.Delivered); err != nil {
				rows.Close()
				return fmt.Errorf("notification %s: stored delivered sinks are not valid JSON: %w", id, err)
			}
			n.Attempts = attempts + 1
			out = append(out, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, n := range out {
			if _, err := tx.ExecContext(ctx, s.q(`UPDATE notifications SET claimed_until = ?, attempts = ? WHERE id = ?`), now.Add(lease).UnixNano(), n.Attempts, n.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	return out, nil
}

// NotificationSent marks a claimed notification delivered (to every sink it is routed to) at at.
func (s *DB) NotificationSent(ctx context.Context, id string, at time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE notifications SET state = ?, claimed_until = 0, last_error = '', done_at = ? WHERE id = ?`), NotificationSent, toNanos(at), id)
		return mustAffect(res, err, "notification", id)
	})
}

// NotificationRetry releases a claimed notification whose delivery failed for some of its sinks,
// to be tried again at next; delivered are the sinks that have taken it so far (a retry sends
// only to the others).
func (s *DB) NotificationRetry(ctx context.Context, id string, next time.Time, lastErr string, delivered []string) error {
	d, err := deliveredJSON(delivered)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE notifications SET next_at = ?, claimed_until = 0, last_error = ?, delivered = ? WHERE id = ? AND state = ?`),
			next.UnixNano(), lastErr, d, id, NotificationPending)
		return mustAffect(res, err, "notification", id)
	})
}

// NotificationFailed gives up on a pending notification at at (delivered: the sinks that did
// take it) and appends es, one entry per sink that did not, to the ledger in the same
// transaction (invariant 4).
func (s *DB) NotificationFailed(ctx context.Context, id, lastErr string, at time.Time, delivered []string, es []audit.Event) error {
	d, err := deliveredJSON(delivered)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE notifications SET state = ?, claimed_until = 0, last_error = ?, delivered = ?, done_at = ? WHERE id = ? AND state = ?`),
			NotificationFailed, lastErr, d, toNanos(at), id, NotificationPending)
		if err := mustAffect(res, err, "notification", id); err != nil {
			return err
		}
		for _, e := range es {
			if _, err := appendEntry(ctx, s, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// PruneNotifications deletes the notifications sent or given up on before cutoff, and returns
// how many. Pending rows are never deleted, however old.
func (s *DB) PruneNotifications(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM notifications WHERE state <> ? AND done_at < ?`), NotificationPending, cutoff.UnixNano())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune notifications: %w", err)
	}
	return int(n), nil
}

func deliveredJSON(sinks []string) (string, error) {
	if sinks == nil {
		sinks = []string{}
	}
	b, err := json.Marshal(sinks)
	return string(b), err
}

// NotificationState returns a notification's state, attempts and last error, for tests and
// operators.
func (s *DB) NotificationState(ctx context.Context, id string) (state string, attempts int, lastErr string, err error) {
	err = s.db.QueryRowContext(ctx, s.q(`SELECT state, attempts, last_error FROM notifications WHERE id = ?`), id).Scan(&state, &attempts, &lastErr)
	if errors.Is(err, sql.ErrNoRows) {
		err = access.ErrNotFound
	}
	return
}

// ListNotifications returns every notification in the outbox in ledger order, for tests and
// operators.
func (s *DB) ListNotifications(ctx context.Context) ([]access.Notification, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT body, attempts, delivered FROM notifications ORDER BY seq, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []access.Notification
	for rows.Next() {
		var body, delivered string
		var n access.Notification
		if err := rows.Scan(&body, &n.Attempts, &delivered); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(body), &n); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(delivered), &n.Delivered); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
