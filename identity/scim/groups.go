package scim

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// ListGroups is GET /scim/v2/Groups[?filter=…&excludedAttributes=members…].
func (s *Service) ListGroups(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	l, err := s.parseList(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	groups, err := s.d.Store.SCIMGroups(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	names, err := s.userNames(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all := make([]map[string]any, 0, len(groups))
	for _, g := range groups {
		all = append(all, s.renderGroup(g, names))
	}
	respondList(w, all, l)
}

func (s *Service) userNames(ctx context.Context) (map[string]string, error) {
	users, err := s.d.Store.SCIMUsers(ctx)
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(users))
	for _, u := range users {
		names[u.ID] = u.UserName
	}
	return names, nil
}

// GetGroup is GET /scim/v2/Groups/{id}.
func (s *Service) GetGroup(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	g, err := s.d.Store.SCIMGroup(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	names, err := s.userNames(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l, _ := s.parseList(r)
	writeSCIM(w, http.StatusOK, project(s.renderGroup(g, names), l.attrs, l.excluding))
}

// CreateGroup is POST /scim/v2/Groups.
func (s *Service) CreateGroup(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	_, obj, err := readObject(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	g, err := groupFrom(obj)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	now := s.d.Now()
	var names map[string]string
	err = s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		var ignored []string
		if g.Members, names, ignored, err = knownMembers(ctx, tx, g.Members); err != nil {
			return err
		}
		g.ID, g.Created, g.Modified, g.Version = newID(), now, now, 1
		if _, err := tx.Append(ctx, event(now, "scim.group.create", fmt.Sprintf("the identity provider provisioned group %q with %d member(s)", g.DisplayName, len(g.Members)),
			map[string]any{"scim_id": g.ID, "group": g.DisplayName, "external_id": g.ExternalID, "added": memberList(g.Members, names), "ignored_members": nonNil(ignored)})); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.PutSCIMGroup(ctx, g)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(ctx)
	w.Header().Set("Location", s.location("Groups", g.ID))
	writeSCIM(w, http.StatusCreated, s.renderGroup(g, names))
}

// ReplaceGroup is PUT /scim/v2/Groups/{id}.
func (s *Service) ReplaceGroup(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	_, obj, err := readObject(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.updateGroup(w, r, "scim.group.replace", nil, func(Group, map[string]string) (map[string]any, error) { return obj, nil })
}

// PatchGroup is PATCH /scim/v2/Groups/{id}: members added and removed, in the shapes Entra ID
// and Okta send.
func (s *Service) PatchGroup(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	raw, _, err := readObject(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ops, err := ParsePatch(raw)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.updateGroup(w, r, "scim.group.update", ops, func(cur Group, names map[string]string) (map[string]any, error) {
		res := s.renderGroup(cur, names)
		delete(res, "meta")
		if err := applyPatch(res, ops); err != nil {
			return nil, err
		}
		return res, nil
	})
}

func (s *Service) updateGroup(w http.ResponseWriter, r *http.Request, code string, ops []PatchOp, next func(Group, map[string]string) (map[string]any, error)) {
	ctx := r.Context()
	now := s.d.Now()
	var out Group
	var names map[string]string
	err := s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		cur, err := tx.SCIMGroup(ctx, r.PathValue("id"))
		if err != nil {
			return err
		}
		_, curNames, _, err := knownMembers(ctx, tx, cur.Members)
		if err != nil {
			return err
		}
		obj, err := next(cur, curNames)
		if err != nil {
			return err
		}
		g, err := groupFrom(obj)
		if err != nil {
			return err
		}
		var ignored []string
		if g.Members, names, ignored, err = knownMembers(ctx, tx, g.Members); err != nil {
			return err
		}
		g.ID, g.Created, g.Modified, g.Version = cur.ID, cur.Created, now, cur.Version+1
		added, removed := diff(cur.Members, g.Members)
		for id, n := range curNames {
			if _, ok := names[id]; !ok {
				names[id] = n
			}
		}
		details := map[string]any{"scim_id": g.ID, "group": g.DisplayName, "external_id": g.ExternalID, "added": memberList(added, names),
			"removed": memberList(removed, names), "ignored_members": nonNil(ignored), "deprovision": len(removed) > 0}
		if cur.DisplayName != g.DisplayName {
			details["renamed_from"] = cur.DisplayName
		}
		if ops != nil {
			var summary []string
			for _, op := range ops {
				summary = append(summary, strings.TrimSpace(op.Op+" "+op.Path))
			}
			details["operations"] = summary
		}
		if _, err := tx.Append(ctx, event(now, code, fmt.Sprintf("the identity provider updated group %q: %d added, %d removed", g.DisplayName, len(added), len(removed)), details)); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		out = g
		return tx.PutSCIMGroup(ctx, g)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(ctx)
	writeSCIM(w, http.StatusOK, s.renderGroup(out, names))
}

// DeleteGroup is DELETE /scim/v2/Groups/{id}: its members lose what it mapped to at once.
func (s *Service) DeleteGroup(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	ctx := r.Context()
	now := s.d.Now()
	err := s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		g, err := tx.SCIMGroup(ctx, r.PathValue("id"))
		if err != nil {
			return err
		}
		_, names, _, err := knownMembers(ctx, tx, g.Members)
		if err != nil {
			return err
		}
		if _, err := tx.Append(ctx, event(now, "scim.group.delete", fmt.Sprintf("the identity provider deleted group %q", g.DisplayName),
			map[string]any{"scim_id": g.ID, "group": g.DisplayName, "external_id": g.ExternalID, "removed": memberList(g.Members, names), "deprovision": true})); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.DeleteSCIMGroup(ctx, g.ID)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.changed(ctx)
	w.WriteHeader(http.StatusNoContent)
}

// knownMembers keeps the ids that are provisioned users (a member unknown here grants nothing;
// it is noted in the ledger entry rather than failing the whole group) and names them.
func knownMembers(ctx context.Context, tx Tx, ids []string) (known []string, names map[string]string, ignored []string, err error) {
	names, err = tx.SCIMUserNames(ctx, ids)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, id := range ids {
		if _, ok := names[id]; ok {
			known = append(known, id)
		} else {
			ignored = append(ignored, id)
		}
	}
	return known, names, ignored, nil
}

func diff(before, after []string) (added, removed []string) {
	b, a := map[string]bool{}, map[string]bool{}
	for _, id := range before {
		b[id] = true
	}
	for _, id := range after {
		a[id] = true
		if !b[id] {
			added = append(added, id)
		}
	}
	for _, id := range before {
		if !a[id] {
			removed = append(removed, id)
		}
	}
	return added, removed
}

// memberList names members for a ledger entry: at most 100, sorted, then how many more.
func memberList(ids []string, names map[string]string) []string {
	out := []string{}
	for _, id := range ids {
		if n := names[id]; n != "" {
			out = append(out, n)
		} else {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	if len(out) > 100 {
		out = append(out[:100], fmt.Sprintf("… and %d more", len(out)-100))
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
