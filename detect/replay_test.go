package detect

import (
	"testing"
	"time"

	"rampart.dev/rampart/audit"
)

// A firing rebuilt from its detect.alert entry has the firing's id, so a response recorded for
// the one is found for the other.
func TestFiringFromEntry(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	f := Firing{Rule: "bulk-weight-reads", Key: "alice", Subject: "alice", Severity: "high", Mitre: []string{"T1530"},
		Evidence: []int64{3, 9, 1 << 40}, Count: 120, First: at, Last: at.Add(time.Minute), Mode: ModeOn, Actions: []string{ActionRevokeGrant}}
	b, err := audit.Encode(77, AlertEvent(f, at))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := FiringFromEntry(b)
	if !ok || FiringID(g) != FiringID(f) || g.Mode != ModeOn || len(g.Actions) != 1 || g.Subject != "alice" {
		t.Fatalf("rebuilt %+v (ok %v) from %s", g, ok, b)
	}
	for _, bad := range []string{`{}`, `{"metadata":{"event_code":"grant.revoke"},"unmapped":{"rule":"x"}}`, `not json`,
		`{"metadata":{"event_code":"detect.alert"},"unmapped":{"rule":"x","evidence":[1.5],"count":1,"first":"2026-01-01T00:00:00Z","last":"2026-01-01T00:00:00Z"}}`} {
		if _, ok := FiringFromEntry([]byte(bad)); ok {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// FuzzFiringFromEntry: entries read back from the store never make it panic.
func FuzzFiringFromEntry(f *testing.F) {
	f.Add([]byte(`{"metadata":{"event_code":"detect.alert"},"unmapped":{"rule":"r","evidence":[1],"count":1,"first":"2026-01-01T00:00:00Z","last":"2026-01-01T00:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, b []byte) { FiringFromEntry(b) })
}
