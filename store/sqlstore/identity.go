package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
)

// sessionTx implements identity.SessionTx.
type sessionTx struct {
	s  *DB
	tx *sql.Tx
}

// UpdateSessions implements identity.SessionStore: a serialized write transaction.
func (s *DB) UpdateSessions(ctx context.Context, fn func(identity.SessionTx) error) error {
	return s.write(ctx, func(tx *sql.Tx) error { return fn(&sessionTx{s: s, tx: tx}) })
}

func (t *sessionTx) Append(ctx context.Context, e audit.Event) (int64, error) {
	return appendEntry(ctx, t.s, t.tx, e)
}

const sessionCols = `id, subject, method, created_at, expires_at, last_seen_at, auth_time, mfa_at, amr, ip, fingerprint, groups_json, risk, revoked_at, revoked_reason, trusted_mfa_at, idp_mfa_at`

func scanSession(sc interface{ Scan(...any) error }) (identity.Session, error) {
	var s identity.Session
	var created, expires, seen, auth, mfa, revoked, trusted, idpMFA int64
	var amr, groups string
	err := sc.Scan(&s.ID, &s.Subject, &s.Method, &created, &expires, &seen, &auth, &mfa, &amr, &s.IP, &s.Fingerprint, &groups, &s.Risk, &revoked, &s.RevokedReason, &trusted, &idpMFA)
	if err != nil {
		return s, err
	}
	s.IdPMFAAt = fromNanos(idpMFA)
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = fromNanos(created), fromNanos(expires), fromNanos(seen)
	s.AuthTime, s.MFAAt, s.RevokedAt, s.TrustedMFAAt = fromNanos(auth), fromNanos(mfa), fromNanos(revoked), fromNanos(trusted)
	if err := json.Unmarshal([]byte(amr), &s.AMR); err != nil {
		return s, err
	}
	return s, json.Unmarshal([]byte(groups), &s.Groups)
}

func jsonText(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (t *sessionTx) Session(ctx context.Context, id string) (identity.Session, error) {
	s, err := scanSession(t.tx.QueryRowContext(ctx, t.s.q(`SELECT `+sessionCols+` FROM sessions WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, identity.ErrSessionNotFound
	}
	return s, err
}

func (t *sessionTx) InsertSession(ctx context.Context, s identity.Session) error {
	_, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		s.ID, s.Subject, s.Method, toNanos(s.CreatedAt), toNanos(s.ExpiresAt), toNanos(s.LastSeenAt), toNanos(s.AuthTime), toNanos(s.MFAAt),
		jsonText(s.AMR), s.IP, s.Fingerprint, jsonText(s.Groups), s.Risk, toNanos(s.RevokedAt), s.RevokedReason, toNanos(s.TrustedMFAAt), toNanos(s.IdPMFAAt))
	return err
}

func (t *sessionTx) UpdateSession(ctx context.Context, s identity.Session) error {
	res, err := t.tx.ExecContext(ctx, t.s.q(`UPDATE sessions SET last_seen_at = ?, auth_time = ?, mfa_at = ?, trusted_mfa_at = ?, idp_mfa_at = ?, amr = ?, revoked_at = ?, revoked_reason = ? WHERE id = ?`),
		toNanos(s.LastSeenAt), toNanos(s.AuthTime), toNanos(s.MFAAt), toNanos(s.TrustedMFAAt), toNanos(s.IdPMFAAt), jsonText(s.AMR), toNanos(s.RevokedAt), s.RevokedReason, s.ID)
	return mustAffect(res, err, "session", s.ID)
}

func scanSessionToken(sc interface{ Scan(...any) error }) (identity.SessionToken, error) {
	var t identity.SessionToken
	var issued, expires, used int64
	err := sc.Scan(&t.Hash, &t.SessionID, &t.Kind, &issued, &expires, &used)
	t.IssuedAt, t.ExpiresAt, t.UsedAt = fromNanos(issued), fromNanos(expires), fromNanos(used)
	return t, err
}

func (t *sessionTx) SessionToken(ctx context.Context, hash string) (identity.SessionToken, error) {
	tok, err := scanSessionToken(t.tx.QueryRowContext(ctx, t.s.q(`SELECT hash, session_id, kind, issued_at, expires_at, used_at FROM session_tokens WHERE hash = ?`), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return tok, identity.ErrSessionNotFound
	}
	return tok, err
}

func (t *sessionTx) InsertSessionToken(ctx context.Context, tok identity.SessionToken) error {
	_, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO session_tokens (hash, session_id, kind, issued_at, expires_at, used_at) VALUES (?, ?, ?, ?, ?, ?)`),
		tok.Hash, tok.SessionID, tok.Kind, toNanos(tok.IssuedAt), toNanos(tok.ExpiresAt), toNanos(tok.UsedAt))
	return err
}

func (t *sessionTx) MarkSessionTokenUsed(ctx context.Context, hash string, at time.Time) error {
	res, err := t.tx.ExecContext(ctx, t.s.q(`UPDATE session_tokens SET used_at = ? WHERE hash = ? AND used_at = 0`), toNanos(at), hash)
	return mustAffect(res, err, "session token", hash[:8])
}

// DeleteSessionTokens removes a revoked session's access tokens; refresh tokens are kept (spent)
// so that a later replay is still recognised as one.

const userCols = `subject, groups_json, disabled_at, disabled_by, updated_at, idp_subject, mfa_enrol_until, mfa_enrol_by, groups_at`

func scanUser(sc interface{ Scan(...any) error }) (identity.User, error) {
	var u identity.User
	var groups string
	var disabled, updated, enrol, groupsAt int64
	err := sc.Scan(&u.Subject, &groups, &disabled, &u.DisabledBy, &updated, &u.IdPSubject, &enrol, &u.MFAEnrolBy, &groupsAt)
	if err != nil {
		return u, err
	}
	u.DisabledAt, u.UpdatedAt, u.MFAEnrolUntil, u.GroupsAt = fromNanos(disabled), fromNanos(updated), fromNanos(enrol), fromNanos(groupsAt)
	return u, json.Unmarshal([]byte(groups), &u.Groups)
}

func userRow(ctx context.Context, s *DB, q querier, subject string) (identity.User, error) {
	var row rowScanner
	if q == nil { // outside a transaction: the prepared statement
		row = s.readRow(ctx, `SELECT `+userCols+` FROM users WHERE subject = ?`, subject)
	} else {
		row = q.QueryRowContext(ctx, s.q(`SELECT `+userCols+` FROM users WHERE subject = ?`), subject)
	}
	u, err := scanUser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return identity.User{Subject: subject, Groups: []string{}}, identity.ErrSessionNotFound
	}
	return u, err
}

func (t *sessionTx) User(ctx context.Context, subject string) (identity.User, error) {
	return userRow(ctx, t.s, t.tx, subject)
}

func (t *sessionTx) PutUser(ctx context.Context, u identity.User) error {
	if _, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM users WHERE subject = ?`), u.Subject); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		u.Subject, jsonText(u.Groups), toNanos(u.DisabledAt), u.DisabledBy, toNanos(u.UpdatedAt), u.IdPSubject, toNanos(u.MFAEnrolUntil), u.MFAEnrolBy, toNanos(u.GroupsAt))
	return err
}

// SessionByToken implements identity.SessionStore: the token, its session and the session's
// person in one prepared query (the per-request path when the cache misses).
func (s *DB) SessionByToken(ctx context.Context, hash string) (identity.Session, identity.SessionToken, identity.User, error) {
	row := s.readRow(ctx, `SELECT t.hash, t.session_id, t.kind, t.issued_at, t.expires_at, t.used_at, `+prefixed("s.", sessionCols)+`,
		COALESCE(u.groups_json, '[]'), COALESCE(u.disabled_at, 0), COALESCE(u.disabled_by, ''), COALESCE(u.updated_at, 0), COALESCE(u.idp_subject, '')
		FROM session_tokens t JOIN sessions s ON s.id = t.session_id LEFT JOIN users u ON u.subject = s.subject WHERE t.hash = ?`, hash)
	var tok identity.SessionToken
	var issued, expires, used int64
	var ses identity.Session
	var created, sexp, seen, auth, mfa, revoked, trusted, idpMFA int64
	var amr, groups string
	var u identity.User
	var ugroups string
	var udisabled, uupdated int64
	err := row.Scan(&tok.Hash, &tok.SessionID, &tok.Kind, &issued, &expires, &used,
		&ses.ID, &ses.Subject, &ses.Method, &created, &sexp, &seen, &auth, &mfa, &amr, &ses.IP, &ses.Fingerprint, &groups, &ses.Risk, &revoked, &ses.RevokedReason, &trusted, &idpMFA,
		&ugroups, &udisabled, &u.DisabledBy, &uupdated, &u.IdPSubject)
	if errors.Is(err, sql.ErrNoRows) {
		return ses, tok, u, identity.ErrSessionNotFound
	}
	if err != nil {
		return ses, tok, u, err
	}
	tok.IssuedAt, tok.ExpiresAt, tok.UsedAt = fromNanos(issued), fromNanos(expires), fromNanos(used)
	ses.CreatedAt, ses.ExpiresAt, ses.LastSeenAt = fromNanos(created), fromNanos(sexp), fromNanos(seen)
	ses.AuthTime, ses.MFAAt, ses.RevokedAt, ses.TrustedMFAAt, ses.IdPMFAAt = fromNanos(auth), fromNanos(mfa), fromNanos(revoked), fromNanos(trusted), fromNanos(idpMFA)
	u.Subject, u.DisabledAt, u.UpdatedAt = ses.Subject, fromNanos(udisabled), fromNanos(uupdated)
	if err := json.Unmarshal([]byte(amr), &ses.AMR); err != nil {
		return ses, tok, u, err
	}
	if err := json.Unmarshal([]byte(ugroups), &u.Groups); err != nil {
		return ses, tok, u, err
	}
	return ses, tok, u, json.Unmarshal([]byte(groups), &ses.Groups)
}

func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// ListSessions implements identity.SessionStore ("" lists everyone's).
func (s *DB) ListSessions(ctx context.Context, subject string) ([]identity.Session, error) {
	q, args := `SELECT `+sessionCols+` FROM sessions`, []any{}
	if subject != "" {
		q, args = q+` WHERE subject = ?`, append(args, subject)
	}
	return queryAll(ctx, s.db, s.q(q+` ORDER BY created_at DESC LIMIT 500`), args, scanSession)
}

// UserRecord implements identity.SessionStore.
func (s *DB) UserRecord(ctx context.Context, subject string) (identity.User, error) {
	u, err := userRow(ctx, s, nil, subject)
	if errors.Is(err, identity.ErrSessionNotFound) {
		return u, nil
	}
	return u, err
}

// ListUsers implements identity.SessionStore.
func (s *DB) ListUsers(ctx context.Context) ([]identity.User, error) {
	return queryAll(ctx, s.db, `SELECT `+userCols+` FROM users ORDER BY subject`, nil, scanUser)
}

func (t *sessionTx) DeleteMFAFactor(ctx context.Context, subject string) (bool, error) {
	res, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM mfa_factors WHERE subject = ?`), subject)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DisabledSubjects implements authz.DisabledSource: the people an administrator or the identity
// provider disabled.
func (s *DB) DisabledSubjects(ctx context.Context) ([]string, error) {
	return queryAll(ctx, s.db, `SELECT subject FROM users WHERE disabled_at <> 0 ORDER BY subject`, nil, func(sc interface{ Scan(...any) error }) (string, error) {
		var v string
		return v, sc.Scan(&v)
	})
}
