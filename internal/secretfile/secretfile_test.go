package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o400, true}, {0o604, false}, {0o644, false}, {0o666, false}} {
		if err := Check(write("k", c.mode), "key"); (err == nil) != c.ok {
			t.Errorf("mode %v: %v", c.mode, err)
		}
	}
	// Group-readable: only when root owns the file.
	p := write("group", 0o440)
	root := os.Geteuid() == 0
	if err := Check(p, "ledger signing key"); (err == nil) != root {
		t.Errorf("group-readable, owned by uid %d: %v", os.Geteuid(), err)
	}
	if root {
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		err := Check(p, "ledger signing key")
		if err == nil || !strings.Contains(err.Error(), "not owned by root") || !strings.Contains(err.Error(), p) {
			t.Errorf("group-readable, owned by nobody: %v", err)
		}
	} else {
		t.Log("not root: the root-owned case is checked where the tests run as root (CI)")
	}
	// Through a symlink, as a Secret volume presents its files.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", 0o644), link); err != nil {
		t.Fatal(err)
	}
	if err := Check(link, "key"); err == nil {
		t.Error("a world-readable key behind a symlink was accepted")
	}
	if err := Check(filepath.Join(dir, "missing"), "key"); err == nil {
		t.Error("a missing file was accepted")
	}
}
