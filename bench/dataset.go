// Package bench compares Rampart's decision engine with the Open Policy Agent, in the same run
// on the same machine, and prints the ratios (DESIGN.md §6).
//
// Both engines answer the same question over the same data: may subject do action on resource,
// given a policy catalogue of resources and roles and a set of time-bound grants. The data set
// (Generate) is produced deterministically; Rampart reads its grants from a real SQLite store,
// OPA reads the same grants as JSON, and TestAgreement proves that both give the same answers
// as a brute-force reference before any number is trusted.
//
// The measurements are Go benchmarks (check_test.go for the in-process engines, http_test.go
// for the servers and the approval-to-allow latency); run.sh runs them all and README.md says
// what is compared and why the comparison is fair.
package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// Config sizes a data set.
type Config struct {
	Subjects         int
	GrantsPerSubject int
	Resources        int
	Roles            int
	// LapsedPerMille of the grants are in state active but outside their time window (half
	// already expired, half not yet started): the sweeper has not caught up, so the engine must
	// compare with the clock (invariant 2).
	LapsedPerMille int
	// Queries is the number of distinct queries; a power of two.
	Queries int
	// AllowedPercent of the queries are allowed.
	AllowedPercent int
	Seed           uint64
}

// DefaultConfig is the benchmark's data set: 10,000 subjects with 10 grants each (100,000
// grants) over 1,000 resources and 200 roles; 90% of the queries are allowed.
func DefaultConfig() Config {
	return Config{Subjects: 10_000, GrantsPerSubject: 10, Resources: 1_000, Roles: 200,
		LapsedPerMille: 10, Queries: 1 << 16, AllowedPercent: 90, Seed: 2026}
}

// Query is a decision query with the answer the reference model gives.
type Query struct {
	authz.Query
	Want bool
}

// Groups and users of the generated policy that take part in the approval workflow.
const (
	// OwnerApprover and SecurityApprover are the two distinct approvers a request needs.
	OwnerApprover    = "owner-a"
	SecurityApprover = "sec-a"
	// ApprovalPolicyName is the single approval policy; it covers every resource.
	ApprovalPolicyName = "two-party"
)

// Dataset is a generated policy, its grants and a query mix.
type Dataset struct {
	Config
	// Now is the time the grants' windows are laid out around. Decisions are made with the
	// real clock; every window is at least a day wide on either side of Now, so the answers do
	// not change during a run.
	Now         time.Time
	PolicyFiles []policy.File
	Policy      *policy.Policy
	Grants      []access.Grant
	Queries     []Query
	// CriticalRole reaches a critical resource; CriticalResource and CriticalAction are
	// something it allows. No subject of the data set holds the role.
	CriticalRole, CriticalResource, CriticalAction string

	resources []string
	roles     []genRole
	bySubject map[string][]*access.Grant
}

type genRole struct {
	name  string
	perms map[string][]string // resource → actions
	res   []string            // sorted keys of perms
}

var (
	kinds   = []string{"weights", "datasets", "namespaces", "buckets", "keys"}
	actions = []string{"read", "write", "exec", "list", "admin"}
)

// Generate builds a data set. The same Config always gives the same policy, grants and queries
// (apart from Now).
func Generate(c Config) (*Dataset, error) {
	if c.Queries <= 0 || c.Queries&(c.Queries-1) != 0 {
		return nil, fmt.Errorf("the number of queries (Config.Queries) must be a power of two, got %d", c.Queries)
	}
	if c.GrantsPerSubject >= c.Roles {
		return nil, fmt.Errorf("%d grants per subject need more roles than that (role-000 is never pre-granted), got %d", c.GrantsPerSubject, c.Roles)
	}
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	ds := &Dataset{Config: c, Now: time.Now().UTC().Truncate(time.Second), bySubject: map[string][]*access.Grant{}}
	ds.genPolicy(rng)
	pol, err := policy.Parse(ds.PolicyFiles)
	if err != nil {
		return nil, fmt.Errorf("the generated policy does not validate: %w", err)
	}
	ds.Policy = pol
	for _, r := range ds.roles {
		if got, want := len(pol.RoleResources(r.name)), len(r.res); got != want {
			return nil, fmt.Errorf("role %s reaches %d resources in the parsed policy, generated %d", r.name, got, want)
		}
	}
	ds.genGrants(rng)
	if err := ds.genQueries(rng); err != nil {
		return nil, err
	}
	return ds, nil
}

// Subject names the i-th subject.
func Subject(i int) string { return fmt.Sprintf("user-%05d", i) }

// genPolicy writes the policy YAML: resources (every 20th critical, every 5th other sensitive),
// roles of one or two rules, each one or two actions on two to four resources, the approval
// groups, one approval policy covering every resource, and the Settings.
func (ds *Dataset) genPolicy(rng *rand.Rand) {
	var res, roles, groups strings.Builder
	for i := range ds.Resources {
		kind := kinds[i%len(kinds)]
		name := fmt.Sprintf("%s/%s-%04d", kind, strings.TrimSuffix(kind, "s"), i)
		sens := "internal"
		switch {
		case i%20 == 0:
			sens = "critical"
		case i%5 == 0:
			sens = "sensitive"
		}
		ds.resources = append(ds.resources, name)
		fmt.Fprintf(&res, "---\napiVersion: rampart.dev/v1alpha1\nkind: Resource\nmetadata:\n  name: %s\nspec:\n  kind: %s\n  sensitivity: %s\n  owners: [owners]\n  tags: [%s]\n  description: generated resource %d\n",
			name, strings.TrimSuffix(kind, "s"), sens, kind, i)
	}
	for i := range ds.Roles {
		r := genRole{name: fmt.Sprintf("role-%03d", i), perms: map[string][]string{}}
		fmt.Fprintf(&roles, "---\napiVersion: rampart.dev/v1alpha1\nkind: Role\nmetadata:\n  name: %s\nspec:\n  description: generated role %d\n  rules:\n", r.name, i)
		for range 1 + rng.IntN(2) {
			acts := pick(rng, actions, 1+rng.IntN(2))
			targets := pick(rng, ds.resources, 2+rng.IntN(3))
			if i == 0 {
				targets[0] = ds.resources[0] // resource 0 is critical: role-000 is the approval role
			}
			fmt.Fprintf(&roles, "  - actions: [%s]\n    resources: [%s]\n", strings.Join(acts, ", "), strings.Join(targets, ", "))
			for _, t := range targets {
				for _, a := range acts {
					if !slices.Contains(r.perms[t], a) {
						r.perms[t] = append(r.perms[t], a)
					}
				}
			}
		}
		for k := range r.perms {
			r.res = append(r.res, k)
		}
		slices.Sort(r.res)
		ds.roles = append(ds.roles, r)
	}
	ds.CriticalRole, ds.CriticalResource = ds.roles[0].name, ds.resources[0]
	ds.CriticalAction = ds.roles[0].perms[ds.CriticalResource][0]

	groups.WriteString(`apiVersion: rampart.dev/v1alpha1
kind: Group
metadata:
  name: admins
spec:
  members: [admin]
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata:
  name: auditors
spec:
  members: [auditor]
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata:
  name: owners
spec:
  description: Owners of every generated resource; one of them approves each request.
  members: [` + OwnerApprover + `, owner-b]
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata:
  name: security
spec:
  description: Security engineering; the second approver of each request.
  members: [` + SecurityApprover + `, sec-b]
`)
	approvals := `apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata:
  name: ` + ApprovalPolicyName + `
spec:
  description: An owner and security approve every request, so two distinct approvers are needed.
  match:
    sensitivity: [internal, sensitive, critical]
  steps:
  - name: owner
    from: [owners]
    count: 1
  - name: security
    from: [security]
    count: 1
  exclude: [requester, beneficiary]
  max_duration: 720h
  default_duration: 1h
  request_ttl: 24h
  renewable: true
  require_reason: true
  break_glass:
    allowed: false
`
	settings := `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata:
  name: settings
spec:
  admin_group: admins
  auditor_group: auditors
  checkpoint_interval: 1m
  signing_key: ledger.key
`
	ds.PolicyFiles = []policy.File{
		{Name: "approvals.yaml", Data: []byte(approvals)},
		{Name: "groups.yaml", Data: []byte(groups.String())},
		{Name: "resources.yaml", Data: []byte(res.String())},
		{Name: "roles.yaml", Data: []byte(roles.String())},
		{Name: "settings.yaml", Data: []byte(settings)},
	}
}

// pick returns n distinct elements of from, in random order.
func pick(rng *rand.Rand, from []string, n int) []string {
	out := make([]string, 0, n)
	for _, i := range rng.Perm(len(from))[:n] {
		out = append(out, from[i])
	}
	return out
}

// genGrants gives every subject GrantsPerSubject distinct roles, as active grants whose windows
// contain Now, except LapsedPerMille of them.
func (ds *Dataset) genGrants(rng *rand.Rand) {
	ds.Grants = make([]access.Grant, 0, ds.Subjects*ds.GrantsPerSubject)
	n := 0
	for s := range ds.Subjects {
		subj := Subject(s)
		// role-000 (the critical approval role) is never pre-granted.
		for _, ri := range rng.Perm(ds.Roles - 1)[:ds.GrantsPerSubject] {
			g := access.Grant{
				ID: fmt.Sprintf("grt_bench%07d", n), RequestID: fmt.Sprintf("req_bench%07d", n),
				Role: ds.roles[ri+1].name, Subject: subj, State: access.GrantActive,
				StartsAt:  ds.Now.Add(-time.Duration(24+rng.IntN(24*30)) * time.Hour),
				ExpiresAt: ds.Now.Add(time.Duration(24+rng.IntN(24*30)) * time.Hour),
			}
			if m := rng.IntN(1000); m < ds.LapsedPerMille {
				if m%2 == 0 {
					g.ExpiresAt = ds.Now.Add(-time.Duration(1+rng.IntN(24)) * time.Hour) // expired, not yet swept
				} else {
					g.StartsAt = ds.Now.Add(time.Duration(24+rng.IntN(24)) * time.Hour) // not yet started
				}
			}
			ds.Grants = append(ds.Grants, g)
			n++
		}
	}
	for i := range ds.Grants {
		g := &ds.Grants[i]
		ds.bySubject[g.Subject] = append(ds.bySubject[g.Subject], g)
	}
}

// Reference decides a query by brute force over the generated grants at time now, with the
// semantics of authz.Index.Check for a policy without standing bindings: allowed iff the
// resource is in the catalogue and some active grant of the subject is in effect at now
// (starts <= now < expires) and its role gives the action ("*": every action) on the resource.
func (ds *Dataset) Reference(q authz.Query, now time.Time) bool {
	if _, ok := ds.Policy.Resource(q.Resource); !ok {
		return false
	}
	for _, g := range ds.bySubject[q.Subject] {
		if !g.ActiveAt(now) {
			continue
		}
		acts := ds.Policy.RoleActions(g.Role, q.Resource)
		if slices.Contains(acts, q.Action) || slices.Contains(acts, "*") {
			return true
		}
	}
	return false
}

// roleByName returns the generated role called name (role-NNN).
func (ds *Dataset) roleByName(name string) *genRole {
	var i int
	fmt.Sscanf(name, "role-%d", &i)
	return &ds.roles[i]
}

// genQueries draws the query mix: AllowedPercent allowed by a grant in effect, the rest denied
// for one of five reasons (unknown resource, action no role gives, subject without grants,
// resource the subject's roles do not reach, only a lapsed grant would allow).
func (ds *Dataset) genQueries(rng *rand.Rand) error {
	ds.Queries = make([]Query, 0, ds.Config.Queries)
	for len(ds.Queries) < ds.Config.Queries {
		var q authz.Query
		subj := Subject(rng.IntN(ds.Subjects))
		gs := ds.bySubject[subj]
		if rng.IntN(100) < ds.AllowedPercent {
			g := gs[rng.IntN(len(gs))]
			if !g.ActiveAt(ds.Now) {
				continue
			}
			r := ds.roleByName(g.Role)
			res := r.res[rng.IntN(len(r.res))]
			acts := r.perms[res]
			q = authz.Query{Subject: subj, Action: acts[rng.IntN(len(acts))], Resource: res}
		} else {
			switch rng.IntN(5) {
			case 0: // not in the catalogue
				q = authz.Query{Subject: subj, Action: "read", Resource: fmt.Sprintf("weights/unknown-%d", rng.IntN(1000))}
			case 1: // an action no role gives
				g := gs[rng.IntN(len(gs))]
				r := ds.roleByName(g.Role)
				q = authz.Query{Subject: subj, Action: "delete", Resource: r.res[rng.IntN(len(r.res))]}
			case 2: // a subject without grants
				q = authz.Query{Subject: fmt.Sprintf("stranger-%d", rng.IntN(1000)), Action: "read", Resource: ds.resources[rng.IntN(len(ds.resources))]}
			case 3: // something the subject's roles do not reach
				q = authz.Query{Subject: subj, Action: actions[rng.IntN(len(actions))], Resource: ds.resources[rng.IntN(len(ds.resources))]}
			case 4: // what a lapsed grant would give
				var lapsed []*access.Grant
				for _, g := range gs {
					if !g.ActiveAt(ds.Now) {
						lapsed = append(lapsed, g)
					}
				}
				if len(lapsed) == 0 {
					continue
				}
				r := ds.roleByName(lapsed[0].Role)
				res := r.res[rng.IntN(len(r.res))]
				q = authz.Query{Subject: subj, Action: r.perms[res][0], Resource: res}
			}
			if ds.Reference(q, ds.Now) {
				continue // by chance allowed by another grant: draw again
			}
		}
		ds.Queries = append(ds.Queries, Query{Query: q, Want: ds.Reference(q, ds.Now)})
	}
	return nil
}

// AllowedFraction is the share of the queries whose reference answer is allowed.
func (ds *Dataset) AllowedFraction() float64 {
	n := 0
	for _, q := range ds.Queries {
		if q.Want {
			n++
		}
	}
	return float64(n) / float64(len(ds.Queries))
}

// Fill writes the data set's grants into st in transactions of batch grants. The first
// transaction appends one ledger entry recording the bulk load; its sequence number is every
// grant's Version, as if one change had created them all. (The workflow would write one entry
// per grant; the decision index only needs the grants and a ledger head.)
func (ds *Dataset) Fill(ctx context.Context, st access.Store, batch int) error {
	var version int64
	for start := 0; start < len(ds.Grants); start += batch {
		end := min(start+batch, len(ds.Grants))
		err := st.Update(ctx, func(tx access.Tx) error {
			if start == 0 {
				seq, err := tx.Append(ctx, audit.Event{Code: "bench.bulk_load", Class: audit.ClassAPIActivity,
					Activity: audit.ActivityCreate, ActivityName: "Create", Time: time.Now(), Actor: "bench",
					Message: fmt.Sprintf("benchmark data set: %d grants for %d subjects loaded in bulk", len(ds.Grants), ds.Subjects)})
				if err != nil {
					return err
				}
				version = seq
			}
			for i := start; i < end; i++ {
				g := ds.Grants[i]
				g.Version = version
				if err := tx.InsertGrant(ctx, g); err != nil {
					return fmt.Errorf("insert grant %s: %w", g.ID, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("bulk load grants %d to %d: %w", start, end, err)
		}
	}
	return nil
}

// OPAData is the data document OPA decides over: the catalogue as a set, each role as
// resource → actions (compiled from the parsed policy, as Rampart's index uses it), and each
// subject's grants with their windows in Unix nanoseconds.
func (ds *Dataset) OPAData() map[string]any {
	resources := map[string]any{}
	for _, r := range ds.Policy.Resources() {
		resources[r.Name] = true
	}
	roles := map[string]any{}
	for _, r := range ds.Policy.Roles() {
		perms := map[string]any{}
		for _, res := range ds.Policy.RoleResources(r.Name) {
			var acts []any
			for _, a := range ds.Policy.RoleActions(r.Name, res.Name) {
				acts = append(acts, a)
			}
			perms[res.Name] = acts
		}
		roles[r.Name] = perms
	}
	grants := map[string]any{}
	for _, g := range ds.Grants {
		if g.State != access.GrantActive {
			continue
		}
		list, _ := grants[g.Subject].([]any)
		grants[g.Subject] = append(list, map[string]any{"id": g.ID, "role": g.Role,
			"starts": g.StartsAt.UnixNano(), "expires": g.ExpiresAt.UnixNano()})
	}
	return map[string]any{"resources": resources, "roles": roles, "grants": grants}
}
