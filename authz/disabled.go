package authz

import (
	"context"
	"fmt"
)

// DisabledSource lists the people an administrator (or the identity provider, through SCIM)
// disabled. When an Index's GrantSource also implements it, the index loads the list with the
// grants and again at every Sync, so a person disabled on another replica is denied here within
// the sync interval; until a sync has read it, a Check for anyone fails closed like any other.
type DisabledSource interface {
	DisabledSubjects(ctx context.Context) ([]string, error)
}

// disabledSet is an immutable set of subjects; a new one replaces it.
type disabledSet map[string]struct{}

// SetDisabled marks subject disabled (or not) at once, on this replica, without waiting for the
// next sync: call it after the change committed. A Sync that read the store before the call
// does not undo it.
func (ix *Index) SetDisabled(subject string, disabled bool) {
	ix.dmu.Lock()
	defer ix.dmu.Unlock()
	old := ix.disabledNow()
	next := make(disabledSet, len(old)+1)
	for s := range old {
		next[s] = struct{}{}
	}
	if disabled {
		next[subject] = struct{}{}
	} else {
		delete(next, subject)
	}
	ix.disabled.Store(&next)
	ix.dgen++
}

// Disabled reports whether subject is disabled: every decision about them denies.
func (ix *Index) Disabled(subject string) bool {
	_, ok := ix.disabledNow()[subject]
	return ok
}

func (ix *Index) disabledNow() disabledSet {
	if p := ix.disabled.Load(); p != nil {
		return *p
	}
	return nil
}

// syncDisabled reads the disabled people from the store (if it keeps them) and replaces the
// set, unless SetDisabled ran meanwhile (the read may predate that change; the next sync reads
// it again).
func (ix *Index) syncDisabled(ctx context.Context) error {
	ds, ok := ix.src.(DisabledSource)
	if !ok {
		return nil
	}
	ix.dmu.Lock()
	gen := ix.dgen
	ix.dmu.Unlock()
	list, err := ds.DisabledSubjects(ctx)
	if err != nil {
		return fmt.Errorf("read disabled people: %w", err)
	}
	next := make(disabledSet, len(list))
	for _, s := range list {
		next[s] = struct{}{}
	}
	ix.dmu.Lock()
	defer ix.dmu.Unlock()
	if ix.dgen == gen {
		ix.disabled.Store(&next)
	}
	return nil
}
