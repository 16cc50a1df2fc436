package storetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// details returns the details ("unmapped") of every ledger entry with the given code, in order.
func (e *env) details(code string) []map[string]any {
	e.t.Helper()
	recs, err := e.store.Entries(e.ctx, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range recs {
		s, err := audit.Summarize(r.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		if s.Code != code {
			continue
		}
		var m struct {
			Unmapped map[string]any `json:"unmapped"`
		}
		if err := json.Unmarshal(r.Data, &m); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m.Unmapped)
	}
	return out
}

// withRoleActions returns the demo policy with one role's first rule giving actions instead.
func withRoleActions(t *testing.T, role, from, to string) *policy.Policy {
	t.Helper()
	return demoWith(t, func(name, text string) string {
		if name != "roles.yaml" {
			return text
		}
		head := "  name: " + role + "\n"
		i := strings.Index(text, head)
		j := strings.Index(text[i:], from)
		if i < 0 || j < 0 {
			t.Fatalf("the demo role %s has no %q", role, from)
		}
		return text[:i+j] + to + text[i+j+len(from):]
	}, "")
}

func (e *env) load(pol *policy.Policy, origin string) {
	e.t.Helper()
	if err := e.svc.LoadPolicy(e.ctx, pol, "test", origin); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) grantFor(in access.CreateInput, approvers ...string) access.Grant {
	e.t.Helper()
	req := e.create(in)
	var r access.Request
	for _, a := range approvers {
		r = e.mustReview(req.ID, a, access.Approve)
	}
	if r.State != access.Approved {
		e.t.Fatalf("request %s is %s after %v", req.ID, r.State, approvers)
	}
	g, err := e.store.Grant(e.ctx, r.GrantID)
	if err != nil {
		e.t.Fatal(err)
	}
	return g
}

// testPinning: approval is for what was approved (issue 11, item 4; invariant 9).
func testPinning(t *testing.T, h Harness) {
	const reader = "weights-reader-frontier-7"
	broadened := func(t *testing.T) *policy.Policy {
		return withRoleActions(t, reader, "actions: [read]", "actions: [read, write]")
	}

	// The attack of issue 11, item 4: the reader role is broadened with write and the policy
	// reloaded; every existing grant of the role used to be widened with it.
	t.Run("BroadeningNeedsANewApproval", func(t *testing.T) {
		e := newEnv(t, h)
		e.load(e.pol, "demo")
		g := e.grantFor(weightsRequest(), "bob", "dave")
		if g.RoleDigest == "" || g.Definition == nil || g.Definition.Allows("write", "weights/frontier-7") {
			t.Fatalf("grant not pinned to the reader definition: %+v", g)
		}
		if d := e.decide("alice", "write", "weights/frontier-7"); d.Allowed {
			t.Fatalf("write before the change: %+v", d)
		}
		wide := broadened(t)
		e.load(wide, "broadened")
		// The policy.load entry names the role.
		loads := e.details("policy.load")
		last := loads[len(loads)-1]
		if got, _ := json.Marshal(last["roles_changed"]); string(got) != `["`+reader+`"]` {
			t.Fatalf("policy.load roles_changed = %s; entry %v", got, last)
		}
		if d := e.decide("alice", "write", "weights/frontier-7"); d.Allowed || !strings.Contains(d.Reason, "renew the grant") {
			t.Fatalf("the old grant writes after the role was broadened: %+v", d)
		}
		if d := e.decide("alice", "read", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("the old grant lost what it was approved for: %+v", d)
		}
		// A grant approved after the change has the broader definition.
		g2 := e.grantFor(access.CreateInput{Requester: "alice", Beneficiary: "k8s:dev/research/evaluator", Role: reader, Reason: "eval", Duration: time.Hour}, "bob", "dave")
		if d := e.decide("k8s:dev/research/evaluator", "write", "weights/frontier-7"); !d.Allowed || d.GrantID != g2.ID {
			t.Fatalf("a grant approved after the broadening: %+v", d)
		}
		// Renewing re-approves under the current definition.
		ren, err := e.svc.Renew(e.ctx, g.ID, "alice", time.Hour, "needs write now")
		if err != nil {
			t.Fatal(err)
		}
		e.mustReview(ren.ID, "bob", access.Approve)
		if r := e.mustReview(ren.ID, "dave", access.Approve); r.GrantID != g.ID {
			t.Fatalf("renewal: %+v", r)
		}
		if d := e.decide("alice", "write", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("the renewed grant cannot write: %+v", d)
		}
		renews := e.details("grant.renew")
		if len(renews) != 1 || renews[0]["role_digest"] != wide.RoleDefinition(reader).Digest() {
			t.Fatalf("grant.renew entry %v", renews)
		}
	})

	t.Run("NarrowingAppliesAtOnce", func(t *testing.T) {
		e := newEnv(t, h)
		g := e.grantFor(access.CreateInput{Requester: "alice", Role: "weights-writer-frontier-7", Reason: "checkpoint", Duration: time.Hour}, "bob", "dave")
		if d := e.decide("alice", "read", "weights/frontier-7"); !d.Allowed || d.GrantID != g.ID {
			t.Fatalf("writer reads: %+v", d)
		}
		e.load(withRoleActions(t, "weights-writer-frontier-7", "actions: [write, read]", "actions: [write]"), "narrowed")
		if d := e.decide("alice", "read", "weights/frontier-7"); d.Allowed {
			t.Fatalf("the grant still reads after the role was narrowed: %+v", d)
		}
		if d := e.decide("alice", "write", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("the grant lost write: %+v", d)
		}
	})

	// An approval given before the role changed does not count towards activating the new
	// definition: otherwise bob's consent to "read" would activate "read, write".
	t.Run("ApprovalsBeforeAChangeDoNotCount", func(t *testing.T) {
		e := newEnv(t, h)
		e.load(e.pol, "demo")
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
		e.load(broadened(t), "broadened")
		if r := e.mustReview(req.ID, "dave", access.Approve); r.State != access.Pending {
			t.Fatalf("bob's approval of the narrower role counted towards the broader one: %s", r.State)
		}
		v, err := e.svc.Get(e.ctx, req.ID, "alice")
		if err != nil || v.Tally.Satisfied || len(v.Tally.Ignored) != 1 || !strings.Contains(v.Tally.Ignored[0].Why, "approved an earlier definition") {
			t.Fatalf("view: %+v %v", v.Tally, err)
		}
		if r := e.mustReview(req.ID, "bob", access.Approve); r.State != access.Approved {
			t.Fatalf("bob approving again: %s", r.State)
		}
		if d := e.decide("alice", "write", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("approved under the broader definition, cannot write: %+v", d)
		}
	})

	// The roles whose definition changed are known across a restart: the definitions of the
	// last load are in the store, not only in memory.
	t.Run("ChangesNamedAcrossARestart", func(t *testing.T) {
		e := newEnv(t, h)
		e.load(e.pol, "demo")
		restarted := access.New(e.store, e.pol, access.Options{Now: e.clock.Now})
		if err := restarted.LoadPolicy(e.ctx, broadened(t), "test", "broadened, after a restart"); err != nil {
			t.Fatal(err)
		}
		loads := e.details("policy.load")
		if len(loads) != 2 {
			t.Fatalf("%d policy.load entries", len(loads))
		}
		if got, _ := json.Marshal(loads[1]["roles_changed"]); string(got) != `["`+reader+`"]` {
			t.Fatalf("after a restart, policy.load roles_changed = %s", got)
		}
		// Loading the same policy again (another restart) records nothing.
		before := e.ledgerSize()
		if err := access.New(e.store, e.pol, access.Options{Now: e.clock.Now}).LoadPolicy(e.ctx, broadened(t), "test", "again"); err != nil || e.ledgerSize() != before {
			t.Fatalf("reloading the same policy: %v, ledger %d → %d", err, before, e.ledgerSize())
		}
	})

	// Grants from before pinning (written here without a definition, as an older version
	// did) are pinned at the next load: to the recorded definition if there is one, to the
	// policy's own if it is the one last loaded, and to nothing when neither is known.
	t.Run("GrantsFromBeforePinning", func(t *testing.T) {
		legacy := func(e *env, id, subject string) {
			e.t.Helper()
			err := e.store.Update(e.ctx, func(tx access.Tx) error {
				seq, err := tx.Append(e.ctx, audit.Event{Code: "grant.activate", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityCreate,
					ActivityName: "Assign Privileges", Actor: audit.SystemActor, Time: e.clock.Now(), Message: "a grant of an older version"})
				if err != nil {
					return err
				}
				if err := tx.SetMeta(e.ctx, "policy_digest", e.pol.Digest); err != nil {
					return err
				}
				return tx.InsertGrant(e.ctx, access.Grant{ID: id, RequestID: "req_" + id, Role: reader, Subject: subject,
					StartsAt: e.clock.Now(), ExpiresAt: e.clock.Now().Add(time.Hour), State: access.GrantActive, Version: seq})
			})
			if err != nil {
				e.t.Fatal(err)
			}
		}
		// Same policy as the older version last loaded: pinned to its definition.
		e := newEnv(t, h)
		legacy(e, "grt_old1", "alice")
		if d := e.decide("alice", "read", "weights/frontier-7"); !d.Allowed {
			t.Fatalf("an unpinned grant before the load: %+v", d)
		}
		e.load(e.pol, "demo, after the upgrade")
		g, _ := e.store.Grant(e.ctx, "grt_old1")
		if g.RoleDigest != e.pol.RoleDefinition(reader).Digest() || len(e.details("grant.pin")) != 1 {
			t.Fatalf("legacy grant after the first load: %+v; pins %v", g, e.details("grant.pin"))
		}
		e.load(broadened(t), "broadened")
		if d := e.decide("alice", "write", "weights/frontier-7"); d.Allowed {
			t.Fatalf("the legacy grant was widened: %+v", d)
		}
		// Upgraded and broadened at once: what the grant was approved for is unknown, so it
		// gives nothing until renewed.
		e = newEnv(t, h)
		legacy(e, "grt_old2", "alice")
		e.load(broadened(t), "broadened, with the upgrade")
		if d := e.decide("alice", "read", "weights/frontier-7"); d.Allowed {
			t.Fatalf("a legacy grant of unknown definition still allows: %+v", d)
		}
		pins := e.details("grant.pin")
		if len(pins) != 1 || !slices.Equal(toStrings(pins[0]["pinned_to_nothing"]), []string{"grt_old2"}) {
			t.Fatalf("grant.pin entries %v", pins)
		}
	})

	// An edited pinned definition (its digest no longer matches) allows nothing.
	t.Run("EditedDefinitionFailsClosed", func(t *testing.T) {
		e := newEnv(t, h)
		g := e.grantFor(weightsRequest(), "bob", "dave")
		if _, err := e.store.SQL().Exec(e.store.Rebind(`UPDATE grants SET role_definition = replace(role_definition, '"read"', '"*"') WHERE id = ?`), g.ID); err != nil {
			t.Fatal(err)
		}
		if d := e.decide("alice", "read", "weights/frontier-7"); d.Allowed {
			t.Fatalf("a grant with an edited definition allows: %+v", d)
		}
	})
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
