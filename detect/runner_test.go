package detect_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// runnerRules parses rule specs (named r0, r1, …) with the Settings a policy needs.
func runnerRules(t *testing.T, specs ...string) []*policy.DetectionRule {
	t.Helper()
	src := "apiVersion: rampart.dev/v1alpha1\nkind: Settings\nmetadata: {name: s}\nspec: {admin_group: admins}\n---\n" +
		"apiVersion: rampart.dev/v1alpha1\nkind: Group\nmetadata: {name: admins}\nspec: {members: [erin]}\n"
	for i, s := range specs {
		src += "---\napiVersion: rampart.dev/v1alpha1\nkind: DetectionRule\nmetadata: {name: r" + string(rune('0'+i)) + "}\nspec:\n" + s
	}
	p, err := policy.Parse([]policy.File{{Name: "rules.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	return p.DetectionRules
}

func appendRead(t *testing.T, s *sqlstore.DB, actor string, at time.Time) {
	t.Helper()
	err := s.Update(context.Background(), func(tx access.Tx) error {
		_, err := tx.Append(context.Background(), audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead,
			ActivityName: "Read", Time: at, Actor: actor, Message: "read"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// alertRules returns the rules of the store's detect.alert entries, in order.
func alertRules(t *testing.T, s *sqlstore.DB) []string {
	t.Helper()
	as, err := s.Alerts(context.Background(), detect.AlertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(as) - 1; i >= 0; i-- {
		for n := 0; n < as[i].Count; n++ {
			out = append(out, as[i].Rule)
		}
	}
	return out
}

// A policy reload keeps the state of rules whose shape did not change (a reworded description,
// a new severity) and starts reshaped ones afresh.
func TestSetRulesKeepsUnchangedState(t *testing.T) {
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const count3 = "  severity: low\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  threshold: {count: 3, window: 1h}\n  dedup: 0s\n"
	r, err := detect.NewRunner(runnerRules(t, count3, count3), detect.RunnerOptions{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	step := func() {
		t.Helper()
		if _, err := r.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	appendRead(t, s, "alice", t0)
	appendRead(t, s, "alice", t0.Add(time.Second))
	step()
	// r0 only changes severity (same shape: state kept); r1 needs 2 in 30m (reshaped: afresh).
	if err := r.SetRules(runnerRules(t, "  severity: high\n"+count3[len("  severity: low\n"):],
		"  severity: low\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  threshold: {count: 2, window: 30m}\n  dedup: 0s\n")); err != nil {
		t.Fatal(err)
	}
	appendRead(t, s, "alice", t0.Add(2*time.Second))
	step()
	if got := alertRules(t, s); len(got) != 1 || got[0] != "r0" {
		t.Fatalf("after the reload and a third read: alerts of %v; want r0 (its two earlier reads kept) and not r1 (reshaped: one read since)", got)
	}
	appendRead(t, s, "alice", t0.Add(3*time.Second))
	step()
	if got := alertRules(t, s); len(got) != 3 {
		t.Fatalf("after a fourth read: alerts of %v; want r0 again and r1 (two reads since the reload)", got)
	}
	// A restart from the store resumes under the new rules from the snapshot stored with the
	// reload's commit: r1 has two reads in its window and fires on the next.
	r2, err := detect.NewRunner(runnerRules(t, "  severity: high\n"+count3[len("  severity: low\n"):],
		"  severity: low\n  condition: 'event.code == \"weights.read\"'\n  group_by: [actor]\n  threshold: {count: 2, window: 30m}\n  dedup: 0s\n"), detect.RunnerOptions{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	appendRead(t, s, "alice", t0.Add(4*time.Second))
	if _, err := r2.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := alertRules(t, s); len(got) != 5 {
		t.Fatalf("after a restart and a fifth read: alerts of %v; want both rules once more", got)
	}
}
