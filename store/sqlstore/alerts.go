package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
)

const alertCols = `id, rule, key, severity, state, first_seq, last_seq, count, created, updated, acked_by, resolved_by, note`

func scanAlert(sc interface{ Scan(...any) error }) (detect.Alert, error) {
	var a detect.Alert
	var count, created, updated int64
	err := sc.Scan(&a.ID, &a.Rule, &a.Key, &a.Severity, &a.State, &a.FirstSeq, &a.LastSeq, &count, &created, &updated, &a.AckedBy, &a.ResolvedBy, &a.Note)
	a.Count, a.Created, a.Updated = int(count), fromNanos(created), fromNanos(updated)
	return a, err
}

// AlertFiring is one firing as the alerts table records it: its detect.alert ledger entry is
// Seq.
type AlertFiring struct {
	Rule, Key, Severity string
	Seq                 int64
	Count               int
	At                  time.Time
}

// UpsertAlert records firing f in the alert of its rule and key that is not resolved, or opens
// a new alert: in the caller's write transaction, with f's detect.alert entry.
func (t *txn) UpsertAlert(ctx context.Context, f AlertFiring) (detect.Alert, error) {
	return upsertAlert(ctx, t.s, t.q, f)
}

// RecordAlert appends the detect.alert entry ev and records its firing (f.Seq is set to the
// entry's sequence number) in one transaction. The detection runner does both in its own
// transaction (UpsertAlert); this is for tools and tests.
func (s *DB) RecordAlert(ctx context.Context, f AlertFiring, ev audit.Event) (detect.Alert, error) {
	var out detect.Alert
	err := s.write(ctx, func(tx *sql.Tx) error {
		seq, err := appendEntry(ctx, s, tx, ev)
		if err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		f.Seq = seq
		out, err = upsertAlert(ctx, s, tx, f)
		return err
	})
	return out, err
}

func upsertAlert(ctx context.Context, s *DB, q querier, f AlertFiring) (detect.Alert, error) {
	if f.Count < 1 {
		f.Count = 1
	}
	a, err := scanAlert(q.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts WHERE rule = ? AND key = ? AND state <> ? ORDER BY id DESC LIMIT 1`),
		f.Rule, f.Key, detect.StateResolved))
	switch {
	case err == nil:
		a.LastSeq, a.Count, a.Updated, a.Severity = f.Seq, a.Count+f.Count, f.At, f.Severity
		_, err = q.ExecContext(ctx, s.q(`UPDATE alerts SET last_seq = ?, count = ?, updated = ?, severity = ? WHERE id = ?`),
			a.LastSeq, int64(a.Count), toNanos(a.Updated), a.Severity, a.ID)
		return a, err
	case !errors.Is(err, sql.ErrNoRows):
		return a, err
	}
	// Writers are serialized (the ledger's write lock), so the next id is ours.
	var id int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) + 1 FROM alerts`).Scan(&id); err != nil {
		return a, err
	}
	a = detect.Alert{ID: id, Rule: f.Rule, Key: f.Key, Severity: f.Severity, State: detect.StateOpen, FirstSeq: f.Seq, LastSeq: f.Seq,
		Count: f.Count, Created: f.At, Updated: f.At}
	_, err = q.ExecContext(ctx, s.q(`INSERT INTO alerts (`+alertCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', '')`),
		a.ID, a.Rule, a.Key, a.Severity, a.State, a.FirstSeq, a.LastSeq, int64(a.Count), toNanos(a.Created), toNanos(a.Updated))
	return a, err
}

// Alerts lists alerts matching f, newest (highest id) first.
func (s *DB) Alerts(ctx context.Context, f detect.AlertFilter) ([]detect.Alert, error) {
	f, err := f.Normalize()
	if err != nil {
		return nil, err
	}
	q, args := `SELECT `+alertCols+` FROM alerts WHERE 1 = 1`, []any{}
	add := func(cond string, v any) { q += " AND " + cond; args = append(args, v) }
	if f.State != "" {
		add("state = ?", f.State)
	}
	if f.Rule != "" {
		add("rule = ?", f.Rule)
	}
	if f.Severity != "" {
		add("severity = ?", f.Severity)
	}
	if !f.Since.IsZero() {
		add("updated >= ?", toNanos(f.Since))
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	return queryAll(ctx, s.db, s.q(q+` ORDER BY id DESC LIMIT `+strconv.Itoa(f.Limit)), args, scanAlert)
}

// Alert returns one alert (detect.ErrAlertNotFound if there is none).
func (s *DB) Alert(ctx context.Context, id int64) (detect.Alert, error) {
	a, err := scanAlert(s.db.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("%w: %d", detect.ErrAlertNotFound, id)
	}
	return a, err
}

// TransitionAlert acknowledges or resolves alert id (detect.Transition.Apply), in one transaction
// with the ledger entry that records it, and returns the alert and that entry's sequence number.
func (s *DB) TransitionAlert(ctx context.Context, id int64, tr detect.Transition) (detect.Alert, int64, error) {
	var a detect.Alert
	var seq int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = scanAlert(tx.QueryRowContext(ctx, s.q(`SELECT `+alertCols+` FROM alerts WHERE id = ?`), id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %d", detect.ErrAlertNotFound, id)
		} else if err != nil {
			return err
		}
		ev, err := tr.Apply(&a)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE alerts SET state = ?, updated = ?, acked_by = ?, resolved_by = ?, note = ? WHERE id = ?`),
			a.State, toNanos(a.Updated), a.AckedBy, a.ResolvedBy, a.Note, a.ID); err != nil {
			return err
		}
		if seq, err = appendEntry(ctx, s, tx, ev); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return nil
	})
	return a, seq, err
}

// ClaimResponse implements detect.ResponseStore. The count and the insert are in one write
// transaction, and writers are serialized, so replicas that respond at once share the budget:
// none can take an action past it.
func (s *DB) ClaimResponse(ctx context.Context, c detect.Claim, limit int) (detect.Claimed, error) {
	var out detect.Claimed
	err := s.write(ctx, func(tx *sql.Tx) error {
		out = detect.Claimed{}
		err := tx.QueryRowContext(ctx, s.q(`SELECT state, guardrail FROM detect_responses WHERE id = ?`), c.ID).Scan(&out.State, &out.Guardrail)
		if err == nil {
			out.Prior = true
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		out.State, out.Guardrail = c.Want, c.Guardrail
		if c.Want == detect.ResponseActing {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM detect_responses WHERE counted = ? AND at > ?`), true, toNanos(c.At.Add(-time.Hour))).Scan(&n); err != nil {
				return err
			}
			if n >= limit {
				out.State, out.Guardrail = detect.ResponseSkipped, detect.GuardRateLimit
			}
		}
		seq, err := appendEntry(ctx, s, tx, c.Event(out.State, out.Guardrail))
		if err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO detect_responses (id, rule, subject, action, state, guardrail, counted, at, seq, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '')`),
			c.ID, c.Rule, c.Subject, c.Action, out.State, out.Guardrail, out.State == detect.ResponseActing, toNanos(c.At), seq)
		return err
	})
	return out, err
}

// FinishResponse implements detect.ResponseStore.
func (s *DB) FinishResponse(ctx context.Context, id, state, errText string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE detect_responses SET state = ?, error = ? WHERE id = ? AND state = ?`), state, errText, id, detect.ResponseActing)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("response %s is not being taken", id)
		}
		return nil
	})
}
