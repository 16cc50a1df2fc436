package weights_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/weights"
)

// A grant to write cannot delete: delete is its own action. Before, Delete asked for write, so
// whoever could store a checkpoint could destroy every stored version. The refusal and the
// deletion are both in the ledger.
func TestWriterCannotDelete(t *testing.T) {
	e := newEnv(t)
	alice := person("alice")
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	for _, s := range []string{"v1", "v2"} {
		if _, err := e.v.Put(e.ctx, alice, "frontier-7", strings.NewReader(s)); err != nil {
			t.Fatal(err)
		}
	}
	for _, version := range []uint64{0, 1} {
		_, err := e.v.Delete(e.ctx, alice, "frontier-7", version)
		var denied *weights.Denied
		if !errors.As(err, &denied) || denied.Action != weights.ActionDelete ||
			!strings.Contains(err.Error(), "rampart request create --resource weights/frontier-7 --action delete") {
			t.Fatalf("a writer deleted version %d: %v", version, err)
		}
	}
	denied := e.lastEntry("weights.denied")
	if d := denied["unmapped"].(map[string]any); d["action"] != "delete" {
		t.Fatalf("refusal entry: %v", denied)
	}
	for v := uint64(1); v <= 2; v++ {
		dl, err := e.v.Get(e.ctx, alice, "frontier-7", v)
		if err != nil {
			t.Fatalf("version %d after a refused delete: %v", v, err)
		}
		dl.Close()
	}

	// The deleter role, under its own approval, deletes; its holder sees what it may delete.
	g := e.grant("alice", "weights-deleter-frontier-7", time.Hour)
	gone, err := e.v.Delete(e.ctx, alice, "frontier-7", 1)
	if err != nil || len(gone) != 1 || gone[0].Version != 1 {
		t.Fatalf("delete under the deleter role: %v %v", gone, err)
	}
	del := e.lastEntry("weights.delete")
	if d := del["unmapped"].(map[string]any); d["grant_id"] != g.ID || d["version"].(float64) != 1 {
		t.Fatalf("delete entry: %v", del)
	}
	// Someone holding only the deleter role still sees the versions it may delete.
	e.grant("erin", "weights-deleter-frontier-7", time.Hour)
	list, err := e.v.List(e.ctx, person("erin"), false)
	if err != nil || len(list) != 2 || list[0].State != weights.StateDeleted || list[1].State != weights.StateReady {
		t.Fatalf("a deleter's list: %+v %v", list, err)
	}
}

// The demo gives deletion only to the person who asks, for at most an hour, never renewed: a
// writer's long grant, or a workload, never holds it.
func TestDemoDeleterRoleIsNarrow(t *testing.T) {
	e := newEnv(t)
	for _, in := range []access.CreateInput{
		{Requester: "alice", Role: "weights-deleter-frontier-7", Reason: "prune", Duration: 2 * time.Hour},
		{Requester: "alice", Beneficiary: "k8s:prod/ml/trainer", Role: "weights-deleter-frontier-7", Reason: "prune", Duration: time.Hour},
	} {
		if _, err := e.svc.Create(e.ctx, in); err == nil || !strings.Contains(err.Error(), "deleting frontier-7 versions is granted only to the person who asks") {
			t.Errorf("request %+v: %v", in, err)
		}
	}
	g := e.grant("alice", "weights-deleter-frontier-7", time.Hour)
	if _, err := e.svc.Renew(e.ctx, g.ID, "alice", time.Hour, "more pruning"); err == nil || !strings.Contains(err.Error(), "never renewed") {
		t.Errorf("renewal of the deleter role: %v", err)
	}
}
