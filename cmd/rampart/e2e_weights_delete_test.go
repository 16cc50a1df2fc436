package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Through the binary: a writer cannot delete (delete is its own action), a holder of the
// deleter role can, and the ledger records both the refusal and the deletion.
func TestWeightsDeleteNeedsDeleter(t *testing.T) {
	addr := freeAddr(t)
	startServer(t, addr, "dev", "--addr", addr, "--data", filepath.Join(t.TempDir(), "data"))
	c := &cli{t: t, addr: addr, env: []string{"RAMPART_CONFIG_DIR=" + t.TempDir(), "RAMPART_TOKEN="}}
	login := func(user string) string {
		return strings.TrimSpace(c.ok("login", "--dev", "--user", user, "--print-token"))
	}
	alice, bob, dave, erin := login("alice"), login("bob"), login("dave"), login("erin")
	approve := func(role string) {
		t.Helper()
		r := c.as(alice, "request", "create", "--role", role, "--reason", "checkpoint housekeeping", "--duration", "30m")
		id := reqID.FindString(r.out)
		if r.code != 0 || id == "" {
			t.Fatalf("request %s: %+v", role, r)
		}
		for _, tok := range []string{bob, dave} {
			if r := c.as(tok, "request", "approve", id); r.code != 0 {
				t.Fatalf("approve %s: %+v", id, r)
			}
		}
	}
	approve("weights-writer-frontier-7")
	file := filepath.Join(t.TempDir(), "model.bin")
	if err := os.WriteFile(file, []byte("checkpoint"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := c.as(alice, "weights", "put", "frontier-7", file); r.code != 0 {
			t.Fatalf("put: %+v", r)
		}
	}

	// The writer's grant does not delete, with or without --version.
	for _, args := range [][]string{{"weights", "rm", "frontier-7"}, {"weights", "rm", "frontier-7", "--version", "1"}} {
		r := c.as(alice, args...)
		if r.code == 0 || !strings.Contains(r.err, "may not delete weights/frontier-7") || !strings.Contains(r.err, "--action delete") {
			t.Fatalf("rampart %s by a writer: %+v", strings.Join(args, " "), r)
		}
	}
	if out := c.as(alice, "weights", "ls").out; strings.Count(out, "ready") != 2 {
		t.Fatalf("versions after refused deletes:\n%s", out)
	}

	// The deleter role, approved like any access to the weights, deletes.
	approve("weights-deleter-frontier-7")
	r := c.as(alice, "weights", "rm", "frontier-7", "--version", "1")
	if r.code != 0 || !strings.Contains(r.out, "Deleted weights/frontier-7 version 1.") {
		t.Fatalf("rm under the deleter role: %+v", r)
	}
	tail := c.as(erin, "audit", "tail", "-n", "100").out
	for _, want := range []string{"weights.denied", "may not delete weights/frontier-7", "weights.delete", "alice deleted weights/frontier-7 version 1"} {
		if !strings.Contains(tail, want) {
			t.Errorf("the ledger lacks %q:\n%s", want, tail)
		}
	}
}
