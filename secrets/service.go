package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/identity"
)

// Put stores value as a new version of name. It needs write on secrets/<name>, asked before the
// value is sealed and again just before it is stored.
func (s *Service) Put(ctx context.Context, p identity.Principal, name string, value []byte) (Version, error) {
	if err := CheckName(name); err != nil {
		return Version{}, err
	}
	switch {
	case len(value) == 0:
		return Version{}, fmt.Errorf("%w: the value of %s is empty", ErrInvalid, Resource(name))
	case len(value) > MaxValueSize:
		return Version{}, fmt.Errorf("%w: the value of %s is %d bytes; the limit is %d (64 KiB); keep larger material in the weights vault", ErrInvalid, Resource(name), len(value), MaxValueSize)
	}
	if _, err := s.authorize(ctx, p, ActionWrite, name); err != nil {
		return Version{}, err
	}
	// Versions are numbered by the store's newest; two writers racing for one number: one
	// commits, the other seals again under the next.
	for range 8 {
		list, err := s.Store.SecretVersions(ctx, name)
		if err != nil {
			return Version{}, unavailable("list versions", err)
		}
		next := uint64(1)
		if len(list) > 0 {
			next = list[len(list)-1].Meta.Version + 1
		}
		keyID, wrapped, ct, err := seal(ctx, s.Keys, name, next, value)
		if err != nil {
			return Version{}, err
		}
		d, err := s.authorize(ctx, p, ActionWrite, name)
		if err != nil {
			return Version{}, err
		}
		v := Sealed{Meta: Version{Name: name, Version: next, State: StateActive, Size: len(value), KeyID: keyID, CreatedBy: p.Subject, GrantID: d.GrantID, CreatedAt: s.now()},
			WrappedDEK: wrapped, Ciphertext: ct}
		details := via(d)
		details["version"], details["size"], details["key_id"] = next, len(value), keyID
		ev := audit.Event{Code: "secret.put", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
			Severity: audit.SeverityLow, Time: v.Meta.CreatedAt, Actor: p.Subject, Resources: []string{Resource(name)},
			Message: fmt.Sprintf("%s stored %s version %d (%d bytes)", p.Subject, Resource(name), next, len(value)), Details: details}
		err = s.Store.InsertSecretVersion(ctx, v, ev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Version{}, unavailable("store the version", err)
		}
		return v.Meta, nil
	}
	return Version{}, fmt.Errorf("%w: %s is being written by others at the same time; try again", ErrConflict, Resource(name))
}

// GetOptions are the options of a read.
type GetOptions struct {
	// Version to read; 0 is the newest active one.
	Version uint64
	// LeaseTTL, when not zero, asks for a lease of that length (at most MaxLeaseTTL, and never
	// past the end of the grant that allows the read).
	LeaseTTL time.Duration
}

// Get reads a version of name. It needs read on secrets/<name>; it is recorded, and the
// decision is asked again after that, so that a grant revoked meanwhile releases nothing.
func (s *Service) Get(ctx context.Context, p identity.Principal, name string, o GetOptions) (Secret, error) {
	if err := CheckName(name); err != nil {
		return Secret{}, err
	}
	if err := s.checkTTL(o.LeaseTTL); err != nil {
		return Secret{}, err
	}
	d, err := s.authorize(ctx, p, ActionRead, name)
	if err != nil {
		return Secret{}, err
	}
	v, err := s.find(ctx, name, o.Version)
	if err != nil {
		return Secret{}, err
	}
	plain, err := open(ctx, s.Keys, v)
	if err != nil {
		return Secret{}, err
	}
	out := Secret{Version: v.Meta, Value: plain}
	ev := s.readEvent(p, v.Meta, d, "read")
	if o.LeaseTTL > 0 {
		l := Lease{ID: newLeaseID(), Name: name, Version: v.Meta.Version, Subject: p.Subject, GrantID: d.GrantID, TTL: o.LeaseTTL, CreatedAt: s.now()}
		l.ExpiresAt = leaseEnd(l.CreatedAt, o.LeaseTTL, d)
		ev.Details["lease_id"], ev.Details["lease_expires_at"] = l.ID, l.ExpiresAt
		ev.Message += fmt.Sprintf(" with lease %s until %s", l.ID, l.ExpiresAt.UTC().Format(time.RFC3339))
		err = s.Store.InsertSecretLease(ctx, l, ev)
		out.Lease = &l
	} else {
		err = s.Record(ctx, ev)
	}
	if err != nil {
		out.Wipe()
		return Secret{}, unavailable("record the read", err)
	}
	return s.release(ctx, p, out)
}

// release asks the decision engine once more before the value leaves: a grant revoked after
// the first decision releases nothing (invariant 2).
func (s *Service) release(ctx context.Context, p identity.Principal, out Secret) (Secret, error) {
	if _, err := s.authorize(ctx, p, ActionRead, out.Name); err != nil {
		out.Wipe()
		return Secret{}, err
	}
	return out, nil
}

func (s *Service) readEvent(p identity.Principal, v Version, d authz.Decision, what string) audit.Event {
	details := via(d)
	details["version"], details["size"] = v.Version, v.Size
	return audit.Event{Code: "secret." + what, Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: audit.SeverityLow, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(v.Name)},
		Message: fmt.Sprintf("%s read %s version %d", p.Subject, Resource(v.Name), v.Version), Details: details}
}

// find returns the given version, or the newest active one (version 0).
func (s *Service) find(ctx context.Context, name string, version uint64) (Sealed, error) {
	if version != 0 {
		v, err := s.Store.SecretVersion(ctx, name, version)
		if err != nil {
			return v, unavailable("read the version", err)
		}
		if v.Meta.State != StateActive {
			return v, fmt.Errorf("%w: %s version %d was deleted", ErrNotFound, Resource(name), version)
		}
		return v, nil
	}
	list, err := s.Store.SecretVersions(ctx, name)
	if err != nil {
		return Sealed{}, unavailable("list versions", err)
	}
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].Meta.State == StateActive {
			return list[i], nil
		}
	}
	return Sealed{}, fmt.Errorf("%w: %s has no stored version (put one with rampart secret put %s)", ErrNotFound, Resource(name), name)
}

// List returns the newest active version of every secret the caller may read or write, or of
// every secret for admins and auditors (seeAll). Values are not read.
func (s *Service) List(ctx context.Context, p identity.Principal, seeAll bool) ([]Version, error) {
	if !seeAll {
		if err := s.Decide.Health(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	all, err := s.Store.SecretVersions(ctx, "")
	if err != nil {
		return nil, unavailable("list secrets", err)
	}
	newest := map[string]Version{}
	var order []string
	for _, sv := range all {
		v := sv.Meta
		if v.State != StateActive {
			continue
		}
		if _, seen := newest[v.Name]; !seen {
			order = append(order, v.Name)
		}
		newest[v.Name] = v
	}
	out := []Version{}
	for _, n := range order {
		if seeAll || s.may(p, ActionRead, n) || s.may(p, ActionWrite, n) {
			out = append(out, newest[n])
		}
	}
	return out, nil
}

// Versions lists every version of name, deleted ones included; it needs read or write.
func (s *Service) Versions(ctx context.Context, p identity.Principal, name string, seeAll bool) ([]Version, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if !seeAll && !s.may(p, ActionWrite, name) {
		if _, err := s.authorize(ctx, p, ActionRead, name); err != nil {
			return nil, err
		}
	}
	list, err := s.Store.SecretVersions(ctx, name)
	if err != nil {
		return nil, unavailable("list versions", err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%w: %s has never been stored", ErrNotFound, Resource(name))
	}
	out := make([]Version, len(list))
	for i, v := range list {
		out[i] = v.Meta
	}
	return out, nil
}

// Delete removes every version of name (their ciphertexts and wrapped keys are dropped, so
// they can never be read again). It needs write.
func (s *Service) Delete(ctx context.Context, p identity.Principal, name string) (int, error) {
	if err := CheckName(name); err != nil {
		return 0, err
	}
	d, err := s.authorize(ctx, p, ActionWrite, name)
	if err != nil {
		return 0, err
	}
	details := via(d)
	ev := audit.Event{Code: "secret.delete", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityDelete, ActivityName: "Delete",
		Severity: audit.SeverityMedium, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(name)},
		Message: fmt.Sprintf("%s deleted every version of %s", p.Subject, Resource(name)), Details: details}
	n, err := s.Store.DeleteSecret(ctx, name, ev.Time, ev)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return 0, fmt.Errorf("%w: %s has no stored version to delete", ErrNotFound, Resource(name))
		}
		return 0, unavailable("delete", err)
	}
	return n, nil
}

func (s *Service) may(p identity.Principal, action, name string) bool {
	return s.Decide.Check(authz.Query{Subject: p.Subject, Action: action, Resource: Resource(name)}).Allowed
}
