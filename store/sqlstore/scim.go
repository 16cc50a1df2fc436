package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity/scim"
)

// scimTx implements scim.Tx.
type scimTx struct {
	s  *DB
	tx *sql.Tx
}

// UpdateSCIM implements scim.Store: a serialized write transaction.
func (s *DB) UpdateSCIM(ctx context.Context, fn func(scim.Tx) error) error {
	return s.write(ctx, func(tx *sql.Tx) error { return fn(&scimTx{s: s, tx: tx}) })
}

func (t *scimTx) Append(ctx context.Context, e audit.Event) (int64, error) {
	return appendEntry(ctx, t.s, t.tx, e)
}

const scimUserCols = `id, user_name, external_id, active, attrs, created_at, modified_at, version`

func scanSCIMUser(sc interface{ Scan(...any) error }) (scim.User, error) {
	var u scim.User
	var attrs string
	var created, modified int64
	if err := sc.Scan(&u.ID, &u.UserName, &u.ExternalID, &u.Active, &attrs, &created, &modified, &u.Version); err != nil {
		return u, err
	}
	u.Created, u.Modified = fromNanos(created), fromNanos(modified)
	return u, json.Unmarshal([]byte(attrs), &u.Attrs)
}

func attrsText(m map[string]any) (string, error) {
	if m == nil {
		m = map[string]any{}
	}
	b, err := json.Marshal(m)
	return string(b), err
}

func oneSCIMUser(ctx context.Context, s *DB, q querier, where string, arg any) (scim.User, error) {
	u, err := scanSCIMUser(q.QueryRowContext(ctx, s.q(`SELECT `+scimUserCols+` FROM scim_users WHERE `+where), arg))
	if errors.Is(err, sql.ErrNoRows) {
		return u, scim.ErrNotFound
	}
	return u, err
}

// SCIMUser implements scim.Store.
func (s *DB) SCIMUser(ctx context.Context, id string) (scim.User, error) {
	return oneSCIMUser(ctx, s, s.db, `id = ?`, id)
}

// SCIMUsers implements scim.Store.
func (s *DB) SCIMUsers(ctx context.Context) ([]scim.User, error) {
	return queryAll(ctx, s.db, `SELECT `+scimUserCols+` FROM scim_users ORDER BY user_name`, nil, scanSCIMUser)
}

func (t *scimTx) SCIMUser(ctx context.Context, id string) (scim.User, error) {
	return oneSCIMUser(ctx, t.s, t.tx, `id = ?`, id)
}

func (t *scimTx) SCIMUserByName(ctx context.Context, userName string) (scim.User, error) {
	return oneSCIMUser(ctx, t.s, t.tx, `user_name = ?`, userName)
}

func (t *scimTx) PutSCIMUser(ctx context.Context, u scim.User) error {
	attrs, err := attrsText(u.Attrs)
	if err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM scim_users WHERE id = ?`), u.ID); err != nil {
		return err
	}
	_, err = t.tx.ExecContext(ctx, t.s.q(`INSERT INTO scim_users (`+scimUserCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		u.ID, u.UserName, u.ExternalID, u.Active, attrs, toNanos(u.Created), toNanos(u.Modified), u.Version)
	return err
}

func (t *scimTx) DeleteSCIMUser(ctx context.Context, id string) error {
	if _, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM scim_members WHERE user_id = ?`), id); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM scim_users WHERE id = ?`), id)
	return err
}

func (t *scimTx) SCIMUserNames(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		var w where
		w.in("id", chunk)
		rows, err := t.tx.QueryContext(ctx, t.s.q(`SELECT id, user_name FROM scim_users`+w.String()), w.args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id, name string
			if err := rows.Scan(&id, &name); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = name
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

const scimGroupCols = `id, display_name, external_id, attrs, created_at, modified_at, version`

func scanSCIMGroup(sc interface{ Scan(...any) error }) (scim.Group, error) {
	var g scim.Group
	var attrs string
	var created, modified int64
	if err := sc.Scan(&g.ID, &g.DisplayName, &g.ExternalID, &attrs, &created, &modified, &g.Version); err != nil {
		return g, err
	}
	g.Created, g.Modified = fromNanos(created), fromNanos(modified)
	return g, json.Unmarshal([]byte(attrs), &g.Attrs)
}

// members fills the groups' members, in the order they were added.
func members(ctx context.Context, s *DB, q querier, groups []scim.Group) error {
	if len(groups) == 0 {
		return nil
	}
	byID := map[string]*scim.Group{}
	ids := make([]string, 0, len(groups))
	for i := range groups {
		byID[groups[i].ID] = &groups[i]
		ids = append(ids, groups[i].ID)
	}
	query, args := `SELECT group_id, user_id FROM scim_members`, []any(nil)
	if len(groups) == 1 {
		query, args = query+` WHERE group_id = ?`, []any{ids[0]}
	}
	rows, err := q.QueryContext(ctx, s.q(query+` ORDER BY group_id, position`), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var gid, uid string
		if err := rows.Scan(&gid, &uid); err != nil {
			return err
		}
		if g := byID[gid]; g != nil {
			g.Members = append(g.Members, uid)
		}
	}
	return rows.Err()
}

func oneSCIMGroup(ctx context.Context, s *DB, q querier, id string) (scim.Group, error) {
	g, err := scanSCIMGroup(q.QueryRowContext(ctx, s.q(`SELECT `+scimGroupCols+` FROM scim_groups WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return g, scim.ErrNotFound
	} else if err != nil {
		return g, err
	}
	gs := []scim.Group{g}
	err = members(ctx, s, q, gs)
	return gs[0], err
}

// SCIMGroup implements scim.Store.
func (s *DB) SCIMGroup(ctx context.Context, id string) (scim.Group, error) {
	return oneSCIMGroup(ctx, s, s.db, id)
}

// SCIMGroups implements scim.Store.
func (s *DB) SCIMGroups(ctx context.Context) ([]scim.Group, error) {
	gs, err := queryAll(ctx, s.db, `SELECT `+scimGroupCols+` FROM scim_groups ORDER BY display_name, id`, nil, scanSCIMGroup)
	if err != nil {
		return nil, err
	}
	return gs, members(ctx, s, s.db, gs)
}

func (t *scimTx) SCIMGroup(ctx context.Context, id string) (scim.Group, error) {
	return oneSCIMGroup(ctx, t.s, t.tx, id)
}

func (t *scimTx) PutSCIMGroup(ctx context.Context, g scim.Group) error {
	attrs, err := attrsText(g.Attrs)
	if err != nil {
		return err
	}
	if err := t.DeleteSCIMGroup(ctx, g.ID); err != nil {
		return err
	}
	if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO scim_groups (`+scimGroupCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		g.ID, g.DisplayName, g.ExternalID, attrs, toNanos(g.Created), toNanos(g.Modified), g.Version); err != nil {
		return err
	}
	for i, uid := range g.Members {
		if _, err := t.tx.ExecContext(ctx, t.s.q(`INSERT INTO scim_members (group_id, user_id, position) VALUES (?, ?, ?)`), g.ID, uid, i); err != nil {
			return err
		}
	}
	return nil
}

func (t *scimTx) DeleteSCIMGroup(ctx context.Context, id string) error {
	if _, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM scim_members WHERE group_id = ?`), id); err != nil {
		return err
	}
	_, err := t.tx.ExecContext(ctx, t.s.q(`DELETE FROM scim_groups WHERE id = ?`), id)
	return err
}

// SCIMDirectory returns, for every active provisioned person, the names their groups go by at
// the directory (display names and external ids), which policy Groups map with idp_groups. A
// person provisioned with no group is present with none: SCIM is authoritative for them.
func (s *DB) SCIMDirectory(ctx context.Context) (map[string][]string, error) {
	users, err := queryAll(ctx, s.db, s.q(`SELECT user_name FROM scim_users WHERE active = ?`), []any{true}, func(sc interface{ Scan(...any) error }) (string, error) {
		var v string
		return v, sc.Scan(&v)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(users))
	for _, u := range users {
		out[u] = []string{}
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT u.user_name, g.display_name, g.external_id FROM scim_members m
		JOIN scim_users u ON u.id = m.user_id JOIN scim_groups g ON g.id = m.group_id WHERE u.active = ?`), true)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var u, name, ext string
		if err := rows.Scan(&u, &name, &ext); err != nil {
			return nil, err
		}
		out[u] = append(out[u], name)
		if strings.TrimSpace(ext) != "" {
			out[u] = append(out[u], ext)
		}
	}
	return out, rows.Err()
}
