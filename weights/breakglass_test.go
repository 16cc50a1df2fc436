package weights_test

import (
	"bytes"
	"io"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/demo"
)

// A read under a break-glass grant says so in its ledger entry (unmapped.break_glass), which
// detection pages on; a read under an approved grant does not.
func TestReadUnderBreakGlassRecorded(t *testing.T) {
	pol := fstest.MapFS{}
	if err := fs.WalkDir(demo.Policy(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), p)
		if p == "approvals.yaml" {
			// The demo's weights approval policy allows no break-glass; this one does.
			b = []byte(strings.Replace(string(b), "break_glass:\n    allowed: false", "break_glass:\n    allowed: true\n    max_duration: 1h", 1))
		}
		pol[p] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, envOptions{policy: pol})
	w := e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(random(1000))); err != nil {
		t.Fatal(err)
	}
	read := func(who string) map[string]any {
		dl, err := e.v.Get(e.ctx, person(who), "frontier-7", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, dl); err != nil {
			t.Fatal(err)
		}
		if err := dl.Close(); err != nil {
			t.Fatal(err)
		}
		return e.lastEntry("weights.read")["unmapped"].(map[string]any)
	}
	if d := read("alice"); d["break_glass"] != nil {
		t.Errorf("a read under an approved grant: %v", d)
	}
	if _, err := e.svc.Revoke(e.ctx, w.ID, "dave", "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(e.ctx, access.CreateInput{Requester: "alice", Role: "weights-reader-frontier-7", Reason: "incident 7", Duration: time.Hour, BreakGlass: true}); err != nil {
		t.Fatal(err)
	}
	if d := read("alice"); d["break_glass"] != true || d["grant_id"] == "" {
		t.Errorf("a read under a break-glass grant: %v", d)
	}
}

// A read records where the reader was (client_ip, and its network: the /24 or the IPv6 /64), so
// detection can tell a workload reading from a network it never used.
func TestReadRecordsClientNetwork(t *testing.T) {
	e := newEnv(t)
	e.grant("alice", "weights-writer-frontier-7", time.Hour)
	if _, err := e.v.Put(e.ctx, person("alice"), "frontier-7", bytes.NewReader(random(1000))); err != nil {
		t.Fatal(err)
	}
	for ip, network := range map[string]string{"10.1.2.3": "10.1.2.0/24", "::ffff:192.0.2.9": "192.0.2.0/24", "2001:db8:1:2:3::4": "2001:db8:1:2::/64"} {
		p := person("alice")
		p.IP = ip
		dl, err := e.v.Get(e.ctx, p, "frontier-7", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, dl)
		_ = dl.Close()
		d := e.lastEntry("weights.read")["unmapped"].(map[string]any)
		if d["network"] != network || d["client_ip"] == nil {
			t.Errorf("read from %s: %v, want network %s", ip, d, network)
		}
	}
}
