package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
)

const tokenCols = `hash, id, subject, kind, description, created_at, expires_at, revoked_at, revoked_reason, issued_by, session_id, session_bound, step_up_at`

func scanToken(sc interface{ Scan(...any) error }) (identity.Token, error) {
	var t identity.Token
	var created, expires, revoked, stepUp int64
	err := sc.Scan(&t.Hash, &t.ID, &t.Subject, &t.Kind, &t.Description, &created, &expires, &revoked, &t.RevokedReason, &t.IssuedBy,
		&t.SessionID, &t.SessionBound, &stepUp)
	t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.StepUpAt = fromNanos(created), fromNanos(expires), fromNanos(revoked), fromNanos(stepUp)
	return t, err
}

// IssueToken implements identity.TokenStore.
func (s *DB) IssueToken(ctx context.Context, t identity.Token, e audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if t.Kind == identity.KindUser {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM tokens WHERE subject = ? AND kind = ? AND revoked_at = 0 AND expires_at > ?`),
				t.Subject, identity.KindUser, toNanos(t.CreatedAt)).Scan(&n); err != nil {
				return err
			}
			if n >= identity.MaxActiveTokens {
				return fmt.Errorf("%w: %s already holds %d API tokens, the most one person may; revoke one you no longer use (rampart token list, rampart token revoke ID)",
					identity.ErrTooManyTokens, t.Subject, n)
			}
		}
		if _, err := appendEntry(ctx, s, tx, e); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, 0, '', ?, ?, ?, ?)`),
			t.Hash, t.ID, t.Subject, t.Kind, t.Description, toNanos(t.CreatedAt), toNanos(t.ExpiresAt), t.IssuedBy, t.SessionID, t.SessionBound, toNanos(t.StepUpAt))
		return err
	})
}

// TokenByHash implements identity.TokenStore.
func (s *DB) TokenByHash(ctx context.Context, hash string) (identity.Token, error) {
	t, err := scanToken(s.readRow(ctx, `SELECT `+tokenCols+` FROM tokens WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Token{}, identity.ErrTokenNotFound
	}
	return t, err
}

// TokenByID implements identity.TokenStore.
func (s *DB) TokenByID(ctx context.Context, id string) (identity.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, s.q(`SELECT `+tokenCols+` FROM tokens WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return identity.Token{}, identity.ErrTokenNotFound
	}
	return t, err
}

// ListTokens implements identity.TokenStore ("" lists everyone's; at most 1000, newest first).
func (s *DB) ListTokens(ctx context.Context, subject string) ([]identity.Token, error) {
	q, args := `SELECT `+tokenCols+` FROM tokens`, []any{}
	if subject != "" {
		q, args = q+` WHERE subject = ?`, append(args, subject)
	}
	return queryAll(ctx, s.db, s.q(q+` ORDER BY created_at DESC, id LIMIT 1000`), args, scanToken)
}

// RevokeToken implements identity.TokenStore.
func (s *DB) RevokeToken(ctx context.Context, id string, at time.Time, reason string, e audit.Event) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at = 0`), toNanos(at), reason, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return identity.ErrTokenNotFound
		}
		_, err = appendEntry(ctx, s, tx, e)
		return err
	})
}

// RevokeSessionTokens implements identity.SessionTx.
func (t *sessionTx) RevokeSessionTokens(ctx context.Context, sessionID string, at time.Time, reason string) (int, error) {
	res, err := t.tx.ExecContext(ctx, t.s.q(`UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE session_id = ? AND session_bound = ? AND revoked_at = 0`),
		toNanos(at), reason, sessionID, true)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// SessionRecord implements identity.SessionRecords: the session a bound token speaks for.
func (s *DB) SessionRecord(ctx context.Context, id string) (identity.Session, error) {
	ses, err := scanSession(s.readRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return ses, identity.ErrSessionNotFound
	}
	return ses, err
}

// RevokeSubjectSessions implements identity.SessionTx.
func (t *sessionTx) RevokeSubjectSessions(ctx context.Context, subject string, at time.Time, reason string) ([]string, error) {
	rows, err := t.tx.QueryContext(ctx, t.s.q(`SELECT id FROM sessions WHERE subject = ? AND revoked_at = 0 ORDER BY id`), subject)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_, err = t.tx.ExecContext(ctx, t.s.q(`UPDATE sessions SET revoked_at = ?, revoked_reason = ? WHERE subject = ? AND revoked_at = 0`), toNanos(at), reason, subject)
	return ids, err
}

// RevokeSubjectTokens implements identity.SessionTx.
func (t *sessionTx) RevokeSubjectTokens(ctx context.Context, subject string, at time.Time, reason string) (int, error) {
	res, err := t.tx.ExecContext(ctx, t.s.q(`UPDATE tokens SET revoked_at = ?, revoked_reason = ? WHERE subject = ? AND revoked_at = 0`), toNanos(at), reason, subject)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
