package scim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ListUsers is GET /scim/v2/Users[?filter=…&startIndex=…&count=…&attributes=…].
func (s *Service) ListUsers(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	l, err := s.parseList(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	users, err := s.d.Store.SCIMUsers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	all := make([]map[string]any, 0, len(users))
	for _, u := range users {
		all = append(all, s.renderUser(u))
	}
	respondList(w, all, l)
}

// GetUser is GET /scim/v2/Users/{id}.
func (s *Service) GetUser(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	u, err := s.d.Store.SCIMUser(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	l, _ := s.parseList(r)
	writeSCIM(w, http.StatusOK, project(s.renderUser(u), l.attrs, l.excluding))
}

// CreateUser is POST /scim/v2/Users.
func (s *Service) CreateUser(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	_, obj, err := readObject(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := userFrom(obj)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	now := s.d.Now()
	err = s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		if _, err := tx.SCIMUserByName(ctx, u.UserName); err == nil {
			return &Error{Status: http.StatusConflict, Type: "uniqueness", Detail: fmt.Sprintf("userName %q is already provisioned; find it with filter=userName eq %q", u.UserName, u.UserName)}
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		u.ID, u.Created, u.Modified, u.Version = newID(), now, now, 1
		if _, err := tx.Append(ctx, event(now, "scim.user.create", fmt.Sprintf("the identity provider provisioned %s (active: %v)", u.UserName, u.Active),
			map[string]any{"scim_id": u.ID, "user": u.UserName, "external_id": u.ExternalID, "active": u.Active, "deprovision": !u.Active})); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		return tx.PutSCIMUser(ctx, u)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.afterUser(ctx, nil, &u); err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Location", s.location("Users", u.ID))
	writeSCIM(w, http.StatusCreated, s.renderUser(u))
}

// ReplaceUser is PUT /scim/v2/Users/{id}.
func (s *Service) ReplaceUser(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	_, obj, err := readObject(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.updateUser(w, r, "scim.user.replace", nil, func(User) (map[string]any, error) { return obj, nil })
}

// PatchUser is PATCH /scim/v2/Users/{id}: deactivation (active false) disables the person.
func (s *Service) PatchUser(w http.ResponseWriter, r *http.Request) {
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
	s.updateUser(w, r, "scim.user.update", ops, func(cur User) (map[string]any, error) {
		res := s.renderUser(cur)
		delete(res, "meta")
		if err := applyPatch(res, ops); err != nil {
			return nil, err
		}
		return res, nil
	})
}

// updateUser replaces a user with what next makes of it, in one transaction with its entry,
// then applies the change of active to the person.
func (s *Service) updateUser(w http.ResponseWriter, r *http.Request, code string, ops []PatchOp, next func(User) (map[string]any, error)) {
	ctx := r.Context()
	now := s.d.Now()
	var before, after User
	err := s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		cur, err := tx.SCIMUser(ctx, r.PathValue("id"))
		if err != nil {
			return err
		}
		obj, err := next(cur)
		if err != nil {
			return err
		}
		u, err := userFrom(obj)
		if err != nil {
			return err
		}
		if u.UserName != cur.UserName {
			return &Error{Status: http.StatusBadRequest, Type: "mutability", Detail: fmt.Sprintf(
				"userName is immutable in Rampart (grants and the ledger name people by it): %s cannot become %s; deprovision the account and provision the new name", cur.UserName, u.UserName)}
		}
		u.ID, u.Created, u.Modified, u.Version = cur.ID, cur.Created, now, cur.Version+1
		details := map[string]any{"scim_id": u.ID, "user": u.UserName, "active": u.Active, "was_active": cur.Active, "deprovision": cur.Active && !u.Active}
		if ops != nil {
			var summary []string
			for _, op := range ops {
				summary = append(summary, strings.TrimSpace(op.Op+" "+op.Path))
			}
			details["operations"] = summary
		}
		if _, err := tx.Append(ctx, event(now, code, fmt.Sprintf("the identity provider updated %s (active: %v → %v)", u.UserName, cur.Active, u.Active), details)); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		before, after = cur, u
		return tx.PutSCIMUser(ctx, u)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.afterUser(ctx, &before, &after); err != nil {
		s.fail(w, r, err)
		return
	}
	writeSCIM(w, http.StatusOK, s.renderUser(after))
}

// DeleteUser is DELETE /scim/v2/Users/{id}: the person is disabled and forgotten by SCIM.
func (s *Service) DeleteUser(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	ctx := r.Context()
	now := s.d.Now()
	var gone User
	err := s.d.Store.UpdateSCIM(ctx, func(tx Tx) error {
		u, err := tx.SCIMUser(ctx, r.PathValue("id"))
		if err != nil {
			return err
		}
		if _, err := tx.Append(ctx, event(now, "scim.user.delete", "the identity provider deleted "+u.UserName,
			map[string]any{"scim_id": u.ID, "user": u.UserName, "deprovision": true})); err != nil {
			return fmt.Errorf("append to ledger: %w", err)
		}
		gone = u
		return tx.DeleteSCIMUser(ctx, u.ID)
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	gone.Active = false
	if err := s.afterUser(ctx, nil, &gone); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// afterUser applies a committed change to the person: inactive (or deleted) disables them,
// every time, so that a directory retrying after a failure finishes the job; a change back to
// active enables them (only then: a person an administrator disabled stays disabled). The
// directory's groups are applied again either way.
func (s *Service) afterUser(ctx context.Context, before, after *User) error {
	defer s.changed(ctx)
	switch {
	case !after.Active:
		if s.d.Disable == nil {
			return nil
		}
		if err := s.d.Disable(ctx, after.UserName, "deprovisioned by the identity provider (SCIM)"); err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Detail: fmt.Sprintf("the change is recorded, but disabling %s failed: %v; retry the request", after.UserName, err)}
		}
	case before != nil && !before.Active && s.d.Enable != nil:
		if err := s.d.Enable(ctx, after.UserName); err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Detail: fmt.Sprintf("the change is recorded, but enabling %s failed: %v; retry the request", after.UserName, err)}
		}
	}
	return nil
}

func (s *Service) changed(ctx context.Context) {
	if s.d.Changed != nil {
		s.d.Changed(context.WithoutCancel(ctx))
	}
}
