package server

import (
	"context"
	"fmt"
	"sync"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/identity"
)

// identityHooks are told that someone's identity changed (a person disabled), so that what
// enforces it elsewhere reacts at once rather than at its next interval: the egress gateway
// revalidates its open tunnels, the RBAC reconciler reconciles.
type identityHooks struct {
	mu    sync.Mutex
	hooks []func()
}

func (h *identityHooks) add(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, f)
}

func (h *identityHooks) run() {
	h.mu.Lock()
	hooks := append([]func(){}, h.hooks...)
	h.mu.Unlock()
	for _, f := range hooks {
		f()
	}
}

// DisableUser disables a person and ends everything of theirs at once (invariant 8):
//
//  1. their sessions (with refresh tokens) and API tokens are revoked for good, in one
//     transaction with the user.disable entry (identity.Sessions.Disable);
//  2. every decision about them denies, on this replica now and on the others at their next
//     index sync (authz.Index.SetDisabled, and the store's list of disabled people);
//  3. their active grants are revoked, pending requests by or for them cancelled and their pending
//     approvals withdrawn, in one transaction with the ledger entries (access.RevokeSubject);
//     the grant listeners remove their Kubernetes bindings and the egress gateway closes their
//     tunnels, within the existing bounds (2 s).
//
// If step 3 fails the person stays disabled and denied; the error says so, and running it again
// (or the identity sweep) finishes it.
func (in *Instance) DisableUser(ctx context.Context, subject, actor, reason string) (identity.Disabled, access.SubjectRevoked, error) {
	d, err := in.Sessions.Disable(ctx, subject, actor, reason)
	if err != nil {
		return d, access.SubjectRevoked{}, err
	}
	in.Tokens.ForgetSubject(subject)
	in.Index.SetDisabled(subject, true)
	defer in.hooks.run()
	if reason == "" {
		reason = "disabled by " + actor
	}
	rev, err := in.Access.RevokeSubject(ctx, subject, actor, fmt.Sprintf("%s was disabled: %s", subject, reason))
	if err != nil {
		return d, rev, fmt.Errorf("%s is disabled and denied everything, but revoking their grants failed (run the disable again, or the identity sweep will): %w", subject, err)
	}
	return d, rev, nil
}

// EnableUser lets a disabled person sign in again; nothing of theirs is revived.
func (in *Instance) EnableUser(ctx context.Context, subject, actor string) error {
	if err := in.Sessions.Enable(ctx, subject, actor); err != nil {
		return err
	}
	in.Tokens.ForgetSubject(subject)
	in.Index.SetDisabled(subject, false)
	return nil
}

// finishDisables revokes what disabled people still hold in the workflow: a disable whose
// revocation failed, or one made by a server before disabling revoked grants. The identity
// sweep runs it.
func (in *Instance) finishDisables(ctx context.Context) error {
	subjects, err := in.Store.DisabledSubjects(ctx)
	if err != nil {
		return err
	}
	for _, s := range subjects {
		gs, err := in.Store.ListGrants(ctx, access.GrantFilter{Subject: s, States: []access.GrantState{access.GrantActive}, Limit: 1})
		if err != nil {
			return err
		}
		if len(gs) == 0 {
			continue
		}
		r, err := in.Access.RevokeSubject(ctx, s, "rampart", s+" is disabled")
		if err != nil {
			return err
		}
		in.log.Warn("revoked what a disabled person still held", "subject", s, "revoked", r.String())
	}
	return nil
}
