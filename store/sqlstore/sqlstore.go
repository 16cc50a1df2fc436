// Package sqlstore is Rampart's persistence over database/sql, shared by the SQLite and
// PostgreSQL adapters: one schema, one set of queries, with the few differences (placeholders,
// how write transactions are serialized) in a Dialect.
//
// Every write transaction first takes the ledger's write lock (SQLite: BEGIN IMMEDIATE;
// PostgreSQL: SELECT … FOR UPDATE on the ledger head row), so writers are serialized, ledger
// sequence numbers are gapless and follow commit order, and a transaction's reads stay true
// until it commits. Ledger entries appended in a transaction commit or roll back with it
// (invariant 4), and the ledger hears of each one (WatchAppends) only once the outcome is known,
// so that it can check what it signs against what this process wrote (invariant 5).
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Dialect holds what differs between databases.
type Dialect struct {
	Name string
	// Numbered turns ? placeholders into $1, $2, … (PostgreSQL).
	Numbered bool
	// LockWriter is run first in every write transaction to serialize writers ("" if the
	// transaction's BEGIN already does).
	LockWriter string
	// LockMigrations is run first in the migration transaction ("" if not needed).
	LockMigrations string
	// SerializeInProcess makes writers in this process queue on a mutex before starting their
	// transaction (SQLite: spares busy-waiting on the database lock).
	SerializeInProcess bool
}

// DB is a Rampart store over a database/sql handle.
type DB struct {
	db *sql.DB
	d  Dialect
	wm sync.Mutex

	stmts sync.Map // query text → *sql.Stmt, for the hot read paths

	watcher   atomic.Pointer[audit.AppendWatcher]
	txAppends sync.Map // *sql.Tx of a write in progress → *[]appended
}

// appended is an entry appended by a write transaction in progress.
type appended struct {
	seq  int64
	leaf []byte
}

// WatchAppends tells w of every ledger entry this handle appends: its sequence number inside
// the transaction, then its leaf hash once the transaction committed (or that it rolled back).
// The ledger uses it to check what it signs against what this process wrote (invariant 5).
func (s *DB) WatchAppends(w audit.AppendWatcher) { s.watcher.Store(&w) }

func (s *DB) appendWatcher() audit.AppendWatcher {
	if w := s.watcher.Load(); w != nil {
		return *w
	}
	return nil
}

// Open wraps db, applies pending migrations and returns the store.
func Open(ctx context.Context, db *sql.DB, d Dialect) (*DB, error) {
	s := &DB{db: db, d: d}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// SQL returns the underlying handle, for tests that tamper with rows on purpose and for health
// checks.
func (s *DB) SQL() *sql.DB { return s.db }

// Dialect returns the store's dialect.
func (s *DB) Dialect() Dialect { return s.d }

// Close closes the database.
func (s *DB) Close() error {
	s.stmts.Range(func(_, v any) bool { _ = v.(*sql.Stmt).Close(); return true })
	return s.db.Close()
}

// stmt returns the prepared statement for query (written with ? placeholders), preparing it
// once. The hot read paths (credential and history lookups) use it: re-parsing the SQL text was
// about half the cost of a cold credential check.
func (s *DB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := s.stmts.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := s.db.PrepareContext(ctx, s.q(query))
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// rowScanner is a *sql.Row, or a preparation error that Scan reports.
type rowScanner interface{ Scan(...any) error }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }

// readRow runs a one-row read through a prepared statement.
func (s *DB) readRow(ctx context.Context, query string, args ...any) rowScanner {
	st, err := s.stmt(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// Ping checks that the database answers.
func (s *DB) Ping(ctx context.Context) error {
	var one int
	return s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// Rebind rewrites ? placeholders for the dialect, for callers that write raw SQL (tests).
func (s *DB) Rebind(query string) string { return s.q(query) }

func (s *DB) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func (s *DB) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for i, m := range migrations {
		version := i + 1
		err := s.inTx(ctx, s.d.LockMigrations, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range strings.Split(m, ";\n") {
				if strings.TrimSpace(stmt) == "" {
					continue
				}
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w in:\n%s", err, stmt)
				}
			}
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("%s migration %d: %w", s.d.Name, version, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction that begins with lock (if any), rolling back on error or panic.
func (s *DB) inTx(ctx context.Context, lock string, fn func(*sql.Tx) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if lock != "" {
		if _, err = tx.ExecContext(ctx, lock); err != nil {
			return fmt.Errorf("take the write lock: %w", err)
		}
	}
	if err = fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// write runs fn in a serialized write transaction. The watcher, if any, hears of the ledger
// entries fn appended once the outcome is known: committed, or abandoned (an error, a failed
// commit, a panic).
func (s *DB) write(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.d.SerializeInProcess {
		s.wm.Lock()
		defer s.wm.Unlock()
	}
	var own []appended
	committed := false
	defer func() {
		w := s.appendWatcher()
		if w == nil {
			return
		}
		for _, a := range own {
			if committed {
				w.Committed(a.seq, a.leaf)
			} else {
				w.Abandoned(a.seq)
			}
		}
	}()
	err := s.inTx(ctx, s.d.LockWriter, func(tx *sql.Tx) error {
		s.txAppends.Store(tx, &own)
		defer s.txAppends.Delete(tx)
		return fn(tx)
	})
	committed = err == nil
	return err
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// reader implements access.Reader over a querier.
type reader struct {
	s *DB
	q querier
}

// Update implements access.Store.
func (s *DB) Update(ctx context.Context, fn func(access.Tx) error) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		return fn(&txn{reader: reader{s: s, q: tx}})
	})
}

func (s *DB) r() reader { return reader{s: s, q: s.db} }

// Request implements access.Reader.
func (s *DB) Request(ctx context.Context, id string) (access.Request, error) {
	return s.r().Request(ctx, id)
}

// Reviews implements access.Reader.
func (s *DB) Reviews(ctx context.Context, id string) ([]access.Review, error) {
	return s.r().Reviews(ctx, id)
}

// Grant implements access.Reader.
func (s *DB) Grant(ctx context.Context, id string) (access.Grant, error) {
	return s.r().Grant(ctx, id)
}

// ListRequests implements access.Reader.
func (s *DB) ListRequests(ctx context.Context, f access.RequestFilter) ([]access.Request, error) {
	return s.r().ListRequests(ctx, f)
}

// ListGrants implements access.Reader.
func (s *DB) ListGrants(ctx context.Context, f access.GrantFilter) ([]access.Grant, error) {
	return s.r().ListGrants(ctx, f)
}

// Meta implements access.Reader.
func (s *DB) Meta(ctx context.Context, key string) (string, error) { return s.r().Meta(ctx, key) }

const requestCols = `id, role, requester, beneficiary, reason, duration_ns, state, policy, created_at, expires_at, decided_at, grant_id, renewal_of, break_glass, post_review, version`

func scanRequest(sc interface{ Scan(...any) error }) (access.Request, error) {
	var r access.Request
	var dur, created, expires, decided int64
	var state, post string
	err := sc.Scan(&r.ID, &r.Role, &r.Requester, &r.Beneficiary, &r.Reason, &dur, &state, &r.Policy, &created, &expires, &decided, &r.GrantID, &r.RenewalOf, &r.BreakGlass, &post, &r.Version)
	r.Duration, r.State, r.PostReview = time.Duration(dur), access.State(state), access.PostReview(post)
	r.CreatedAt, r.ExpiresAt, r.DecidedAt = fromNanos(created), fromNanos(expires), fromNanos(decided)
	return r, err
}

func (r reader) Request(ctx context.Context, id string) (access.Request, error) {
	req, err := scanRequest(r.q.QueryRowContext(ctx, r.s.q(`SELECT `+requestCols+` FROM requests WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return access.Request{}, access.ErrNotFound
	}
	return req, err
}

func (r reader) Reviews(ctx context.Context, id string) ([]access.Review, error) {
	rows, err := r.q.QueryContext(ctx, r.s.q(`SELECT request_id, approver, decision, duration_ns, comment, at, credential_id, session_id, role_digest FROM reviews WHERE request_id = ? ORDER BY at, approver`), id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []access.Review
	for rows.Next() {
		var rv access.Review
		var dec string
		var dur, at int64
		if err := rows.Scan(&rv.RequestID, &rv.Approver, &dec, &dur, &rv.Comment, &at, &rv.CredentialID, &rv.SessionID, &rv.RoleDigest); err != nil {
			return nil, err
		}
		rv.Decision, rv.Duration, rv.At = access.Decision(dec), time.Duration(dur), fromNanos(at)
		out = append(out, rv)
	}
	return out, rows.Err()
}

const grantCols = `id, request_id, role, subject, starts_at, expires_at, state, break_glass, ended_at, ended_by, end_reason, version, role_digest, role_definition, requester`

func scanGrant(sc interface{ Scan(...any) error }) (access.Grant, error) {
	var g access.Grant
	var starts, expires, ended int64
	var state, def string
	err := sc.Scan(&g.ID, &g.RequestID, &g.Role, &g.Subject, &starts, &expires, &state, &g.BreakGlass, &ended, &g.EndedBy, &g.EndReason, &g.Version, &g.RoleDigest, &def, &g.Requester)
	g.StartsAt, g.ExpiresAt, g.EndedAt, g.State = fromNanos(starts), fromNanos(expires), fromNanos(ended), access.GrantState(state)
	g.Definition = decodeDefinition(g.RoleDigest, def)
	return g, err
}

// decodeDefinition reads a grant's pinned role definition. A grant with a digest whose
// definition does not decode or does not match the digest (an edited row) is pinned to
// nothing, so it allows nothing: fail closed. No digest: not pinned yet (nil).
func decodeDefinition(digest, text string) *policy.RoleDefinition {
	if digest == "" {
		return nil
	}
	var d policy.RoleDefinition
	if err := json.Unmarshal([]byte(text), &d); err != nil || d.Digest() != digest {
		return &policy.RoleDefinition{Reach: map[string][]string{}}
	}
	return &d
}

func encodeDefinition(d *policy.RoleDefinition) (string, error) {
	if d == nil {
		return "", nil
	}
	b, err := json.Marshal(d)
	return string(b), err
}

func (r reader) Grant(ctx context.Context, id string) (access.Grant, error) {
	g, err := scanGrant(r.q.QueryRowContext(ctx, r.s.q(`SELECT `+grantCols+` FROM grants WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return access.Grant{}, access.ErrNotFound
	}
	return g, err
}

// where builds a WHERE clause from conditions.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	w.add(col+" IN (?"+strings.Repeat(", ?", len(vals)-1)+")", toAny(vals)...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func toAny[T ~string](vals []T) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out
}

func (r reader) ListRequests(ctx context.Context, f access.RequestFilter) ([]access.Request, error) {
	var w where
	var states []string
	for _, st := range f.States {
		states = append(states, string(st))
	}
	w.in("state", states)
	if f.Party != "" {
		w.add("(requester = ? OR beneficiary = ?)", f.Party, f.Party)
	}
	if f.Requester != "" {
		w.add("requester = ?", f.Requester)
	}
	if f.BreakGlassReview {
		w.add("post_review = ?", string(access.PostReviewPending))
	}
	if !f.LapsedBy.IsZero() {
		w.add("expires_at <= ?", toNanos(f.LapsedBy))
	}
	if !f.AfterTime.IsZero() {
		w.add("(created_at > ? OR (created_at = ? AND id > ?))", toNanos(f.AfterTime), toNanos(f.AfterTime), f.AfterID)
	}
	query := `SELECT ` + requestCols + ` FROM requests` + w.String() + ` ORDER BY created_at, id`
	if f.Limit > 0 {
		query += " LIMIT " + strconv.Itoa(f.Limit)
	}
	return queryAll(ctx, r.q, r.s.q(query), w.args, scanRequest)
}

// queryAll runs a query and scans every row with scan.
func queryAll[T any](ctx context.Context, q querier, query string, args []any, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (r reader) ListGrants(ctx context.Context, f access.GrantFilter) ([]access.Grant, error) {
	var w where
	var states []string
	for _, st := range f.States {
		states = append(states, string(st))
	}
	w.in("state", states)
	if f.Subject != "" {
		w.add("subject = ?", f.Subject)
	}
	if f.RequestID != "" {
		w.add("request_id = ?", f.RequestID)
	}
	if !f.EndedBy.IsZero() {
		w.add("expires_at <= ?", toNanos(f.EndedBy))
	}
	if f.Unpinned {
		w.add("role_digest = ?", "")
	}
	order := " ORDER BY id"
	switch {
	case f.ByVersion && f.AfterID == "":
		w.add("version > ?", f.ChangedAfter)
		order = " ORDER BY version, id"
	case f.ByVersion:
		w.add("(version > ? OR (version = ? AND id > ?))", f.ChangedAfter, f.ChangedAfter, f.AfterID)
		order = " ORDER BY version, id"
	case f.AfterID != "":
		w.add("id > ?", f.AfterID)
	}
	query := `SELECT ` + grantCols + ` FROM grants` + w.String() + order
	if f.Limit > 0 {
		query += " LIMIT " + strconv.Itoa(f.Limit)
	}
	return queryAll(ctx, r.q, r.s.q(query), w.args, scanGrant)
}

func (r reader) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := r.q.QueryRowContext(ctx, r.s.q(`SELECT value FROM meta WHERE key = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// txn implements access.Tx.
type txn struct {
	reader
}

// Append implements audit.Appender: it takes the next sequence number and stores the entry.
func (t *txn) Append(ctx context.Context, e audit.Event) (int64, error) {
	return appendEntry(ctx, t.s, t.q, e)
}

func appendEntry(ctx context.Context, s *DB, q querier, e audit.Event) (int64, error) {
	var size int64
	if err := q.QueryRowContext(ctx, `UPDATE ledger_head SET size = size + 1 WHERE id = 1 RETURNING size`).Scan(&size); err != nil {
		return 0, fmt.Errorf("advance ledger head: %w", err)
	}
	seq := size - 1
	data, err := audit.Encode(seq, e)
	if err != nil {
		return 0, err
	}
	if w := s.appendWatcher(); w != nil {
		v, ok := s.txAppends.Load(q)
		if !ok {
			return 0, fmt.Errorf("append ledger entry %d: not in a write transaction of this store", seq)
		}
		if err := w.Appending(seq); err != nil {
			return 0, err
		}
		own := v.(*[]appended)
		*own = append(*own, appended{seq: seq, leaf: audit.LeafHash(data)})
	}
	if _, err := q.ExecContext(ctx, s.q(`INSERT INTO ledger (seq, entry) VALUES (?, ?)`), seq, string(data)); err != nil {
		return 0, fmt.Errorf("insert ledger entry %d: %w", seq, err)
	}
	// An entry that says someone must be told (identity's details.notify) writes its
	// notification in the same transaction, whichever package appended it.
	if n, ok := access.HintedNotification(seq, e); ok {
		if _, err := insertNotification(ctx, s, q, n, ""); err != nil {
			return 0, fmt.Errorf("write the notification ledger entry %d asks for: %w", seq, err)
		}
	}
	// A detection alert is delivered to the notification sinks, whichever replica's runner
	// appended it.
	if n, ok := access.AlertNotification(seq, e); ok {
		if _, err := insertNotification(ctx, s, q, n, ""); err != nil {
			return 0, fmt.Errorf("write the notification of alert entry %d: %w", seq, err)
		}
	}
	return seq, nil
}

func (t *txn) InsertRequest(ctx context.Context, r access.Request) error {
	_, err := t.q.ExecContext(ctx, t.s.q(`INSERT INTO requests (`+requestCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		r.ID, r.Role, r.Requester, r.Beneficiary, r.Reason, int64(r.Duration), string(r.State), r.Policy, toNanos(r.CreatedAt), toNanos(r.ExpiresAt),
		toNanos(r.DecidedAt), r.GrantID, r.RenewalOf, r.BreakGlass, string(r.PostReview), r.Version)
	return err
}

func (t *txn) UpdateRequest(ctx context.Context, r access.Request) error {
	res, err := t.q.ExecContext(ctx, t.s.q(`UPDATE requests SET state = ?, decided_at = ?, grant_id = ?, post_review = ?, version = ? WHERE id = ?`),
		string(r.State), toNanos(r.DecidedAt), r.GrantID, string(r.PostReview), r.Version, r.ID)
	return mustAffect(res, err, "request", r.ID)
}

func (t *txn) PutReview(ctx context.Context, rv access.Review) error {
	if _, err := t.q.ExecContext(ctx, t.s.q(`DELETE FROM reviews WHERE request_id = ? AND approver = ?`), rv.RequestID, rv.Approver); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, t.s.q(`INSERT INTO reviews (request_id, approver, decision, duration_ns, comment, at, credential_id, session_id, role_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		rv.RequestID, rv.Approver, string(rv.Decision), int64(rv.Duration), rv.Comment, toNanos(rv.At), rv.CredentialID, rv.SessionID, rv.RoleDigest)
	return err
}

func (t *txn) DeleteReview(ctx context.Context, requestID, approver string) error {
	_, err := t.q.ExecContext(ctx, t.s.q(`DELETE FROM reviews WHERE request_id = ? AND approver = ?`), requestID, approver)
	return err
}

func (t *txn) InsertGrant(ctx context.Context, g access.Grant) error {
	def, err := encodeDefinition(g.Definition)
	if err != nil {
		return err
	}
	_, err = t.q.ExecContext(ctx, t.s.q(`INSERT INTO grants (`+grantCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		g.ID, g.RequestID, g.Role, g.Subject, toNanos(g.StartsAt), toNanos(g.ExpiresAt), string(g.State), g.BreakGlass, toNanos(g.EndedAt), g.EndedBy, g.EndReason, g.Version,
		g.RoleDigest, def, g.Requester)
	return err
}

func (t *txn) UpdateGrant(ctx context.Context, g access.Grant) error {
	def, err := encodeDefinition(g.Definition)
	if err != nil {
		return err
	}
	res, err := t.q.ExecContext(ctx, t.s.q(`UPDATE grants SET expires_at = ?, state = ?, ended_at = ?, ended_by = ?, end_reason = ?, version = ?, role_digest = ?, role_definition = ? WHERE id = ?`),
		toNanos(g.ExpiresAt), string(g.State), toNanos(g.EndedAt), g.EndedBy, g.EndReason, g.Version, g.RoleDigest, def, g.ID)
	return mustAffect(res, err, "grant", g.ID)
}

func (t *txn) SetMeta(ctx context.Context, key, value string) error {
	if _, err := t.q.ExecContext(ctx, t.s.q(`DELETE FROM meta WHERE key = ?`), key); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, t.s.q(`INSERT INTO meta (key, value) VALUES (?, ?)`), key, value)
	return err
}

// AppendOnce appends e to the ledger unless an entry was appended under key before, by this
// process or any other sharing the database (several replicas of the server, or one restarted).
// It reports whether it appended. The key is remembered in the same transaction as the entry,
// so a crash leaves neither or both, and writers are serialized, so two replicas racing on one
// key append once. Use it for reports that must not repeat, such as a drifted binding.
func (s *DB) AppendOnce(ctx context.Context, key string, e audit.Event) (appended bool, err error) {
	if key == "" {
		return false, errors.New("AppendOnce: empty key")
	}
	k := "once:" + key
	err = s.Update(ctx, func(tx access.Tx) error {
		appended = false
		v, err := tx.Meta(ctx, k)
		if err != nil || v != "" {
			return err
		}
		seq, err := tx.Append(ctx, e)
		if err != nil {
			return err
		}
		appended = true
		return tx.SetMeta(ctx, k, strconv.FormatInt(seq, 10))
	})
	if err != nil {
		return false, err
	}
	return appended, nil
}

func mustAffect(res sql.Result, err error, what, id string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("update %s %s: %d rows changed, want 1", what, id, n)
	}
	return nil
}

// toNanos stores the zero time as 0.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Entries implements audit.Store.
func (s *DB) Entries(ctx context.Context, from int64, limit int) ([]audit.Record, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, entry FROM ledger WHERE seq >= ? ORDER BY seq LIMIT ?`), from, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var data string
		if err := rows.Scan(&r.Seq, &data); err != nil {
			return nil, err
		}
		r.Data = []byte(data)
		out = append(out, r)
	}
	return out, rows.Err()
}

// LedgerSize returns the number of committed entries.
func (s *DB) LedgerSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, `SELECT size FROM ledger_head WHERE id = 1`).Scan(&n)
	return n, err
}

// PutCheckpoint implements audit.Store.
func (s *DB) PutCheckpoint(ctx context.Context, size int64, signed []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT COUNT(*) FROM checkpoints WHERE size = ?`), size).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := tx.ExecContext(ctx, s.q(`INSERT INTO checkpoints (size, note, created_at) VALUES (?, ?, ?)`), size, string(signed), time.Now().UnixNano())
		return err
	})
}

// UpdateCheckpoint implements audit.Store.
func (s *DB) UpdateCheckpoint(ctx context.Context, size int64, signed []byte) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q(`UPDATE checkpoints SET note = ? WHERE size = ?`), string(signed), size)
		return mustAffect(res, err, "checkpoint", strconv.FormatInt(size, 10))
	})
}

// LatestCheckpoint implements audit.Store.
func (s *DB) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	var note string
	err := s.db.QueryRowContext(ctx, `SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1`).Scan(&note)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []byte(note), nil
}
