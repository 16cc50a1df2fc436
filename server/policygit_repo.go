package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"rampart.dev/rampart/internal/gittree"
	"rampart.dev/rampart/policy"
)

// gitDir reads a local repository with the real git binary. Object ids are checked before they
// reach a command line; the policy is read from git's object database, never from a work tree,
// so what is loaded is exactly the commit that was verified.
type gitDir struct{ dir string }

func (g *gitDir) git(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	c := exec.CommandContext(ctx, "git", append([]string{"-C", g.dir, "-c", "core.quotePath=false"}, args...)...)
	c.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_NO_REPLACE_OBJECTS=1", "GIT_CONFIG_NOSYSTEM=1")
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), &gitExit{args: args, code: ee.ExitCode(), stderr: strings.TrimSpace(errb.String())}
		}
		return nil, fmt.Errorf("run git: %w (is git installed and in PATH?)", err)
	}
	return out.Bytes(), nil
}

type gitExit struct {
	args   []string
	code   int
	stderr string
}

func (e *gitExit) Error() string {
	return fmt.Sprintf("git %s: exit %d: %s", strings.Join(e.args, " "), e.code, e.stderr)
}

func (g *gitDir) RefTip(ctx context.Context, ref string) (string, error) {
	out, err := g.git(ctx, nil, "for-each-ref", "--format=%(objectname)", "--end-of-options", ref)
	if err != nil {
		return "", fmt.Errorf("read %s in %s: %w", ref, g.dir, err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if isObjectID(l) {
			return l, nil
		}
	}
	return "", nil
}

func (g *gitDir) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	if !isObjectID(a) || !isObjectID(b) {
		return false, fmt.Errorf("%q or %q is not a full object id", a, b)
	}
	_, err := g.git(ctx, nil, "merge-base", "--is-ancestor", a, b)
	var ge *gitExit
	if errors.As(err, &ge) && ge.code == 1 {
		return false, nil
	}
	return err == nil, err
}

// LoadPolicy reads the policy files under dir in commit with internal/gittree (policy.ReadFS's
// rules: *.yaml and *.yml, names starting with '.' skipped, the count and size limits; a
// symbolic link is refused, its target is not part of the commit) and parses them.
func (g *gitDir) LoadPolicy(ctx context.Context, commit, dir string) (*policy.Policy, error) {
	if !isObjectID(commit) {
		return nil, fmt.Errorf("%q is not a full commit id", commit)
	}
	files, _, err := gittree.Read(ctx, g.dir, commit, dir)
	if err != nil {
		return nil, err
	}
	return policy.Parse(files)
}

// isRemote reports whether a policy_git.repo is a URL (or scp-style address) to fetch.
func isRemote(repo string) bool {
	if strings.Contains(repo, "://") {
		return true
	}
	host, _, ok := strings.Cut(repo, ":")
	return ok && !strings.ContainsAny(host, "/\\") && len(host) > 1
}

// mirror fetches ref and the approvals notes of a remote repository into a bare repository of
// the data directory. The fetched ref is forced: the mirror says what the remote says, and
// advance refuses a rewritten history.
func mirror(ctx context.Context, dir, url, ref string) error {
	g := &gitDir{dir: dir}
	if _, err := os.Stat(path.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if _, err := g.git(ctx, nil, "init", "--bare", "--quiet"); err != nil {
			return err
		}
	}
	if _, err := g.git(ctx, nil, "fetch", "--quiet", "--no-tags", "--end-of-options", url, "+"+ref+":"+ref, "+refs/notes/rampart:refs/notes/rampart"); err != nil {
		// A repository with no approvals yet has no notes ref; fetch the ref alone.
		if _, err2 := g.git(ctx, nil, "fetch", "--quiet", "--no-tags", "--end-of-options", url, "+"+ref+":"+ref); err2 != nil {
			return fmt.Errorf("fetch %s from %s: %w", ref, url, err2)
		}
	}
	return nil
}
