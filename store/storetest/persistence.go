package storetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
)

func event(code string) audit.Event {
	return audit.Event{Code: code, Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create", Time: Epoch, Actor: "tester"}
}

func testRequestsAndGrants(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	r := access.Request{ID: "req_a", Role: "role-x", Requester: "alice", Beneficiary: "k8s:prod/ml/trainer", Reason: "why",
		Duration: 90 * time.Minute, State: access.Pending, Policy: "p", CreatedAt: Epoch, ExpiresAt: Epoch.Add(time.Hour), Version: 1}
	g := access.Grant{ID: "grt_a", RequestID: "req_a", Requester: "alice", Role: "role-x", Subject: "k8s:prod/ml/trainer", StartsAt: Epoch,
		ExpiresAt: Epoch.Add(time.Hour), State: access.GrantActive, Version: 2}
	err := s.Update(ctx, func(tx access.Tx) error {
		if err := tx.InsertRequest(ctx, r); err != nil {
			return err
		}
		r2 := r
		r2.ID, r2.Requester, r2.Beneficiary, r2.CreatedAt = "req_b", "bob", "bob", Epoch.Add(time.Second)
		if err := tx.InsertRequest(ctx, r2); err != nil {
			return err
		}
		if err := tx.PutReview(ctx, access.Review{RequestID: "req_a", Approver: "bob", Decision: access.Approve, At: Epoch}); err != nil {
			return err
		}
		// A second review by the same approver replaces the first.
		if err := tx.PutReview(ctx, access.Review{RequestID: "req_a", Approver: "bob", Decision: access.Deny, Duration: time.Minute, Comment: "no", At: Epoch}); err != nil {
			return err
		}
		if err := tx.InsertGrant(ctx, g); err != nil {
			return err
		}
		return tx.SetMeta(ctx, "k", "v1")
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Request(ctx, "req_a")
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Fatalf("request round trip:\n got %+v\nwant %+v", got, r)
	}
	if _, err := s.Request(ctx, "req_nope"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("missing request: %v", err)
	}
	revs, err := s.Reviews(ctx, "req_a")
	if err != nil || len(revs) != 1 || revs[0].Decision != access.Deny || revs[0].Duration != time.Minute || revs[0].Comment != "no" {
		t.Fatalf("reviews %+v %v", revs, err)
	}
	gg, err := s.Grant(ctx, "grt_a")
	if err != nil || gg != g {
		t.Fatalf("grant round trip:\n got %+v\nwant %+v (%v)", gg, g, err)
	}
	if v, _ := s.Meta(ctx, "k"); v != "v1" {
		t.Fatalf("meta = %q", v)
	}
	if v, _ := s.Meta(ctx, "absent"); v != "" {
		t.Fatalf("absent meta = %q", v)
	}

	// Filters and pagination.
	mine, _ := s.ListRequests(ctx, access.RequestFilter{Party: "k8s:prod/ml/trainer"})
	if len(mine) != 1 || mine[0].ID != "req_a" {
		t.Fatalf("party filter: %+v", mine)
	}
	page1, _ := s.ListRequests(ctx, access.RequestFilter{Limit: 1})
	if len(page1) != 1 || page1[0].ID != "req_a" {
		t.Fatalf("page 1: %+v", page1)
	}
	page2, _ := s.ListRequests(ctx, access.RequestFilter{Limit: 1, AfterTime: page1[0].CreatedAt, AfterID: page1[0].ID})
	if len(page2) != 1 || page2[0].ID != "req_b" {
		t.Fatalf("page 2: %+v", page2)
	}
	none, _ := s.ListRequests(ctx, access.RequestFilter{States: []access.State{access.Approved, access.Denied}})
	if len(none) != 0 {
		t.Fatalf("state filter: %+v", none)
	}
	active, _ := s.ListGrants(ctx, access.GrantFilter{States: []access.GrantState{access.GrantActive}, Subject: "k8s:prod/ml/trainer"})
	if len(active) != 1 {
		t.Fatalf("grant filter: %+v", active)
	}
	changed, _ := s.ListGrants(ctx, access.GrantFilter{ByVersion: true, ChangedAfter: 1})
	if len(changed) != 1 {
		t.Fatalf("changed-after: %+v", changed)
	}
	if changed, _ := s.ListGrants(ctx, access.GrantFilter{ByVersion: true, ChangedAfter: 2}); len(changed) != 0 {
		t.Fatalf("changed-after 2: %+v", changed)
	}
	// The change feed from the very beginning (version 0 and below) is a filter too.
	if changed, _ := s.ListGrants(ctx, access.GrantFilter{ByVersion: true, ChangedAfter: -1}); len(changed) != 1 {
		t.Fatalf("changed-after -1: %+v", changed)
	}

	// Updating something that does not exist is an error, not a silent no-op.
	err = s.Update(ctx, func(tx access.Tx) error {
		return tx.UpdateGrant(ctx, access.Grant{ID: "grt_missing"})
	})
	if err == nil {
		t.Fatal("update of a missing grant succeeded")
	}
	// Updates change only what they should.
	err = s.Update(ctx, func(tx access.Tx) error {
		g.State, g.EndedAt, g.EndedBy, g.EndReason, g.Version = access.GrantRevoked, Epoch.Add(time.Minute), "bob", "done", 3
		return tx.UpdateGrant(ctx, g)
	})
	if err != nil {
		t.Fatal(err)
	}
	if gg, _ := s.Grant(ctx, "grt_a"); gg != g {
		t.Fatalf("after update:\n got %+v\nwant %+v", gg, g)
	}
}

func testTokens(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	ts := &identity.Tokens{Store: s, Now: func() time.Time { return Epoch }}
	secret, tok, err := ts.Issue(ctx, "alice", identity.KindUser, "laptop", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, identity.TokenPrefix) || strings.Contains(tok.ID, secret[4:10]) {
		t.Fatalf("secret %q / id %q", secret, tok.ID)
	}
	p, err := ts.Verify(ctx, secret)
	if err != nil || p.Subject != "alice" || p.Kind != identity.KindUser {
		t.Fatalf("verify: %+v %v", p, err)
	}
	if _, err := ts.Verify(ctx, secret+"x"); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("wrong secret: %v", err)
	}
	// The secret is not stored anywhere in the database.
	var n int
	if err := s.SQL().QueryRowContext(ctx, s.Rebind(`SELECT COUNT(*) FROM tokens WHERE hash = ? OR id = ? OR description = ?`), secret, secret, secret).Scan(&n); err != nil || n != 0 {
		t.Fatalf("secret found stored (%d rows, %v)", n, err)
	}
	if err := ts.Revoke(ctx, tok.ID, "alice", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Verify(ctx, secret); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("revoked token: %v", err)
	}
	if err := ts.Revoke(ctx, tok.ID, "alice", ""); !errors.Is(err, identity.ErrTokenNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	// Expiry is checked at verification time.
	secret2, _, _ := ts.Issue(ctx, "bob", identity.KindUser, "", "bob", time.Minute)
	later := &identity.Tokens{Store: s, Now: func() time.Time { return Epoch.Add(time.Minute) }}
	if _, err := later.Verify(ctx, secret2); !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	if size, _ := s.LedgerSize(ctx); size != 3 {
		t.Fatalf("ledger has %d entries, want 3 (issue, revoke, issue)", size)
	}

	// Two replicas: a revocation on one is refused by the other once its cache entry is
	// older than the cache TTL, and never later.
	now := Epoch
	clock := func() time.Time { return now }
	a, b := &identity.Tokens{Store: s, Now: clock}, &identity.Tokens{Store: s, Now: clock}
	secret3, tok3, _ := a.Issue(ctx, "carol", identity.KindUser, "", "carol", time.Hour)
	if _, err := a.Verify(ctx, secret3); err != nil {
		t.Fatal(err)
	}
	if err := b.Revoke(ctx, tok3.ID, "carol", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Verify(ctx, secret3); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("revoking replica still accepts the token: %v", err)
	}
	now = now.Add(identity.DefaultCacheTTL)
	if _, err := a.Verify(ctx, secret3); !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("other replica accepts a revoked token after the cache TTL: %v", err)
	}
}

func testLedgerSequenceAndRollback(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	err := s.Update(ctx, func(tx access.Tx) error {
		for i := 0; i < 3; i++ {
			seq, err := tx.Append(ctx, event("test.ok"))
			if err != nil {
				return err
			}
			if seq != int64(i) {
				return fmt.Errorf("seq %d, want %d", seq, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// An error inside the transaction discards its entries and rows.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx access.Tx) error {
		if _, err := tx.Append(ctx, event("test.discarded")); err != nil {
			return err
		}
		if err := tx.InsertRequest(ctx, access.Request{ID: "req_discarded", CreatedAt: Epoch, ExpiresAt: Epoch}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	// A panic inside the transaction also discards it, and the store stays usable.
	func() {
		defer func() { _ = recover() }()
		_ = s.Update(ctx, func(tx access.Tx) error {
			_, _ = tx.Append(ctx, event("test.panicked"))
			panic("crash mid-transaction")
		})
	}()
	if _, err := s.Request(ctx, "req_discarded"); !errors.Is(err, access.ErrNotFound) {
		t.Fatalf("rolled-back request is visible: %v", err)
	}
	recs, err := s.Entries(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d entries after rollbacks, want 3", len(recs))
	}
	for i, r := range recs {
		if r.Seq != int64(i) || !strings.Contains(string(r.Data), `"test.ok"`) {
			t.Fatalf("entry %d: %d %s", i, r.Seq, r.Data)
		}
	}
	// The next append continues the sequence without a gap.
	err = s.Update(ctx, func(tx access.Tx) error {
		seq, err := tx.Append(ctx, event("test.next"))
		if err == nil && seq != 3 {
			err = fmt.Errorf("seq %d after rollbacks, want 3", seq)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Invariant 4: if the ledger entry cannot be written, the change is refused.
func testLedgerFailureRefusesChange(t *testing.T, h Harness) {
	e := newEnv(t, h)
	req := e.create(weightsRequest())
	e.mustReview(req.ID, "bob", access.Approve)
	before := e.ledgerSize()
	h.InjectLedgerFailure(t, e.store)

	// The approval that would activate the grant must fail, and leave no grant behind.
	_, err := e.review(req.ID, "dave", access.Approve)
	if !errors.Is(err, access.ErrUnavailable) {
		t.Fatalf("approval with a failing ledger: %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("error does not tell the user nothing changed: %v", err)
	}
	got, _ := e.store.Request(e.ctx, req.ID)
	if got.State != access.Pending || got.GrantID != "" {
		t.Fatalf("request changed despite ledger failure: %+v", got)
	}
	grants, _ := e.store.ListGrants(e.ctx, access.GrantFilter{})
	if len(grants) != 0 {
		t.Fatalf("grant exists despite ledger failure: %+v", grants)
	}
	revs, _ := e.store.Reviews(e.ctx, req.ID)
	if len(revs) != 1 {
		t.Fatalf("review stored despite ledger failure: %+v", revs)
	}
	// New requests are refused too.
	if _, err := e.svc.Create(e.ctx, weightsRequest()); !errors.Is(err, access.ErrUnavailable) {
		t.Fatalf("create with a failing ledger: %v", err)
	}
	if n, _ := e.store.ListRequests(e.ctx, access.RequestFilter{}); len(n) != 1 {
		t.Fatalf("%d requests stored, want 1", len(n))
	}
	if after := e.ledgerSize(); after != before {
		t.Fatalf("ledger size %d → %d", before, after)
	}
}

// Invariant 5: an edit, deletion or reordering of stored history is detected on open.
func testLedgerTamper(t *testing.T, h Harness) {
	e := newEnv(t, h)
	skey, _, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	pin := audit.FilePin(filepath.Join(t.TempDir(), "checkpoint"))
	open := func() (*audit.Ledger, error) {
		return audit.Open(e.ctx, audit.Options{Store: e.store, SigningKey: skey, Pin: pin})
	}
	for i := 0; i < 4; i++ {
		req := e.create(weightsRequest())
		e.mustReview(req.ID, "bob", access.Approve)
	}
	l, err := open()
	if err != nil {
		t.Fatal(err)
	}
	_, cp, err := l.Checkpoint(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != uint64(e.ledgerSize()) || cp.Size != 8 {
		t.Fatalf("checkpoint size %d, ledger %d", cp.Size, e.ledgerSize())
	}
	if _, err := open(); err != nil {
		t.Fatalf("untouched ledger fails to open: %v", err)
	}
	db := e.store.SQL()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(e.ctx, e.store.Rebind(q), args...); err != nil {
			t.Fatal(err)
		}
	}
	var entry3 string
	if err := db.QueryRowContext(e.ctx, e.store.Rebind(`SELECT entry FROM ledger WHERE seq = ?`), 3).Scan(&entry3); err != nil {
		t.Fatal(err)
	}
	var tamper *audit.TamperError
	var seqErr *audit.SequenceError

	// 1. Edit one entry: bob's approval becomes carol's.
	exec(`UPDATE ledger SET entry = ? WHERE seq = 3`, strings.Replace(entry3, `"bob"`, `"carol"`, 1))
	if _, err := open(); !errors.As(err, &tamper) || tamper.Expected == nil {
		t.Fatalf("edited entry not detected: %v", err)
	}
	exec(`UPDATE ledger SET entry = ? WHERE seq = 3`, entry3)
	if _, err := open(); err != nil {
		t.Fatalf("restored ledger fails: %v", err)
	}

	// 2. Swap two entries (reordering).
	var entry2 string
	_ = db.QueryRowContext(e.ctx, e.store.Rebind(`SELECT entry FROM ledger WHERE seq = ?`), 2).Scan(&entry2)
	exec(`UPDATE ledger SET entry = ? WHERE seq = 2`, entry3)
	exec(`UPDATE ledger SET entry = ? WHERE seq = 3`, entry2)
	if _, err := open(); !errors.As(err, &seqErr) {
		t.Fatalf("reordered entries not detected: %v", err)
	}
	exec(`UPDATE ledger SET entry = ? WHERE seq = 2`, entry2)
	exec(`UPDATE ledger SET entry = ? WHERE seq = 3`, entry3)

	// 3. Delete the newest entry (truncation).
	var last string
	_ = db.QueryRowContext(e.ctx, e.store.Rebind(`SELECT entry FROM ledger WHERE seq = ?`), 7).Scan(&last)
	exec(`DELETE FROM ledger WHERE seq = 7`)
	if _, err := open(); !errors.As(err, &tamper) {
		t.Fatalf("deleted entry not detected: %v", err)
	}
	exec(`INSERT INTO ledger (seq, entry) VALUES (?, ?)`, 7, last)

	// 4. Delete a middle entry.
	exec(`DELETE FROM ledger WHERE seq = 3`)
	if _, err := open(); !errors.As(err, &seqErr) {
		t.Fatalf("gap not detected: %v", err)
	}
	exec(`INSERT INTO ledger (seq, entry) VALUES (?, ?)`, 3, entry3)

	// 5. Delete the checkpoints from the database: the pinned copy still catches it.
	exec(`DELETE FROM checkpoints`)
	if _, err := open(); !errors.As(err, &tamper) {
		t.Fatalf("deleted checkpoints not detected: %v", err)
	}
	// 6. A checkpoint signed by another key is not accepted.
	otherKey, _, _ := audit.GenerateKey("rampart-test")
	other, err := audit.Open(e.ctx, audit.Options{Store: e.store, SigningKey: otherKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Checkpoint(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(e.ctx, audit.Options{Store: e.store, SigningKey: skey}); !errors.As(err, &tamper) {
		t.Fatalf("foreign checkpoint accepted: %v", err)
	}
}

// Concurrent approvals from several approvers activate exactly one grant.
func testConcurrentApprovals(t *testing.T, h Harness) {
	e := newEnv(t, h)
	for round := 0; round < 5; round++ {
		req := e.create(weightsRequest())
		approvers := []string{"bob", "carol", "dave", "bob", "dave", "carol", "dave", "bob"}
		var wg sync.WaitGroup
		errs := make(chan error, len(approvers))
		start := make(chan struct{})
		for _, a := range approvers {
			wg.Add(1)
			go func(a string) {
				defer wg.Done()
				<-start
				_, err := e.review(req.ID, a, access.Approve)
				// Late approvals find the request approved: a conflict, never a second grant.
				if err != nil && !errors.Is(err, access.ErrConflict) {
					errs <- fmt.Errorf("%s: %w", a, err)
				}
			}(a)
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, _ := e.store.Request(e.ctx, req.ID)
		if got.State != access.Approved {
			t.Fatalf("round %d: request %s", round, got.State)
		}
		grants, _ := e.store.ListGrants(e.ctx, access.GrantFilter{RequestID: req.ID})
		if len(grants) != 1 {
			t.Fatalf("round %d: %d grants activated, want exactly 1", round, len(grants))
		}
	}
	if n := count(e.codes(), "grant.activate"); n != 5 {
		t.Fatalf("%d grant.activate entries, want 5", n)
	}
}

// Many concurrent writers still produce a gapless ledger that verifies.
func testConcurrentWriters(t *testing.T, h Harness) {
	e := newEnv(t, h)
	var wg sync.WaitGroup
	const n = 40
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Four requesters, each well under the cap on pending requests.
			in := weightsRequest()
			in.Requester = []string{"alice", "bob", "carol", "dave"}[i%4]
			if _, err := e.svc.Create(e.ctx, in); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	skey, _, _ := audit.GenerateKey("rampart-test")
	l, err := audit.Open(e.ctx, audit.Options{Store: e.store, SigningKey: skey})
	if err != nil {
		t.Fatalf("ledger after concurrent writes: %v", err)
	}
	if l.Size() != n {
		t.Fatalf("ledger size %d, want %d", l.Size(), n)
	}
}

// AppendOnce: many writers racing on one key append exactly one entry; another key appends its
// own; and when the ledger cannot be written, the key is not remembered either.
func testAppendOnce(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	e := audit.Event{Code: "kube.drift", Class: audit.ClassUserAccessManagement, Severity: audit.SeverityHigh,
		Time: time.Unix(1_800_000_000, 0), Actor: audit.SystemActor, Message: "binding research/by-hand binds cluster-admin"}
	var wg sync.WaitGroup
	var appended atomic.Int32
	for range 20 {
		wg.Go(func() {
			ok, err := s.AppendOnce(ctx, "kube.drift/uid-1", e)
			if err != nil {
				t.Error(err)
			}
			if ok {
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	if appended.Load() != 1 {
		t.Fatalf("%d writers appended under one key", appended.Load())
	}
	if ok, err := s.AppendOnce(ctx, "kube.drift/uid-2", e); err != nil || !ok {
		t.Fatalf("another key: %v, %v", ok, err)
	}
	if ok, err := s.AppendOnce(ctx, "kube.drift/uid-1", e); err != nil || ok {
		t.Fatalf("the first key again: %v, %v", ok, err)
	}
	if n, err := s.LedgerSize(ctx); err != nil || n != 2 {
		t.Fatalf("ledger size %d (%v), want 2", n, err)
	}
	if _, err := s.AppendOnce(ctx, "", e); err == nil {
		t.Fatal("an empty key was accepted")
	}
	h.InjectLedgerFailure(t, s)
	if ok, err := s.AppendOnce(ctx, "kube.drift/uid-3", e); err == nil || ok {
		t.Fatalf("with the ledger failing: %v, %v", ok, err)
	}
	if v, err := s.Meta(ctx, "once:kube.drift/uid-3"); err != nil || v != "" {
		t.Fatalf("the key was remembered without its entry: %q, %v", v, err)
	}
}

// Leases: one holder at a time; renewal by the holder; taken over only after expiry; given up
// on release; and of many racing for a free lease, exactly one wins.
func testLeases(t *testing.T, h Harness) {
	ctx := context.Background()
	s := h.New(t)
	t0 := time.Unix(1_800_000_000, 0)
	const ttl = 15 * time.Second
	take := func(holder string, at time.Time) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, "jobs", holder, ttl, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !take("a", t0) {
		t.Fatal("a free lease was not taken")
	}
	if take("b", t0.Add(time.Second)) {
		t.Fatal("b took a lease a holds")
	}
	if !take("a", t0.Add(10*time.Second)) {
		t.Fatal("a could not renew")
	}
	if take("b", t0.Add(20*time.Second)) {
		t.Fatal("b took the lease before a's renewal ran out")
	}
	if !take("b", t0.Add(25*time.Second)) {
		t.Fatal("b could not take an expired lease")
	}
	if take("a", t0.Add(26*time.Second)) {
		t.Fatal("a renewed a lease b took over")
	}
	if err := s.ReleaseLease(ctx, "jobs", "a"); err != nil {
		t.Fatal(err)
	}
	if take("a", t0.Add(27*time.Second)) {
		t.Fatal("a's release of a lease it does not hold freed it")
	}
	if err := s.ReleaseLease(ctx, "jobs", "b"); err != nil {
		t.Fatal(err)
	}
	if !take("a", t0.Add(28*time.Second)) {
		t.Fatal("a released lease was not taken")
	}
	if _, err := s.AcquireLease(ctx, "", "a", ttl, t0); err == nil {
		t.Fatal("a lease without a name was taken")
	}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			ok, err := s.AcquireLease(ctx, "race", fmt.Sprintf("r%d", i), ttl, t0)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 20 racers hold the lease", won.Load())
	}
}
