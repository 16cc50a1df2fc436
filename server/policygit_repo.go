package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"

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

// LoadPolicy reads the *.yaml and *.yml files under dir in commit, with policy.ReadFS's rules
// (names starting with '.' skipped, the file count and size limits), and parses them. A
// symbolic link where a policy file would be is refused: its target is not part of the commit.
func (g *gitDir) LoadPolicy(ctx context.Context, commit, dir string) (*policy.Policy, error) {
	if !isObjectID(commit) {
		return nil, fmt.Errorf("%q is not a full commit id", commit)
	}
	args := []string{"ls-tree", "-r", "-z", "-l", "--full-tree", commit + "^{commit}"}
	prefix := ""
	if d := strings.Trim(path.Clean(dir), "/"); d != "" && d != "." {
		prefix = d + "/"
		args = append(args, "--", prefix)
	}
	out, err := g.git(ctx, nil, args...)
	if err != nil {
		return nil, fmt.Errorf("list commit %s in %s: %w", commit, g.dir, err)
	}
	type entry struct{ name, id string }
	var want []entry
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(rec) == 0 {
			continue
		}
		meta, name, ok := strings.Cut(string(rec), "\t")
		f := strings.Fields(meta)
		if !ok || len(f) != 4 || !strings.HasPrefix(name, prefix) {
			return nil, fmt.Errorf("unexpected git ls-tree line %q", rec)
		}
		rel := strings.TrimPrefix(name, prefix)
		if skipped(rel) || (path.Ext(rel) != ".yaml" && path.Ext(rel) != ".yml") {
			continue
		}
		switch f[0] {
		case "100644", "100755":
		case "120000":
			return nil, fmt.Errorf("%s is a symbolic link in commit %s; policy files must be regular files", name, commit)
		default:
			continue // a submodule is not a file
		}
		size, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected git ls-tree size %q", f[3])
		}
		if size > policy.MaxFileSize {
			return nil, fmt.Errorf("%s: %d bytes is over the %d byte limit for a policy file", name, size, policy.MaxFileSize)
		}
		if len(want) == policy.MaxFiles {
			return nil, fmt.Errorf("more than %d policy files; split the repository or remove stray files", policy.MaxFiles)
		}
		want = append(want, entry{rel, f[2]})
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("no policy files (*.yaml, *.yml) under %q in commit %s", dir, commit)
	}
	ids := make([]string, len(want))
	for i, e := range want {
		ids[i] = e.id
	}
	blobs, err := g.blobs(ctx, ids)
	if err != nil {
		return nil, err
	}
	files := make([]policy.File, len(want))
	for i, e := range want {
		files[i] = policy.File{Name: e.name, Data: blobs[i]}
	}
	return policy.Parse(files)
}

// skipped reports whether a path has a component starting with '.', which policy.ReadFS skips.
func skipped(rel string) bool {
	for _, c := range strings.Split(rel, "/") {
		if strings.HasPrefix(c, ".") {
			return true
		}
	}
	return false
}

// blobs reads blobs with one git cat-file --batch.
func (g *gitDir) blobs(ctx context.Context, ids []string) ([][]byte, error) {
	c := exec.CommandContext(ctx, "git", "-C", g.dir, "cat-file", "--batch")
	c.Env = append(os.Environ(), "LC_ALL=C", "GIT_NO_REPLACE_OBJECTS=1", "GIT_CONFIG_NOSYSTEM=1")
	c.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	var errb bytes.Buffer
	c.Stderr = &errb
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("run git: %w", err)
	}
	r := bufio.NewReader(stdout)
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		header, err := r.ReadString('\n')
		f := strings.Fields(header)
		if err != nil || len(f) != 3 || f[0] != id || f[1] != "blob" {
			_ = c.Wait()
			return nil, fmt.Errorf("git cat-file: unexpected %q for %s: %v %s", strings.TrimSpace(header), id, err, errb.String())
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size > policy.MaxFileSize {
			_ = c.Wait()
			return nil, fmt.Errorf("git cat-file: blob %s has size %q", id, f[2])
		}
		body := make([]byte, size+1)
		if _, err := io.ReadFull(r, body); err != nil {
			_ = c.Wait()
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		out = append(out, body[:size])
	}
	if err := c.Wait(); err != nil {
		return nil, fmt.Errorf("git cat-file: %w: %s", err, errb.String())
	}
	return out, nil
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
