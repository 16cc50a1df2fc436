package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/netip"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
)

// PutFlow implements identity.FlowStore.
func (s *DB) PutFlow(ctx context.Context, f identity.Flow) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO auth_flows (id, kind, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
			f.ID, f.Kind, string(f.Data), toNanos(f.CreatedAt), toNanos(f.ExpiresAt))
		return err
	})
}

func scanFlow(sc interface{ Scan(...any) error }) (identity.Flow, error) {
	var f identity.Flow
	var data string
	var created, expires int64
	err := sc.Scan(&f.ID, &f.Kind, &data, &created, &expires)
	f.Data, f.CreatedAt, f.ExpiresAt = []byte(data), fromNanos(created), fromNanos(expires)
	return f, err
}

func flowRow(ctx context.Context, s *DB, q querier, id, kind string, now time.Time) (identity.Flow, error) {
	f, err := scanFlow(q.QueryRowContext(ctx, s.q(`SELECT id, kind, data, created_at, expires_at FROM auth_flows WHERE id = ?`), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return f, identity.ErrFlowNotFound
	case err != nil:
		return f, err
	case f.Kind != kind || !now.Before(f.ExpiresAt):
		return identity.Flow{}, identity.ErrFlowNotFound
	}
	return f, nil
}

// TakeFlow implements identity.FlowStore: the read and the delete are one serialized write
// transaction, and the delete must remove the row, so two concurrent redemptions of one handle
// cannot both succeed.
func (s *DB) TakeFlow(ctx context.Context, id, kind string, now time.Time) (identity.Flow, error) {
	var f identity.Flow
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if f, err = flowRow(ctx, s, tx, id, kind, now); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM auth_flows WHERE id = ?`), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return identity.ErrFlowNotFound
		}
		return nil
	})
	return f, err
}

// GetFlow implements identity.FlowStore.
func (s *DB) GetFlow(ctx context.Context, id, kind string, now time.Time) (identity.Flow, error) {
	return flowRow(ctx, s, s.db, id, kind, now)
}

// ReplaceFlowData implements identity.FlowStore.
func (s *DB) ReplaceFlowData(ctx context.Context, id string, data []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE auth_flows SET data = ? WHERE id = ?`), string(data), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return identity.ErrFlowNotFound
		}
		return nil
	})
}

// DeleteExpiredFlows implements identity.FlowStore.
func (s *DB) DeleteExpiredFlows(ctx context.Context, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM auth_flows WHERE expires_at <= ?`), toNanos(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

const factorCols = `secret_enc, created_at, confirmed_at, last_step, enrolled_via, pending_secret_enc, pending_at, pending_via, pending_session`

func factorRow(ctx context.Context, s *DB, q querier, subject string) (identity.MFAFactor, error) {
	f := identity.MFAFactor{Subject: subject}
	var created, confirmed, pendingAt int64
	var p identity.PendingFactor
	err := q.QueryRowContext(ctx, s.q(`SELECT `+factorCols+` FROM mfa_factors WHERE subject = ?`), subject).
		Scan(&f.SecretEnc, &created, &confirmed, &f.LastStep, &f.EnrolledVia, &p.SecretEnc, &pendingAt, &p.Via, &p.SessionID)
	if errors.Is(err, sql.ErrNoRows) {
		return f, identity.ErrNoFactor
	}
	f.CreatedAt, f.ConfirmedAt = fromNanos(created), fromNanos(confirmed)
	if p.SecretEnc != "" {
		p.At = fromNanos(pendingAt)
		f.Pending = &p
	}
	return f, err
}

func putFactor(ctx context.Context, s *DB, q querier, f identity.MFAFactor) error {
	if _, err := q.ExecContext(ctx, s.q(`DELETE FROM mfa_factors WHERE subject = ?`), f.Subject); err != nil {
		return err
	}
	var p identity.PendingFactor
	if f.Pending != nil {
		p = *f.Pending
	}
	_, err := q.ExecContext(ctx, s.q(`INSERT INTO mfa_factors (subject, `+factorCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		f.Subject, f.SecretEnc, toNanos(f.CreatedAt), toNanos(f.ConfirmedAt), f.LastStep, f.EnrolledVia, p.SecretEnc, toNanos(p.At), p.Via, p.SessionID)
	return err
}

// MFAFactor implements identity.MFAStore.
func (s *DB) MFAFactor(ctx context.Context, subject string) (identity.MFAFactor, error) {
	return factorRow(ctx, s, s.db, subject)
}

// PutMFAFactor implements identity.MFAStore.
func (s *DB) PutMFAFactor(ctx context.Context, f identity.MFAFactor) error {
	return s.write(ctx, func(tx *sql.Tx) error { return putFactor(ctx, s, tx, f) })
}

// MFAFactor implements identity.SessionTx.
func (t *sessionTx) MFAFactor(ctx context.Context, subject string) (identity.MFAFactor, error) {
	return factorRow(ctx, t.s, t.tx, subject)
}

// PutMFAFactor implements identity.SessionTx.
func (t *sessionTx) PutMFAFactor(ctx context.Context, f identity.MFAFactor) error {
	return putFactor(ctx, t.s, t.tx, f)
}

// UseMFAStep implements identity.MFAStore with one conditional update: of two concurrent uses of
// one code, exactly one changes the row.
func (s *DB) UseMFAStep(ctx context.Context, subject string, step int64) (bool, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE mfa_factors SET last_step = ? WHERE subject = ? AND last_step < ?`), step, subject, step)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}

// AttemptMFA implements identity.MFAStore.
func (s *DB) AttemptMFA(ctx context.Context, subject string, now time.Time, window time.Duration) (int, time.Time, error) {
	var n int64
	var start int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.q(`SELECT window_start, attempts FROM mfa_attempts WHERE subject = ?`), subject).Scan(&start, &n)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			start, n = toNanos(now), 1
			_, err = tx.ExecContext(ctx, s.q(`INSERT INTO mfa_attempts (subject, window_start, attempts) VALUES (?, ?, ?)`), subject, start, n)
			return err
		case err != nil:
			return err
		}
		if !now.Before(fromNanos(start).Add(window)) {
			start, n = toNanos(now), 0
		}
		n++
		_, err = tx.ExecContext(ctx, s.q(`UPDATE mfa_attempts SET window_start = ?, attempts = ? WHERE subject = ?`), start, n, subject)
		return err
	})
	return int(n), fromNanos(start).Add(window), err
}

// ClearMFAAttempts implements identity.MFAStore.
func (s *DB) ClearMFAAttempts(ctx context.Context, subject string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM mfa_attempts WHERE subject = ?`), subject)
		return err
	})
}

// DeleteMFAFactor implements identity.MFAStore.
func (s *DB) DeleteMFAFactor(ctx context.Context, subject string) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`DELETE FROM mfa_factors WHERE subject = ?`), subject)
		return err
	})
}

func signinID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// AddSignIn records a sign-in that was let in (the risk engine learns from these).
func (s *DB) AddSignIn(ctx context.Context, subject string, r risk.Record) error {
	ip, ipText := r.IP.Unmap(), ""
	if ip.IsValid() {
		ipText = ip.String()
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO signins (id, subject, username, at, ip, fingerprint, country, asn, lat, lon, has_geo, kind, success, level, source)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'sign_in', ?, '', ?)`),
			signinID(), subject, subject, toNanos(r.Time), ipText, r.Fingerprint, r.Country, int64(r.ASN), r.Lat, r.Lon, r.HasGeo, true, risk.SourceOf(ip).String())
		return err
	})
}

// AddFailure records a failed attempt.
func (s *DB) AddFailure(ctx context.Context, f risk.Failure) error {
	ip := f.IP.Unmap()
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO signins (id, subject, username, at, ip, fingerprint, country, asn, lat, lon, has_geo, kind, success, level, source)
			VALUES (?, '', ?, ?, ?, '', '', 0, 0, 0, ?, 'sign_in', ?, '', ?)`),
			signinID(), f.Username, toNanos(f.Time), ip.String(), false, false, risk.SourceOf(ip).String())
		return err
	})
}

// Recent implements risk.History.
func (s *DB) Recent(ctx context.Context, subject string, limit int) ([]risk.Record, error) {
	if limit <= 0 {
		return []risk.Record{}, nil
	}
	st, err := s.stmt(ctx, `SELECT at, ip, fingerprint, country, asn, lat, lon, has_geo FROM signins
		WHERE subject = ? AND success = ? ORDER BY at DESC, id LIMIT ?`)
	if err != nil {
		return nil, err
	}
	return queryAll(ctx, stmtQuerier{st}, "", []any{subject, true, limit},
		func(sc interface{ Scan(...any) error }) (risk.Record, error) {
			var r risk.Record
			var at, asn int64
			var ip string
			if err := sc.Scan(&at, &ip, &r.Fingerprint, &r.Country, &asn, &r.Lat, &r.Lon, &r.HasGeo); err != nil {
				return r, err
			}
			r.Time, r.ASN = fromNanos(at), uint(asn)
			r.IP, _ = netip.ParseAddr(ip) // "" (no address) stays the zero Addr
			return r, nil
		})
}

// FailuresByUser implements risk.History.
func (s *DB) FailuresByUser(ctx context.Context, username string, since time.Time) (int, error) {
	var n int
	err := s.readRow(ctx, `SELECT COUNT(*) FROM signins WHERE username = ? AND success = ? AND at >= ?`, username, false, toNanos(since)).Scan(&n)
	return n, err
}

// FailuresBySource implements risk.History.
func (s *DB) FailuresBySource(ctx context.Context, source netip.Prefix, since time.Time) (int, int, error) {
	var n, users int
	err := s.readRow(ctx, `SELECT COUNT(*), COUNT(DISTINCT CASE WHEN username = '' THEN NULL ELSE username END) FROM signins
		WHERE source = ? AND success = ? AND at >= ?`, source.String(), false, toNanos(since)).Scan(&n, &users)
	return n, users, err
}

// PruneSignIns deletes sign-in history older than before.
func (s *DB) PruneSignIns(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM signins WHERE at < ?`), toNanos(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// stmtQuerier lets queryAll run a prepared statement (the query text argument is ignored).
type stmtQuerier struct{ st *sql.Stmt }

func (q stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return q.st.QueryContext(ctx, args...)
}

func (q stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return q.st.QueryRowContext(ctx, args...)
}

func (q stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return q.st.ExecContext(ctx, args...)
}

// PruneSessions deletes sessions that ended before before, and every token that expired before
// it (the ledger keeps the record of both).
func (s *DB) PruneSessions(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM session_tokens WHERE expires_at < ?`), toNanos(before)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM sessions WHERE expires_at < ?`), toNanos(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
