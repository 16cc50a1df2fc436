// Package changetest holds what the tests of guarded change share (package change, the store
// conformance suite, the end-to-end tests): a policy with a protected repository, and helpers
// that drive the real git binary.
package changetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Policy is a policy with one protected repository, infra: every update of main (or a release
// branch) needs one maintainer; changes under deploy/ also need one security engineer, and
// changes under policy/ one maintainer and one security engineer (two groups). Repository other
// has the same main rule. service:git is their Git server.
const Policy = `apiVersion: rampart.dev/v1alpha1
kind: Settings
metadata: {name: s}
spec: {admin_group: admins}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: admins}
spec: {members: [erin]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: maintainers}
spec: {members: [alice, bob, carol]}
---
apiVersion: rampart.dev/v1alpha1
kind: Group
metadata: {name: security}
spec: {members: [dave, frank]}
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: one-maintainer}
spec:
  steps: [{name: maintainer, from: [maintainers], count: 1}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: one-security}
spec:
  steps: [{name: security, from: [security], count: 1}]
---
apiVersion: rampart.dev/v1alpha1
kind: ApprovalPolicy
metadata: {name: two-groups}
spec:
  steps:
  - {name: maintainer, from: [maintainers], count: 1}
  - {name: security, from: [security], count: 1}
---
apiVersion: rampart.dev/v1alpha1
kind: Repository
metadata: {name: infra}
spec:
  refs:
  - {ref: refs/heads/main, approval: one-maintainer}
  - {ref: refs/heads/release/*, approval: one-maintainer}
  paths:
  - {path: deploy/**, approval: one-security}
  - {path: policy/**, approval: two-groups}
  email_domains: [example.com]
  git_servers: ["service:git"]
---
apiVersion: rampart.dev/v1alpha1
kind: Repository
metadata: {name: other}
spec:
  refs:
  - {ref: refs/heads/main, approval: one-maintainer}
  email_domains: [example.com]
  git_servers: ["service:git"]
`

// Git runs git in dir with a fixed identity and clock-independent settings, failing the test on
// error, and returns its trimmed output. Extra environment (GIT_AUTHOR_EMAIL=…) goes in env.
func Git(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	c := exec.Command("git", args...)
	c.Dir = dir
	c.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Alice", "GIT_AUTHOR_EMAIL=alice@example.com", "GIT_COMMITTER_NAME=Alice", "GIT_COMMITTER_EMAIL=alice@example.com")
	c.Env = append(c.Env, env...)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// As is the environment of a commit authored and committed by user@example.com.
func As(user string) []string {
	return []string{"GIT_AUTHOR_NAME=" + user, "GIT_AUTHOR_EMAIL=" + user + "@example.com", "GIT_COMMITTER_NAME=" + user, "GIT_COMMITTER_EMAIL=" + user + "@example.com"}
}

// Write writes files (path → content) under dir, creating directories.
func Write(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Repo makes a work tree in dir with one root commit on main (README), and returns dir.
func Repo(t testing.TB, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, nil, "init", "-q", "-b", "main")
	Write(t, dir, map[string]string{"README": "infra\n"})
	Git(t, dir, nil, "add", "-A")
	Git(t, dir, nil, "commit", "-q", "-m", "root")
	return dir
}

// Commit writes files and commits them on the current branch as user, with message, and returns
// the commit id.
func Commit(t testing.TB, dir, user, message string, files map[string]string) string {
	t.Helper()
	Write(t, dir, files)
	Git(t, dir, nil, "add", "-A")
	Git(t, dir, As(user), "commit", "-q", "-m", message)
	return Git(t, dir, nil, "rev-parse", "HEAD")
}
