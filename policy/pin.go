package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"sync"
)

// Invariant 9, approval is for what was approved: a grant pins the definition of its role that
// its approvers saw, and is judged by it for as long as it lasts. This file holds that
// definition, its digest, and the rule that combines it with the role's current definition.

// RoleDefinition is what a grant of a role was approved for: the role's rules as written, the
// catalogue resources they reached then with the actions on each, and the role's kubernetes
// section.
//
// Globs are expanded when the grant is approved: a resource added to the catalogue later is not
// reached by an existing grant, even if the glob matches it, since nobody approved access to
// it. The action "*" stays "*": every action on a resource the grant reaches, including ones a
// later policy names (actions are not catalogued; a role that gives "*" gives everything).
type RoleDefinition struct {
	Rules []Rule `json:"rules"`
	// Reach maps each resource the rules reached to its actions, sorted ("*" = every action).
	Reach      map[string][]string `json:"reach"`
	Kubernetes *RoleKubernetes     `json:"kubernetes,omitempty"`
}

// Digest is the SHA-256 of the definition's JSON encoding (keys in a fixed order: struct fields
// as declared, map keys sorted), hex encoded. Two definitions that allow the same and bind the
// same have the same digest.
func (d *RoleDefinition) Digest() string {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err) // strings, slices and maps of strings always encode
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Allows reports whether the definition gives action on resource.
func (d *RoleDefinition) Allows(action, resource string) bool {
	for _, a := range d.Reach[resource] {
		if a == action || a == "*" {
			return true
		}
	}
	return false
}

// SameKubernetes reports whether the definition binds in Kubernetes exactly as k says: the same
// ClusterRole or rules, in the same namespaces.
func (d *RoleDefinition) SameKubernetes(k *RoleKubernetes) bool {
	a, _ := json.Marshal(d.Kubernetes)
	b, _ := json.Marshal(k)
	return string(a) == string(b)
}

// definitions caches each role's definition and digest, built on first use. It is shared by
// the copies WithDirectory makes: group membership does not change a role.
type definitions struct {
	mu      sync.Mutex
	defs    map[string]*RoleDefinition
	digests map[string]string
}

// RoleDefinition returns the current definition of a role, or nil for an unknown role. The
// value is shared: it must not be modified.
func (p *Policy) RoleDefinition(role string) *RoleDefinition {
	d, _ := p.definition(role)
	return d
}

// RoleDigest returns the digest of a role's current definition, or "" for an unknown role.
func (p *Policy) RoleDigest(role string) string {
	_, digest := p.definition(role)
	return digest
}

func (p *Policy) definition(role string) (*RoleDefinition, string) {
	r := p.roles[role]
	if r == nil {
		return nil, ""
	}
	c := p.defCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.defs[role]; ok {
		return d, c.digests[role]
	}
	d := &RoleDefinition{Rules: r.Rules, Reach: map[string][]string{}, Kubernetes: r.Kubernetes}
	for res, actions := range p.perms[role] {
		d.Reach[res] = slices.Clone(actions)
	}
	c.defs[role], c.digests[role] = d, d.Digest()
	return d, c.digests[role]
}

// RoleDigests returns the digest of every role's current definition, by role name.
func (p *Policy) RoleDigests() map[string]string {
	out := make(map[string]string, len(p.roles))
	for name := range p.roles {
		out[name] = p.RoleDigest(name)
	}
	return out
}

// AllowsPinned is the decision rule for a grant of role approved for def: the action on the
// resource must be given both by def and by the role's current definition. Narrowing the role
// therefore applies to existing grants at once; broadening it reaches only grants approved
// after it (invariant 9). A nil def, a grant from before definitions were pinned, is judged by
// the current definition alone; access.Service.LoadPolicy pins such grants.
func (p *Policy) AllowsPinned(def *RoleDefinition, role, action, resource string) bool {
	if !p.Allows(role, action, resource) {
		return false
	}
	return def == nil || def.Allows(action, resource)
}

// DefinitionChanges compares the role digests of two policies: the roles whose definition
// changed, the roles added and the roles removed, each sorted.
func DefinitionChanges(before, after map[string]string) (changed, added, removed []string) {
	for _, name := range slices.Sorted(maps.Keys(after)) {
		prev, ok := before[name]
		switch {
		case !ok:
			added = append(added, name)
		case prev != after[name]:
			changed = append(changed, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[name]; !ok {
			removed = append(removed, name)
		}
	}
	return changed, added, removed
}
