package gittree

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/policy"
)

// repo makes a Git repository in a temporary directory whose first commit holds the demo
// policy under policy/, and returns it.
func repo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	run(t, dir, "init", "-q", "-b", "main")
	files, err := policy.ReadFS(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		write(t, filepath.Join(dir, "policy", f.Name), string(f.Data))
	}
	write(t, filepath.Join(dir, "docs", "README.md"), "not policy\n")
	run(t, dir, "add", "-A")
	run(t, dir, "commit", "-q", "-m", "policy")
	return dir
}

func run(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A commit's policy is the policy of its checkout: the same files, the same digest.
func TestReadMatchesTheCheckout(t *testing.T) {
	dir := repo(t)
	// Files policy.ReadFS skips are skipped here too.
	write(t, filepath.Join(dir, "policy", ".hidden", "x.yaml"), "garbage: [")
	write(t, filepath.Join(dir, "policy", ".dot.yaml"), "garbage: [")
	write(t, filepath.Join(dir, "policy", "notes.txt"), "garbage: [")
	run(t, dir, "add", "-A")
	run(t, dir, "commit", "-q", "-m", "stray files")
	files, src, err := Read(context.Background(), dir, "main", "policy/")
	if err != nil {
		t.Fatal(err)
	}
	fromGit, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := policy.Load(os.DirFS(filepath.Join(dir, "policy")))
	if err != nil {
		t.Fatal(err)
	}
	if fromGit.Digest != fromDir.Digest {
		t.Fatalf("digest from git %s, from the checkout %s", fromGit.Digest, fromDir.Digest)
	}
	if src.Commit != run(t, dir, "rev-parse", "HEAD") || src.Dir != "policy" {
		t.Fatalf("source %+v", src)
	}
}

// The policy of an older commit is read from the commit, whatever the checkout holds now.
func TestReadAnOlderCommit(t *testing.T) {
	dir := repo(t)
	first := run(t, dir, "rev-parse", "HEAD")
	write(t, filepath.Join(dir, "policy", "groups.yaml"), "changed: [")
	files, _, err := Read(context.Background(), dir, first, "policy")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse(files); err != nil {
		t.Fatalf("the commit's policy, not the work tree's: %v", err)
	}
}

func TestReadRefuses(t *testing.T) {
	dir := repo(t)
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "policy", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "add", "-A")
	run(t, dir, "commit", "-q", "-m", "a link")
	for _, c := range []struct{ rev, dir, want string }{
		{"main", "policy", "symbolic link"},
		{"--output=/tmp/x", "policy", "may not start with '-'"},
		{"no-such-branch", "policy", "is not a commit"},
		{"main", "nowhere", "has no directory nowhere"},
		{"main", "../outside", "inside the repository"},
		{"main", "/etc", "inside the repository"},
		{"main", "docs", "no policy files"},
	} {
		_, _, err := Read(context.Background(), dir, c.rev, c.dir)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Read(%q, %q) = %v, want an error with %q", c.rev, c.dir, err, c.want)
		}
	}
}

func TestParseLsTree(t *testing.T) {
	oid := strings.Repeat("a", 40)
	out := "100644 blob " + oid + "     123\tpolicy/a b.yaml\x00" +
		"160000 commit " + oid + "       -\tsub\x00" +
		"120000 blob " + oid + "      11\tpolicy/l.yaml\x00"
	got, err := ParseLsTree([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Path != "policy/a b.yaml" || got[0].Size != 123 || got[1].Size != -1 || got[2].Mode != "120000" {
		t.Fatalf("%+v", got)
	}
	for _, bad := range []string{"100644 blob " + oid + " 1\tx", "100644 blob xyz 1\tx\x00", "100644 blob " + oid + " 1\x00", "blob " + oid + " 1\tx\x00", "100644 blob " + oid + " -5\tx\x00"} {
		if _, err := ParseLsTree([]byte(bad)); err == nil {
			t.Errorf("ParseLsTree(%q) accepted", bad)
		}
	}
}

func FuzzParseLsTree(f *testing.F) {
	oid := strings.Repeat("0", 40)
	f.Add([]byte("100644 blob " + oid + " 12\tpolicy/a.yaml\x00"))
	f.Add([]byte("160000 commit " + oid + " -\tsub\x00"))
	f.Add([]byte("\x00\t\x00"))
	f.Fuzz(func(t *testing.T, out []byte) {
		entries, err := ParseLsTree(out)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Path == "" || e.Size < -1 || !isHex(e.OID) {
				t.Fatalf("accepted %+v", e)
			}
		}
		Select(entries)
	})
}
