package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
)

// Change requests (package change): one row per change, its reviews beside it. Writes go through
// the same serialized write transaction as the ledger, so a change and its ledger entry commit
// together (invariant 4).

const changeCols = `id, repository, ref, base, source, tree, paths, commits, requester, state, created_at, decided_at, request_seq, land_seq, landed_as, version`

func scanChange(sc interface{ Scan(...any) error }) (change.Change, error) {
	var c change.Change
	var paths, commits, state string
	var created, decided int64
	err := sc.Scan(&c.ID, &c.Repository, &c.Ref, &c.Base, &c.Source, &c.Tree, &paths, &commits, &c.Requester, &state, &created, &decided, &c.RequestSeq, &c.LandSeq, &c.LandedAs, &c.Version)
	if err != nil {
		return c, err
	}
	c.State, c.CreatedAt, c.DecidedAt = change.State(state), fromNanos(created), fromNanos(decided)
	if err := json.Unmarshal([]byte(paths), &c.Paths); err != nil {
		return c, fmt.Errorf("change %s: paths: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(commits), &c.Commits); err != nil {
		return c, fmt.Errorf("change %s: commits: %w", c.ID, err)
	}
	return c, nil
}

// changeTx implements change.Tx.
type changeTx struct{ reader }

// UpdateChanges implements change.Store.
func (s *DB) UpdateChanges(ctx context.Context, fn func(change.Tx) error) error {
	return s.write(ctx, func(tx *sql.Tx) error { return fn(&changeTx{reader{s: s, q: tx}}) })
}

// Change implements change.Reader.
func (s *DB) Change(ctx context.Context, id string) (change.Change, error) {
	return s.r().Change(ctx, id)
}

// ChangeReviews implements change.Reader.
func (s *DB) ChangeReviews(ctx context.Context, id string) ([]change.Review, error) {
	return s.r().ChangeReviews(ctx, id)
}

// ListChanges implements change.Reader.
func (s *DB) ListChanges(ctx context.Context, f change.Filter) ([]change.Change, error) {
	return s.r().ListChanges(ctx, f)
}

func (r reader) Change(ctx context.Context, id string) (change.Change, error) {
	c, err := scanChange(r.q.QueryRowContext(ctx, r.s.q(`SELECT `+changeCols+` FROM changes WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return change.Change{}, change.ErrNotFound
	}
	return c, err
}

func (r reader) ChangeReviews(ctx context.Context, id string) ([]change.Review, error) {
	return queryAll(ctx, r.q, r.s.q(`SELECT change_id, approver, decision, comment, at, mfa_at, session_id, credential_id, seq FROM change_reviews WHERE change_id = ? ORDER BY seq`), []any{id},
		func(sc interface{ Scan(...any) error }) (change.Review, error) {
			var rv change.Review
			var dec string
			var at, mfa int64
			err := sc.Scan(&rv.ChangeID, &rv.Approver, &dec, &rv.Comment, &at, &mfa, &rv.SessionID, &rv.CredentialID, &rv.Seq)
			rv.Decision, rv.At, rv.MFAAt = change.Decision(dec), fromNanos(at), fromNanos(mfa)
			return rv, err
		})
}

func (r reader) ListChanges(ctx context.Context, f change.Filter) ([]change.Change, error) {
	var w where
	for col, v := range map[string]string{"repository": f.Repository, "ref": f.Ref, "base": f.Base, "tree": f.Tree, "requester": f.Requester, "landed_as": f.LandedAs} {
		if v != "" {
			w.add(col+" = ?", v)
		}
	}
	var states []string
	for _, st := range f.States {
		states = append(states, string(st))
	}
	w.in("state", states)
	query := `SELECT ` + changeCols + ` FROM changes` + w.String() + ` ORDER BY created_at DESC, id DESC`
	if f.Limit > 0 {
		query += " LIMIT " + strconv.Itoa(f.Limit)
	}
	return queryAll(ctx, r.q, r.s.q(query), w.args, scanChange)
}

// Append implements audit.Appender.
func (t *changeTx) Append(ctx context.Context, e audit.Event) (int64, error) {
	return appendEntry(ctx, t.s, t.q, e)
}

func (t *changeTx) InsertChange(ctx context.Context, c change.Change) error {
	paths, err := json.Marshal(c.Paths)
	if err != nil {
		return err
	}
	commits, err := json.Marshal(c.Commits)
	if err != nil {
		return err
	}
	_, err = t.q.ExecContext(ctx, t.s.q(`INSERT INTO changes (`+changeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		c.ID, c.Repository, c.Ref, c.Base, c.Source, c.Tree, string(paths), string(commits), c.Requester, string(c.State), toNanos(c.CreatedAt), toNanos(c.DecidedAt),
		c.RequestSeq, c.LandSeq, c.LandedAs, c.Version)
	return err
}

func (t *changeTx) UpdateChange(ctx context.Context, c change.Change) error {
	res, err := t.q.ExecContext(ctx, t.s.q(`UPDATE changes SET state = ?, decided_at = ?, land_seq = ?, landed_as = ?, version = ? WHERE id = ?`),
		string(c.State), toNanos(c.DecidedAt), c.LandSeq, c.LandedAs, c.Version, c.ID)
	return mustAffect(res, err, "change", c.ID)
}

func (t *changeTx) PutChangeReview(ctx context.Context, rv change.Review) error {
	if _, err := t.q.ExecContext(ctx, t.s.q(`DELETE FROM change_reviews WHERE change_id = ? AND approver = ?`), rv.ChangeID, rv.Approver); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, t.s.q(`INSERT INTO change_reviews (change_id, approver, decision, comment, at, mfa_at, session_id, credential_id, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		rv.ChangeID, rv.Approver, string(rv.Decision), rv.Comment, toNanos(rv.At), toNanos(rv.MFAAt), rv.SessionID, rv.CredentialID, rv.Seq)
	return err
}

var _ change.Store = (*DB)(nil)
