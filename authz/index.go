// Package authz is the decision engine: Check(subject, action, resource) over standing bindings
// and active grants, answered from an in-memory index.
//
// It upholds invariant 2 (expiry at decision time: every decision compares the grant's end with
// the clock, whatever the sweeper has or has not done yet), invariant 8 (a disabled person is
// denied everything, on every replica within the sync interval) and invariant 6 (fail closed: until
// the index has loaded, and whenever it has not heard from the store for longer than its
// staleness bound, every decision denies and says why) and invariant 9 (a grant allows only
// what both the role definition it was approved for and the role's current definition allow:
// GrantAllows). Resources that are not in the policy catalogue are never allowed.
//
// The index is updated in the same process on every commit (access.Service listeners) and
// synchronised from the store on an interval, which picks up changes made by other replicas.
// Updates carry the grant's version (its ledger sequence number): an older version never
// overwrites a newer one, and a notice at or below the cursor (every change up to it has been
// read from the store) is ignored, so a late notice cannot bring back a grant whose revocation
// Sync has already read and whose record it has dropped. The two paths can race safely; a
// randomized test holds the index to a model of the newest version of each grant it was given.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/policy"
)

// Query asks whether Subject may perform Action on Resource.
type Query struct {
	Subject  string `json:"subject"`
	Action   string `json:"action"`
	Resource string `json:"resource"`
	// RequestedBy, when set, counts only the grants that RequestedBy requested (standing
	// bindings still count: nobody requested them). The admission webhook asks it so that a
	// workload's grant is used only by what its requester deploys (invariant 8). It is not
	// part of the API.
	RequestedBy string `json:"-"`
}

// Decision is the answer, with the evidence for it.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason"`
	// GrantID is the grant that allowed, or the expired grant that would have.
	GrantID string `json:"grant_id,omitempty"`
	// Binding is the standing binding that allowed.
	Binding string `json:"binding,omitempty"`
	Role    string `json:"role,omitempty"`
	// ExpiresAt is when the allowing grant ends (zero for standing bindings).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Unavailable is set when the engine failed closed because its state cannot be trusted.
	Unavailable bool `json:"unavailable,omitempty"`
	// Requester is who requested GrantID (not part of the API: the grant, with its requester,
	// is at GET /v1/grants).
	Requester string `json:"-"`
	// BreakGlass says GrantID is a break-glass grant (not part of the API either): enforcement
	// points record it with what they allow, for detection.
	BreakGlass bool `json:"-"`
}

// GrantSource is what the index reads from the store.
type GrantSource interface {
	ListGrants(ctx context.Context, f access.GrantFilter) ([]access.Grant, error)
	LedgerSize(ctx context.Context) (int64, error)
}

// entry is a grant as the index holds it, with its allow reason prepared so the hot path does
// not allocate.
type entry struct {
	id, role, subject string
	requester         string
	breakGlass        bool
	starts, expires   time.Time
	active            bool
	version           int64
	allowReason       string
	def               *policy.RoleDefinition // what the grant was approved for (nil: not pinned yet)
}

// Index answers Check. It is safe for concurrent use.
type Index struct {
	src      GrantSource
	now      func() time.Time
	maxStale time.Duration
	log      *slog.Logger

	pol      atomic.Pointer[policy.Policy]
	lastSync atomic.Int64 // unix nanos of the last successful load or sync; 0 = never
	halted   atomic.Pointer[error]

	// disabled are the people every decision denies (disabled.go); dgen counts SetDisabled
	// calls, so that a sync never replaces a newer local change with an older read.
	disabled atomic.Pointer[disabledSet]
	dmu      sync.Mutex
	dgen     uint64

	mu        sync.RWMutex
	bySubject map[string][]*entry
	byID      map[string]*entry   // includes inactive grants until the cursor passes them
	dead      map[string]struct{} // ids of the inactive entries in byID
	cursor    int64               // every grant change with version <= cursor is reflected
	loadErr   error
}

// Options configure an Index.
type Options struct {
	Now func() time.Time
	// MaxStaleness is how long the index may go without a successful sync before it fails
	// closed. Default 5s.
	MaxStaleness time.Duration
	Logger       *slog.Logger
}

// DefaultMaxStaleness is the default staleness bound.
const DefaultMaxStaleness = 5 * time.Second

// New returns an index that denies everything until Load succeeds.
func New(src GrantSource, pol *policy.Policy, o Options) *Index {
	ix := &Index{src: src, now: o.Now, maxStale: o.MaxStaleness, log: o.Logger,
		bySubject: map[string][]*entry{}, byID: map[string]*entry{}, dead: map[string]struct{}{}}
	if ix.now == nil {
		ix.now = time.Now
	}
	if ix.maxStale == 0 {
		ix.maxStale = DefaultMaxStaleness
	}
	if ix.log == nil {
		ix.log = slog.New(slog.DiscardHandler)
	}
	ix.pol.Store(pol)
	ix.loadErr = fmt.Errorf("the grant index has not been loaded yet")
	return ix
}

// SetPolicy changes the policy decisions are made under.
func (ix *Index) SetPolicy(p *policy.Policy) { ix.pol.Store(p) }

// Policy returns the policy decisions are made under.
func (ix *Index) Policy() *policy.Policy { return ix.pol.Load() }

const pageSize = 5000

// Load reads every active grant from the store, replacing the index, then catches up with the
// changes committed while it read: a grant revoked meanwhile must be known as revoked before a
// late notice of its activation can arrive (decisions fail closed until then).
func (ix *Index) Load(ctx context.Context) error {
	err := ix.load(ctx)
	if err == nil {
		err = ix.catchUp(ctx)
	}
	ix.mu.Lock()
	ix.loadErr = err
	ix.mu.Unlock()
	return err
}

func (ix *Index) load(ctx context.Context) error {
	// The cursor is read before the grants: anything changed after it is re-read by Sync, and
	// applying a change twice is harmless.
	size, err := ix.src.LedgerSize(ctx)
	if err != nil {
		return fmt.Errorf("read ledger size: %w", err)
	}
	if err := ix.syncDisabled(ctx); err != nil {
		return err
	}
	bySubject, byID := map[string][]*entry{}, map[string]*entry{}
	after := ""
	for {
		gs, err := ix.src.ListGrants(ctx, access.GrantFilter{States: []access.GrantState{access.GrantActive}, AfterID: after, Limit: pageSize})
		if err != nil {
			return fmt.Errorf("load active grants: %w", err)
		}
		for _, g := range gs {
			e := newEntry(g)
			byID[g.ID] = e
			bySubject[g.Subject] = append(bySubject[g.Subject], e)
		}
		if len(gs) < pageSize {
			break
		}
		after = gs[len(gs)-1].ID
	}
	ix.mu.Lock()
	ix.bySubject, ix.byID, ix.dead, ix.cursor = bySubject, byID, map[string]struct{}{}, size-1
	ix.mu.Unlock()
	ix.lastSync.Store(ix.now().UnixNano())
	ix.log.Info("grant index loaded", "active_grants", len(byID), "cursor", size-1)
	return nil
}

func newEntry(g access.Grant) *entry {
	return &entry{id: g.ID, role: g.Role, subject: g.Subject, requester: g.Requester, breakGlass: g.BreakGlass, starts: g.StartsAt, expires: g.ExpiresAt,
		active: g.State == access.GrantActive, version: g.Version, def: g.Definition,
		allowReason: "allowed by grant " + g.ID + " of role " + g.Role}
}

// Apply records grants changed by a committed transaction. Older versions are ignored.
func (ix *Index) Apply(grants []access.Grant) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, g := range grants {
		ix.applyLocked(g)
	}
}

func (ix *Index) applyLocked(g access.Grant) {
	// Every change up to the cursor is already reflected. A notice at or below it is old news:
	// the workflow runs its listeners after the commit, outside the store's lock, so a notice
	// can arrive after Sync has read a later change of the same grant and, its cursor past it,
	// dropped the grant's record. Applied, it would resurrect a revoked grant (invariant 2).
	if g.Version <= ix.cursor {
		return
	}
	old := ix.byID[g.ID]
	if old != nil && old.version > g.Version {
		return
	}
	e := newEntry(g)
	ix.byID[g.ID] = e
	if e.active {
		delete(ix.dead, g.ID)
	} else {
		ix.dead[g.ID] = struct{}{}
	}
	list := ix.bySubject[g.Subject]
	for i, x := range list {
		if x.id == g.ID {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if e.active {
		list = append(list, e)
	}
	if len(list) == 0 {
		delete(ix.bySubject, g.Subject)
	} else {
		ix.bySubject[g.Subject] = list
	}
}

// Sync applies grant changes committed since the last load or sync, by any replica, and marks
// the index fresh. A failure leaves the index as it was; if failures last longer than the
// staleness bound, Check fails closed.
func (ix *Index) Sync(ctx context.Context) error {
	ix.mu.RLock()
	loaded := ix.loadErr == nil
	ix.mu.RUnlock()
	if !loaded {
		return ix.Load(ctx)
	}
	if err := ix.catchUp(ctx); err != nil {
		return err
	}
	// A successful read of the ledger head proves the store answers even when nothing changed.
	if _, err := ix.src.LedgerSize(ctx); err != nil {
		return fmt.Errorf("sync: read ledger size: %w", err)
	}
	if err := ix.syncDisabled(ctx); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	ix.lastSync.Store(ix.now().UnixNano())
	return nil
}

// catchUp applies the grant changes committed after the cursor and moves the cursor past them.
func (ix *Index) catchUp(ctx context.Context) error {
	ix.mu.RLock()
	cursor := ix.cursor
	ix.mu.RUnlock()
	// Page through the change feed in (version, id) order: one transaction may change many
	// grants under one version, so the version alone is not a cursor.
	afterVersion, afterID := cursor, ""
	for {
		gs, err := ix.src.ListGrants(ctx, access.GrantFilter{ByVersion: true, ChangedAfter: afterVersion, AfterID: afterID, Limit: pageSize})
		if err != nil {
			return fmt.Errorf("sync grants: %w", err)
		}
		if len(gs) > 0 {
			last := gs[len(gs)-1]
			afterVersion, afterID = last.Version, last.ID
			ix.mu.Lock()
			for _, g := range gs {
				ix.applyLocked(g)
			}
			ix.mu.Unlock()
		}
		if len(gs) < pageSize {
			break
		}
	}
	ix.mu.Lock()
	ix.cursor = max(ix.cursor, afterVersion)
	// Tombstones at or below the cursor can no longer be overtaken by older data.
	for id := range ix.dead {
		if e := ix.byID[id]; e.version <= ix.cursor {
			delete(ix.byID, id)
			delete(ix.dead, id)
		}
	}
	ix.mu.Unlock()
	return nil
}

// Run syncs every interval until ctx ends.
func (ix *Index) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := ix.Sync(ctx); err != nil {
			if !failing {
				ix.log.Error("grant index cannot sync; decisions will deny once it is stale", "err", err, "max_staleness", ix.maxStale)
			}
			failing = true
		} else if failing {
			ix.log.Info("grant index sync recovered")
			failing = false
		}
	}
}

// Health says whether decisions can currently be trusted, and if not, why.
func (ix *Index) Health() error {
	ix.mu.RLock()
	loadErr := ix.loadErr
	ix.mu.RUnlock()
	return ix.health(loadErr, ix.now())
}

// Halt makes every later decision deny, for good, saying why: the store behind the index was
// found tampered with (invariant 6). Only a restart, after an operator investigated, lifts it.
func (ix *Index) Halt(reason error) { ix.halted.CompareAndSwap(nil, &reason) }

func (ix *Index) health(loadErr error, now time.Time) error {
	if h := ix.halted.Load(); h != nil {
		return *h
	}
	if loadErr != nil {
		return fmt.Errorf("grant index not loaded: %v", loadErr)
	}
	last := ix.lastSync.Load()
	if age := now.Sub(time.Unix(0, last)); age > ix.maxStale {
		return fmt.Errorf("grant index has not synced with the store for %s (limit %s); the store may be down", age.Round(time.Millisecond), ix.maxStale)
	}
	return nil
}

// Check decides one query. It never blocks on the store.
func (ix *Index) Check(q Query) Decision {
	now := ix.now()
	pol := ix.pol.Load()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.checkLocked(pol, q, now)
}

// CheckBatch decides several queries against one consistent view.
func (ix *Index) CheckBatch(qs []Query) []Decision {
	now := ix.now()
	pol := ix.pol.Load()
	out := make([]Decision, len(qs))
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for i, q := range qs {
		out[i] = ix.checkLocked(pol, q, now)
	}
	return out
}

// RoleAllows is the decision engine's rule for whether holding role gives action on resource:
// a rule of the role covers the action on the resource, which must be in the policy catalogue
// (the compiled policy only knows catalogue resources). Check applies exactly this to every grant
// and standing binding, and role suggestions use it to find candidates, so a suggested role is
// one the engine will honour.
func RoleAllows(pol *policy.Policy, role, action, resource string) bool {
	return pol.Allows(role, action, resource)
}

// GrantAllows is the rule for a grant of role approved for def: RoleAllows under the current
// policy, and def allows it too (policy.AllowsPinned). A broadened role reaches only grants
// approved after the change; a narrowed one narrows every grant at once (invariant 9).
func GrantAllows(pol *policy.Policy, def *policy.RoleDefinition, role, action, resource string) bool {
	return RoleAllows(pol, role, action, resource) && (def == nil || def.Allows(action, resource))
}

func (ix *Index) checkLocked(pol *policy.Policy, q Query, now time.Time) Decision {
	if err := ix.health(ix.loadErr, now); err != nil {
		return Decision{Reason: "denied: failing closed because the " + err.Error(), Unavailable: true}
	}
	if _, ok := pol.Resource(q.Resource); !ok {
		return Decision{Reason: fmt.Sprintf("denied: %q is not a resource in the policy catalogue", q.Resource)}
	}
	if ix.Disabled(q.Subject) {
		// Invariant 8: a disabled person's grants and standing bindings allow nothing.
		return Decision{Reason: fmt.Sprintf("denied: %s is disabled; every decision about them denies until an administrator enables them (their grants were revoked)", q.Subject)}
	}
	for _, st := range pol.StandingRoles(q.Subject) {
		if RoleAllows(pol, st.Role, q.Action, q.Resource) {
			return Decision{Allowed: true, Reason: "allowed by standing binding " + st.Binding + " of role " + st.Role, Binding: st.Binding, Role: st.Role}
		}
	}
	var best, lapsed, narrower *entry
	for _, e := range ix.bySubject[q.Subject] {
		if q.RequestedBy != "" && e.requester != q.RequestedBy {
			continue
		}
		if !GrantAllows(pol, e.def, e.role, q.Action, q.Resource) {
			if narrower == nil && RoleAllows(pol, e.role, q.Action, q.Resource) && e.active && !now.Before(e.starts) && now.Before(e.expires) {
				narrower = e
			}
			continue
		}
		if !now.Before(e.expires) || now.Before(e.starts) {
			if lapsed == nil || e.expires.After(lapsed.expires) {
				lapsed = e
			}
			continue
		}
		if best == nil || e.expires.After(best.expires) {
			best = e
		}
	}
	if best != nil {
		return Decision{Allowed: true, Reason: best.allowReason, GrantID: best.id, Role: best.role, ExpiresAt: best.expires, Requester: best.requester, BreakGlass: best.breakGlass}
	}
	if lapsed != nil {
		return Decision{Reason: fmt.Sprintf("denied: grant %s of role %s expired at %s", lapsed.id, lapsed.role, lapsed.expires.UTC().Format(time.RFC3339)),
			GrantID: lapsed.id, Role: lapsed.role, ExpiresAt: lapsed.expires, Requester: lapsed.requester}
	}
	if narrower != nil {
		return Decision{Reason: fmt.Sprintf("denied: grant %s was approved for a definition of role %s that did not give %s on %s; the role was broadened since, and a broader role needs a new approval: renew the grant (rampart grant renew %s)",
			narrower.id, narrower.role, q.Action, q.Resource, narrower.id), GrantID: narrower.id, Role: narrower.role}
	}
	return Decision{Reason: denyReason(pol, q)}
}

func denyReason(pol *policy.Policy, q Query) string {
	roles := pol.RolesGranting(q.Action, q.Resource)
	var requestable []string
	for _, r := range roles {
		if _, err := pol.Requirement(r); err == nil {
			requestable = append(requestable, r)
		}
	}
	msg := fmt.Sprintf("denied: %s has no active grant or standing binding for %s on %s", q.Subject, q.Action, q.Resource)
	if q.RequestedBy != "" {
		msg = fmt.Sprintf("denied: %s has no active grant requested by %s, nor a standing binding, for %s on %s", q.Subject, q.RequestedBy, q.Action, q.Resource)
	}
	if len(requestable) == 0 {
		return msg + "; no requestable role gives it"
	}
	sort.Strings(requestable)
	return msg + "; request it with: rampart request create --role " + requestable[0] +
		" --reason \"…\"" + alsoRoles(requestable[1:])
}

func alsoRoles(rest []string) string {
	if len(rest) == 0 {
		return ""
	}
	return " (other roles that give it: " + strings.Join(rest, ", ") + ")"
}

// Stats describe the index for metrics.
type Stats struct {
	ActiveGrants int
	Subjects     int
	Cursor       int64
}

// Stats returns counts for metrics and health output.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := 0
	for _, l := range ix.bySubject {
		n += len(l)
	}
	return Stats{ActiveGrants: n, Subjects: len(ix.bySubject), Cursor: ix.cursor}
}

// GrantInfo is an active grant as the index holds it.
type GrantInfo struct {
	ID, Role, Subject   string
	StartsAt, ExpiresAt time.Time
	// Definition is the role definition the grant was approved for (nil: not pinned yet).
	Definition *policy.RoleDefinition
}

// ActiveGrants returns the grants in force now, sorted by id, for enforcement points that
// materialise grants elsewhere (Kubernetes RBAC bindings). Like Check it fails closed: when the
// index cannot be trusted it returns the reason instead.
func (ix *Index) ActiveGrants() ([]GrantInfo, error) {
	now := ix.now()
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if err := ix.health(ix.loadErr, now); err != nil {
		return nil, err
	}
	var out []GrantInfo
	for subject, list := range ix.bySubject {
		if ix.Disabled(subject) {
			continue // their RoleBindings go, even before their grants' revocation is seen
		}
		for _, e := range list {
			if e.active && !now.Before(e.starts) && now.Before(e.expires) {
				out = append(out, GrantInfo{ID: e.id, Role: e.role, Subject: e.subject, StartsAt: e.starts, ExpiresAt: e.expires, Definition: e.def})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
