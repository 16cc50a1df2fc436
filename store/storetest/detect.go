package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlstore"
)

// The detection runner on the real store: the cursor moves with the alerts in one transaction
// and only from where it is, so evaluation happens exactly once however the runner crashes,
// restarts or races another replica.

// detectRules are the suite's rules: a threshold per actor, a sequence per actor and an
// ungrouped stateless rule.
func detectRules(t *testing.T) []*policy.DetectionRule {
	t.Helper()
	src := `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: settings}
spec: {admin_group: admins}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [erin]}
---
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: bulk-reads}
spec:
  severity: high
  mitre: [T1530]
  condition: 'event.code == "weights.read"'
  group_by: [actor]
  threshold: {count: 3, window: 10m}
  dedup: 0s
---
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: probe-then-request}
spec:
  severity: medium
  condition: 'event.code in ["egress.denied", "request.create"]'
  group_by: [actor]
  sequence: {within: 30m, steps: ['event.code == "egress.denied"', 'event.code == "request.create"']}
  dedup: 0s
---
apiVersion: rampart.dev/v1alpha1
kind: DetectionRule
metadata: {name: any-refusal}
spec:
  severity: low
  condition: 'event.failed'
  dedup: 0s
`
	p, err := policy.Parse([]policy.File{{Name: "rules.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	return p.DetectionRules
}

// appendEvents appends n random events (actors a0..a4; reads, refusals, requests) in one
// transaction, stamped from at on, one second apart.
func appendDetectEvents(t *testing.T, s *sqlstore.DB, rng *rand.Rand, n int, at time.Time) time.Time {
	t.Helper()
	codes := []string{"weights.read", "weights.read", "egress.denied", "request.create", "policy.load"}
	err := s.Update(context.Background(), func(tx access.Tx) error {
		for i := 0; i < n; i++ {
			at = at.Add(time.Duration(rng.IntN(90)) * time.Second)
			code := codes[rng.IntN(len(codes))]
			e := audit.Event{Code: code, Class: audit.ClassAPIActivity, Activity: audit.ActivityRead, ActivityName: "Read", Time: at,
				Actor: fmt.Sprintf("a%d", rng.IntN(5)), Message: code, Failed: code == "egress.denied"}
			if _, err := tx.Append(context.Background(), e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// firingText is what identifies a firing for these tests: its rule, key and evidence.
func firingText(rule, key string, evidence []int64) string {
	return fmt.Sprintf("%s|%s|%v", rule, key, evidence)
}

// referenceFirings runs one engine, start to end, with no crash, over the ledger's entries.
func referenceFirings(t *testing.T, s *sqlstore.DB, rules []*policy.DetectionRule, from int64) []string {
	t.Helper()
	e, err := detect.NewEngine(rules, detect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.Entries(context.Background(), from, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		ev, err := detect.ParseEntry(r.Seq, r.Data)
		if err != nil {
			t.Fatalf("entry %d: %v", r.Seq, err)
		}
		for _, f := range e.Process(ev) {
			out = append(out, firingText(f.Rule, f.Key, f.Evidence))
		}
	}
	return out
}

// committedFirings reads the detect.alert entries of the ledger, in order.
func committedFirings(t *testing.T, s *sqlstore.DB) []string {
	t.Helper()
	recs, err := s.Entries(context.Background(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		var e struct {
			Metadata struct {
				EventCode string `json:"event_code"`
			} `json:"metadata"`
			Unmapped struct {
				Rule     string  `json:"rule"`
				Key      string  `json:"key"`
				Evidence []int64 `json:"evidence"`
			} `json:"unmapped"`
		}
		if err := json.Unmarshal(r.Data, &e); err != nil {
			t.Fatal(err)
		}
		if e.Metadata.EventCode == "detect.alert" {
			out = append(out, firingText(e.Unmapped.Rule, e.Unmapped.Key, e.Unmapped.Evidence))
		}
	}
	return out
}

// testDetectCommit: the cursor and the alerts commit together, only from where the cursor is.
func testDetectCommit(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	st, err := s.DetectState(ctx)
	if err != nil || st.Cursor != 0 || st.Snapshot != nil || st.SnapshotSeq != 0 {
		t.Fatalf("a new store's detection state: %+v, %v", st, err)
	}
	appendDetectEvents(t, s, rand.New(rand.NewPCG(1, 2)), 3, Epoch)
	f := detect.Firing{Rule: "bulk-reads", Key: "a1", Severity: "high", Evidence: []int64{0, 2}, Count: 2, First: Epoch, Last: Epoch}
	c := detect.Commit{From: 0, To: 3, At: Epoch, Alerts: []detect.AlertEntry{{Firing: f, Event: detect.AlertEvent(f, Epoch)}}, Snapshot: []byte(`{"v":1}`)}
	rec, err := s.CommitDetections(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 1 || rec[0].Seq != 3 || rec[0].Alert.FirstSeq != 3 || rec[0].Alert.State != detect.StateOpen || rec[0].Alert.Rule != "bulk-reads" {
		t.Fatalf("recorded %+v", rec)
	}
	st, err = s.DetectState(ctx)
	if err != nil || st.Cursor != 3 || string(st.Snapshot) != `{"v":1}` || st.SnapshotSeq != 3 {
		t.Fatalf("after a commit: %+v, %v", st, err)
	}
	// The same batch again (a replica that evaluated it too): refused, nothing written.
	if _, err := s.CommitDetections(ctx, c); !errors.Is(err, detect.ErrCursorMoved) {
		t.Fatalf("a second commit from the same cursor: %v, want ErrCursorMoved", err)
	}
	if n, _ := s.LedgerSize(ctx); n != 4 {
		t.Fatalf("ledger size %d after a refused commit, want 4", n)
	}
	if as, _ := s.Alerts(ctx, detect.AlertFilter{}); len(as) != 1 || as[0].Count != 1 {
		t.Fatalf("alerts after a refused commit: %+v", as)
	}
	// A commit whose alert cannot be written moves nothing.
	bad := f
	bad.Rule = "bad\xff"
	c = detect.Commit{From: 3, To: 4, At: Epoch, Alerts: []detect.AlertEntry{{Firing: bad, Event: detect.AlertEvent(bad, Epoch)}}}
	if _, err := s.CommitDetections(ctx, c); err == nil {
		t.Fatal("an alert entry that is not valid UTF-8 was committed")
	}
	if st, _ := s.DetectState(ctx); st.Cursor != 3 {
		t.Fatalf("the cursor moved to %d with a failed commit", st.Cursor)
	}
}

// crashingStore wraps the real store to crash the runner around its commits: before (nothing
// written) or after (written, but the runner never hears).
type crashingStore struct {
	*sqlstore.DB
	rng *rand.Rand
	mu  sync.Mutex
}

var errCrash = errors.New("injected crash")

func (c *crashingStore) CommitDetections(ctx context.Context, cm detect.Commit) ([]detect.Recorded, error) {
	c.mu.Lock()
	roll := c.rng.IntN(6)
	c.mu.Unlock()
	switch roll {
	case 0:
		return nil, errCrash
	case 1:
		if _, err := c.DB.CommitDetections(ctx, cm); err != nil {
			return nil, err
		}
		return nil, errCrash
	}
	return c.DB.CommitDetections(ctx, cm)
}

// testDetectExactlyOnce: a runner that crashes before and after commits and restarts (a new
// runner, state from the store: snapshot plus replay) writes exactly the firings one engine
// writes over the same ledger without any crash, in the same order, each once.
func testDetectExactlyOnce(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	rules := detectRules(t)
	rng := rand.New(rand.NewPCG(7, 11))
	cs := &crashingStore{DB: s, rng: rand.New(rand.NewPCG(3, 5))}
	newRunner := func() *detect.Runner {
		r, err := detect.NewRunner(rules, detect.RunnerOptions{Store: cs, Batch: 1 + rng.IntN(9), SnapshotEvery: 1 + rng.IntN(30), Now: func() time.Time { return Epoch }})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := newRunner()
	at := Epoch
	crashes, restarts := 0, 0
	for round := 0; round < 120; round++ {
		if rng.IntN(3) == 0 {
			at = appendDetectEvents(t, s, rng, 1+rng.IntN(12), at)
		}
		if rng.IntN(10) == 0 {
			r = newRunner() // kill -9 and restart: only the store remains
			restarts++
		}
		if _, err := r.Step(ctx); errors.Is(err, errCrash) {
			crashes++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ { // drain
		n, err := r.Step(ctx)
		if errors.Is(err, errCrash) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if size, _ := s.LedgerSize(ctx); r.Stats().Cursor == size {
				break
			}
		}
		if i > 10000 {
			t.Fatal("the runner does not catch up")
		}
	}
	want, got := referenceFirings(t, s, rules, 0), committedFirings(t, s)
	if len(want) < 10 {
		t.Fatalf("only %d firings: the test exercises too little", len(want))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after %d crashes and %d restarts the ledger's alerts differ from one uninterrupted run:\ngot  %d: %v\nwant %d: %v", crashes, restarts, len(got), got, len(want), want)
	}
	if crashes == 0 || restarts == 0 {
		t.Fatalf("%d crashes, %d restarts: the test exercised neither", crashes, restarts)
	}
}

// testDetectReplicas: two replicas that both believe they evaluate (a stalled lease) still
// write each firing once: the cursor only moves from where it is.
func testDetectReplicas(t *testing.T, h Harness) {
	if h.Shared == nil {
		t.Fatal("the harness has no shared database")
	}
	open := h.Shared(t)
	a, b := open(t), open(t)
	ctx := context.Background()
	rules := detectRules(t)
	rng := rand.New(rand.NewPCG(13, 17))
	appendDetectEvents(t, a, rng, 200, Epoch)
	var wg sync.WaitGroup
	for _, s := range []*sqlstore.DB{a, b} {
		r, err := detect.NewRunner(rules, detect.RunnerOptions{Store: s, Batch: 5, SnapshotEvery: 17})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idle := 0; idle < 3; {
				n, err := r.Step(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					idle++
				} else {
					idle = 0
				}
			}
		}()
	}
	wg.Wait()
	want, got := referenceFirings(t, a, rules, 0), committedFirings(t, a)
	if len(want) < 10 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("two replicas evaluating at once:\ngot  %d: %v\nwant %d: %v", len(got), got, len(want), want)
	}
}
