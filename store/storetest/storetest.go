// Package storetest is the conformance suite every Rampart store runs: persistence round trips,
// ledger sequencing and rollback, and the workflow's security invariants tried against the real
// database: self-approval, same-group approval, quorum, requests on someone else's behalf, a
// randomized comparison of the workflow with the quorum reference (internal/quorumtest), pinned
// role definitions, bounds on pending requests and break-glass, expiry at decision time,
// concurrent approvals, ledger-failure refusal, tampered history and crashes mid-transaction;
// and the secrets store over each store: versions and leases committed with their ledger
// entries, a read racing a revocation, ciphertexts moved between names, rotation; alerts and
// the guarded automatic response (detect.Responder) through the real workflow and sessions;
// the detection runner's exactly-once evaluation through crashes, restarts and racing replicas.
package storetest

import (
	"context"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/clocktest"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlstore"
)

// Harness tells the suite how to get stores of one kind.
type Harness struct {
	// New returns a new, empty store that is closed when the test ends.
	New func(t *testing.T) *sqlstore.DB
	// InjectLedgerFailure makes every later insert into the ledger table fail, the way a full
	// disk or a revoked permission would.
	InjectLedgerFailure func(t *testing.T, s *sqlstore.DB)
	// Shared makes a new, empty database and returns a function that opens another handle on
	// it each time it is called, the way each replica of a server opens the one database.
	// Handles are closed when the test ends.
	Shared func(t *testing.T) func(t *testing.T) *sqlstore.DB
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("RequestsAndGrants", func(t *testing.T) { testRequestsAndGrants(t, h) })
	t.Run("Tokens", func(t *testing.T) { testTokens(t, h) })
	t.Run("TokenBinding", func(t *testing.T) { testTokenBinding(t, h) })
	t.Run("TokenCap", func(t *testing.T) { testTokenCap(t, h) })
	t.Run("Disable", func(t *testing.T) { testDisable(t, h) })
	t.Run("FactorEnrolment", func(t *testing.T) { testFactorEnrolment(t, h) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, h) })
	t.Run("SessionSubjectBinding", func(t *testing.T) { testSubjectBinding(t, h) })
	t.Run("SignInHistory", func(t *testing.T) { testSignInHistory(t, h) })
	t.Run("SignInFlows", func(t *testing.T) { testFlows(t, h) })
	t.Run("MFAFactors", func(t *testing.T) { testMFAFactors(t, h) })
	t.Run("PruneSessions", func(t *testing.T) { testPruneSessions(t, h) })
	t.Run("LedgerSequenceAndRollback", func(t *testing.T) { testLedgerSequenceAndRollback(t, h) })
	t.Run("LedgerFailureRefusesChange", func(t *testing.T) { testLedgerFailureRefusesChange(t, h) })
	t.Run("LedgerTamperDetected", func(t *testing.T) { testLedgerTamper(t, h) })
	t.Run("ConcurrentApprovalsActivateOnce", func(t *testing.T) { testConcurrentApprovals(t, h) })
	t.Run("ConcurrentWritersGaplessLedger", func(t *testing.T) { testConcurrentWriters(t, h) })
	t.Run("AppendOnce", func(t *testing.T) { testAppendOnce(t, h) })
	t.Run("LedgerCheckpointAcrossReplicas", func(t *testing.T) { testCheckpointAcrossReplicas(t, h) })
	t.Run("UpdateCheckpoint", func(t *testing.T) { testUpdateCheckpoint(t, h) })
	t.Run("UnsignedTailForgeryRefused", func(t *testing.T) { testUnsignedTailForgery(t, h) })
	t.Run("UnsignedTailNoFalseAlarm", func(t *testing.T) { testUnsignedTailNoFalseAlarm(t, h) })
	t.Run("UnsignedTailInFlight", func(t *testing.T) { testUnsignedTailInFlight(t, h) })
	t.Run("UnsignedTailOtherReplica", func(t *testing.T) { testUnsignedTailOtherReplica(t, h) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, h) })
	t.Run("Workflow", func(t *testing.T) { testWorkflow(t, h) })
	t.Run("TextRefused", func(t *testing.T) { testTextRefused(t, h) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, h) })
	t.Run("Outbox", func(t *testing.T) { testOutbox(t, h) })
	t.Run("Reminders", func(t *testing.T) { testReminders(t, h) })
	t.Run("Secrets", func(t *testing.T) { testSecrets(t, h) })
	t.Run("Alerts", func(t *testing.T) { testAlerts(t, h) })
	t.Run("Responses", func(t *testing.T) { testResponses(t, h) })
	t.Run("ResponseBudgetRace", func(t *testing.T) { testResponseBudgetRace(t, h) })
	t.Run("DetectCommit", func(t *testing.T) { testDetectCommit(t, h) })
	t.Run("DetectExactlyOnce", func(t *testing.T) { testDetectExactlyOnce(t, h) })
	t.Run("DetectReplicas", func(t *testing.T) { testDetectReplicas(t, h) })
}

// Epoch is the suite's starting time.
var Epoch = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// env is a store, the demo policy, a manual clock and a workflow service over them.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *sqlstore.DB
	pol   *policy.Policy
	clock *clocktest.Clock
	svc   *access.Service
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	s := h.New(t)
	pol, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktest.New(Epoch)
	return &env{t: t, ctx: context.Background(), store: s, pol: pol, clock: clock,
		svc: access.New(s, pol, access.Options{Now: clock.Now})}
}

func (e *env) create(in access.CreateInput) access.Request {
	e.t.Helper()
	c, err := e.svc.Create(e.ctx, in)
	if err != nil {
		e.t.Fatalf("create %+v: %v", in, err)
	}
	return c.Request
}

func (e *env) review(id, approver string, d access.Decision) (access.Request, error) {
	return e.svc.Review(e.ctx, access.ReviewInput{RequestID: id, Approver: approver, Decision: d})
}

func (e *env) mustReview(id, approver string, d access.Decision) access.Request {
	e.t.Helper()
	r, err := e.review(id, approver, d)
	if err != nil {
		e.t.Fatalf("%s %s %s: %v", approver, d, id, err)
	}
	return r
}

func (e *env) ledgerSize() int64 {
	e.t.Helper()
	n, err := e.store.LedgerSize(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// entries returns the event codes of the ledger, in order.
func (e *env) codes() []string {
	e.t.Helper()
	recs, err := e.store.Entries(e.ctx, 0, 100000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(recs))
	for i, r := range recs {
		s, err := audit.Summarize(r.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		out[i] = s.Code
	}
	return out
}

func count(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// weightsRequest is alice's request for the critical weights role.
func weightsRequest() access.CreateInput {
	return access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "eval run 4411", Duration: 2 * time.Hour}
}
