package access

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Meta keys of what LoadPolicy records.
const (
	metaPolicyDigest = "policy_digest"
	// metaRoleDefinitions holds the definitions of the roles of the policy last loaded (JSON,
	// by role name), so that the next load, in this process or after a restart, knows which
	// roles it changes, and what grants approved before pinning existed were approved for.
	metaRoleDefinitions = "role_definitions"
)

// LoadPolicy makes pol the policy in force. If its digest differs from the last one recorded, a
// policy.load entry is appended first, naming the roles whose definition changed (and those
// added and removed) against the definitions recorded at the previous load; if that fails, the
// old policy stays in force.
//
// It also pins every active grant that has no pinned role definition yet (granted by a version
// of Rampart from before pinning) to the definition it was approved for: the definition
// recorded at the previous load. When none was recorded (the first load after an upgrade) and
// the policy is the one last loaded, that is the policy's own; when the policy changed as well,
// what such a grant was approved for is unknown, and it is pinned to nothing: it gives no
// access until renewed (fail closed, invariant 9).
func (s *Service) LoadPolicy(ctx context.Context, pol *policy.Policy, actor, origin string) error {
	defs := map[string]*policy.RoleDefinition{}
	digests := map[string]string{}
	for _, r := range pol.Roles() {
		defs[r.Name] = pol.RoleDefinition(r.Name)
		digests[r.Name] = pol.RoleDigest(r.Name)
	}
	defsJSON, err := json.Marshal(defs)
	if err != nil {
		return fmt.Errorf("encode role definitions: %w", err)
	}
	err = s.txn(ctx, "recording the policy load", func(t *txn) error {
		last, err := t.Meta(ctx, metaPolicyDigest)
		if err != nil {
			return err
		}
		prevText, err := t.Meta(ctx, metaRoleDefinitions)
		if err != nil {
			return err
		}
		var prev map[string]*policy.RoleDefinition
		if prevText != "" {
			if err := json.Unmarshal([]byte(prevText), &prev); err != nil {
				return fmt.Errorf("the recorded role definitions (meta %s) do not decode: %w", metaRoleDefinitions, err)
			}
		}
		unpinned, err := t.ListGrants(ctx, GrantFilter{States: []GrantState{GrantActive}, Unpinned: true})
		if err != nil {
			return err
		}
		if last == pol.Digest && prev != nil && len(unpinned) == 0 {
			return nil
		}
		prevDigests := map[string]string{}
		for name, d := range prev {
			prevDigests[name] = d.Digest()
		}
		pinTo := func(role string) *policy.RoleDefinition {
			switch {
			case prev != nil:
				return prev[role] // nil (nothing) for a role the previous policy did not have
			case last == pol.Digest:
				return defs[role]
			}
			return nil
		}
		pinned, toNothing := []string{}, []string{}
		if last != pol.Digest {
			details := map[string]any{"digest": pol.Digest, "previous_digest": last, "origin": origin,
				"roles": len(pol.Roles()), "resources": len(pol.Resources()), "approval_policies": len(pol.ApprovalPolicies())}
			msg := fmt.Sprintf("policy %s loaded from %s", pol.Digest[:12], origin)
			if prev != nil {
				changed, added, removed := policy.DefinitionChanges(prevDigests, digests)
				details["roles_changed"], details["roles_added"], details["roles_removed"] = nonNil(changed), nonNil(added), nonNil(removed)
				changes := map[string]any{}
				for _, name := range append(append([]string{}, changed...), added...) {
					changes[name] = digests[name]
				}
				details["role_digests"] = changes
				if len(changed) > 0 {
					msg += "; roles whose definition changed: " + strings.Join(changed, ", ") +
						" (existing grants keep what they were approved for, narrowed to the new definition)"
				}
			} else {
				details["role_digests"] = digests
			}
			if err := t.record(ctx, audit.Event{Code: "policy.load", Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate,
				ActivityName: "Update", Severity: audit.SeverityLow, Actor: actor, Message: msg, Details: details}); err != nil {
				return err
			}
		}
		if len(unpinned) > 0 {
			// One entry for every grant pinned here; its sequence number is their new version.
			for _, g := range unpinned {
				if def := pinTo(g.Role); def != nil {
					pinned = append(pinned, g.ID)
				} else {
					toNothing = append(toNothing, g.ID)
				}
			}
			if err := t.record(ctx, audit.Event{Code: "grant.pin", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityUpdate,
				ActivityName: "Update", Severity: audit.SeverityLow, Actor: actor,
				Message: fmt.Sprintf("%d grant(s) approved before role definitions were pinned now keep what they were approved for; %d whose approval is unknown give nothing until renewed",
					len(pinned), len(toNothing)),
				Details: map[string]any{"pinned": pinned, "pinned_to_nothing": toNothing, "policy_digest": pol.Digest}}); err != nil {
				return err
			}
			for _, g := range unpinned {
				g.pin(pinTo(g.Role))
				if err := t.saveGrant(ctx, g, false); err != nil {
					return err
				}
			}
		}
		if err := t.SetMeta(ctx, metaRoleDefinitions, string(defsJSON)); err != nil {
			return err
		}
		return t.SetMeta(ctx, metaPolicyDigest, pol.Digest)
	})
	if err != nil {
		return err
	}
	s.pol.Store(pol)
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
