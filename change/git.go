package change

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

// Git runs the real git binary in one repository. Nothing the repository or a caller supplies is
// ever passed where git would read it as an option: object names are checked to be hexadecimal
// ids before they reach a command line, revisions given by people go after --end-of-options, and
// paths come back NUL-separated.
type Git struct {
	// Dir is the repository (a work tree or a bare repository).
	Dir string
	// Env is added to the environment git runs with (os.Environ() first, so that a hook keeps
	// git's quarantine variables and sees the objects being pushed).
	Env []string
}

// ErrConflict is returned by MergeTree when the source does not merge cleanly into the base.
var ErrConflict = errors.New("the merge has conflicts")

var objectID = regexp.MustCompile(`^([0-9a-f]{40}|[0-9a-f]{64})$`)

// IsObjectID reports whether s is a full hexadecimal object id (SHA-1 or SHA-256).
func IsObjectID(s string) bool { return objectID.MatchString(s) }

// IsZero reports whether id is git's all-zero id (a ref that does not exist).
func IsZero(id string) bool { return IsObjectID(id) && strings.Trim(id, "0") == "" }

func (g *Git) cmd(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "git", append([]string{"-c", "core.quotePath=false", "-c", "log.showSignature=false", "-c", "i18n.logOutputEncoding=UTF-8"}, args...)...)
	c.Dir = g.Dir
	c.Env = append(append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "GIT_NO_REPLACE_OBJECTS=1"), g.Env...)
	return c
}

// run runs git and returns its standard output; a failure says what git said.
func (g *Git) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	c := g.cmd(ctx, args...)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.Bytes(), &GitError{Args: args, Code: ee.ExitCode(), Stderr: strings.TrimSpace(errb.String())}
		}
		return nil, fmt.Errorf("run git: %w (is git installed and in PATH?)", err)
	}
	return out.Bytes(), nil
}

// GitError is a git command that exited non-zero.
type GitError struct {
	Args   []string
	Code   int
	Stderr string
}

func (e *GitError) Error() string {
	msg := e.Stderr
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	return fmt.Sprintf("git %s: exit %d: %s", strings.Join(e.Args, " "), e.Code, msg)
}

func (g *Git) line(ctx context.Context, args ...string) (string, error) {
	out, err := g.run(ctx, nil, args...)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

// ResolveCommit resolves a revision a person gave (a branch, a tag, a commit id) to a commit id.
func (g *Git) ResolveCommit(ctx context.Context, rev string) (string, error) {
	if rev == "" || strings.ContainsAny(rev, "\x00\n") {
		return "", fmt.Errorf("revision %q is empty or has a NUL or newline", rev)
	}
	id, err := g.line(ctx, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil || !IsObjectID(id) {
		return "", fmt.Errorf("%q is not a commit in %s: %v", rev, g.Dir, err)
	}
	return id, nil
}

// RefTip returns the commit a ref points to, or "" when the ref does not exist.
func (g *Git) RefTip(ctx context.Context, ref string) (string, error) {
	out, err := g.run(ctx, nil, "for-each-ref", "--format=%(objectname)", "--end-of-options", ref)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if IsObjectID(l) {
			return l, nil
		}
	}
	return "", nil
}

func checkID(what, id string) error {
	if !IsObjectID(id) {
		return fmt.Errorf("%s %q is not a full hexadecimal object id", what, id)
	}
	return nil
}

// Tree returns the tree of a commit.
func (g *Git) Tree(ctx context.Context, commit string) (string, error) {
	if err := checkID("commit", commit); err != nil {
		return "", err
	}
	return g.line(ctx, "rev-parse", "--verify", commit+"^{tree}")
}

// EmptyTree returns the id of the empty tree in this repository's hash.
func (g *Git) EmptyTree(ctx context.Context) (string, error) {
	return g.line(ctx, "hash-object", "-t", "tree", "/dev/null")
}

// MergeTree computes the tree of merging source into base (git merge-tree --write-tree), without
// touching the work tree or any ref. A zero base (a ref to be created) merges into nothing: the
// tree is the source's. Conflicts are ErrConflict.
func (g *Git) MergeTree(ctx context.Context, base, source string) (string, error) {
	if err := checkID("source", source); err != nil {
		return "", err
	}
	if base == "" || IsZero(base) {
		return g.Tree(ctx, source)
	}
	if err := checkID("base", base); err != nil {
		return "", err
	}
	out, err := g.run(ctx, nil, "merge-tree", "--write-tree", "--no-messages", base, source)
	var ge *GitError
	if errors.As(err, &ge) && ge.Code == 1 {
		return "", fmt.Errorf("%w: %s does not merge cleanly into %s; merge the base into the source branch and resolve them first", ErrConflict, short(source), short(base))
	}
	if err != nil {
		return "", err
	}
	tree, _, _ := strings.Cut(string(out), "\n")
	if !IsObjectID(tree) {
		return "", fmt.Errorf("git merge-tree printed %q, not a tree id", tree)
	}
	return tree, nil
}

// ChangedPaths returns the paths that differ between two trees ("" or zero: the empty tree).
func (g *Git) ChangedPaths(ctx context.Context, from, to string) ([]string, error) {
	res, err := g.ChangedPathsBatch(ctx, [][2]string{{from, to}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// ChangedPathsBatch returns the changed paths of every pair of trees with one git process.
func (g *Git) ChangedPathsBatch(ctx context.Context, pairs [][2]string) ([][]string, error) {
	empty := ""
	var in bytes.Buffer
	for _, p := range pairs {
		for i := range p {
			if p[i] == "" || IsZero(p[i]) {
				if empty == "" {
					var err error
					if empty, err = g.EmptyTree(ctx); err != nil {
						return nil, err
					}
				}
				p[i] = empty
			}
			if err := checkID("tree", p[i]); err != nil {
				return nil, err
			}
		}
		fmt.Fprintf(&in, "%s %s\n", p[0], p[1])
	}
	out, err := g.run(ctx, in.Bytes(), "diff-tree", "--stdin", "-r", "-z", "--no-renames", "--no-commit-id")
	if err != nil {
		return nil, err
	}
	// The output is, per pair, a header line "A B\n" and then raw entries ":modes ids status\0path\0".
	res := make([][]string, 0, len(pairs))
	r := bufio.NewReader(bytes.NewReader(out))
	for {
		c, err := r.Peek(1)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if c[0] != ':' {
			if _, err := r.ReadString('\n'); err != nil {
				return nil, fmt.Errorf("git diff-tree: truncated header")
			}
			res = append(res, []string{})
			continue
		}
		if len(res) == 0 {
			return nil, fmt.Errorf("git diff-tree: an entry before any header")
		}
		if _, err := r.ReadString(0); err != nil {
			return nil, fmt.Errorf("git diff-tree: truncated entry")
		}
		path, err := r.ReadString(0)
		if err != nil {
			return nil, fmt.Errorf("git diff-tree: truncated path")
		}
		res[len(res)-1] = append(res[len(res)-1], strings.TrimSuffix(path, "\x00"))
	}
	if len(res) != len(pairs) {
		return nil, fmt.Errorf("git diff-tree answered for %d pairs of trees, not %d", len(res), len(pairs))
	}
	return res, nil
}

// Commit is what a change needs to know of one commit.
type Commit struct {
	ID        string   `json:"id"`
	Parents   []string `json:"parents,omitempty"`
	Tree      string   `json:"-"`
	Author    string   `json:"author"`    // email address
	Committer string   `json:"committer"` // email address
	// CoAuthors are the addresses of every Co-authored-by line of the message, anywhere in it.
	CoAuthors []string `json:"co_authors,omitempty"`
}

// Commits returns the commits reachable from tip and not from base (zero: every commit of tip),
// newest first.
func (g *Git) Commits(ctx context.Context, tip, base string) ([]Commit, error) {
	if err := checkID("tip", tip); err != nil {
		return nil, err
	}
	args := []string{"log", "-z", "--format=%H%n%P%n%T%n%ae%n%ce%n%B", tip}
	if base != "" && !IsZero(base) {
		if err := checkID("base", base); err != nil {
			return nil, err
		}
		args = append(args, "^"+base)
	}
	out, err := g.run(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	return parseLog(out)
}

// AllCommits returns every commit reachable from tip, for offline verification.
func (g *Git) AllCommits(ctx context.Context, tip string) ([]Commit, error) {
	return g.Commits(ctx, tip, "")
}

var coAuthor = regexp.MustCompile(`(?im)^[ \t]*co-authored-by:[^\n<]*<([^>\n]*)>`)

func parseLog(out []byte) ([]Commit, error) {
	var cs []Commit
	for _, rec := range bytes.Split(out, []byte{0}) {
		if len(bytes.TrimSpace(rec)) == 0 {
			continue
		}
		lines := strings.SplitN(string(rec), "\n", 6)
		if len(lines) < 5 || !IsObjectID(lines[0]) {
			return nil, fmt.Errorf("git log printed a record that is not a commit: %.80q", rec)
		}
		c := Commit{ID: lines[0], Tree: lines[2], Author: lines[3], Committer: lines[4]}
		if lines[1] != "" {
			c.Parents = strings.Fields(lines[1])
		}
		if len(lines) == 6 {
			for _, m := range coAuthor.FindAllStringSubmatch(lines[5], -1) {
				c.CoAuthors = append(c.CoAuthors, strings.TrimSpace(m[1]))
			}
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// Parents returns the parents of a commit, first parent first.
func (g *Git) Parents(ctx context.Context, commit string) ([]string, error) {
	if err := checkID("commit", commit); err != nil {
		return nil, err
	}
	line, err := g.line(ctx, "rev-list", "--no-walk", "--parents", commit)
	if err != nil {
		return nil, err
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != commit {
		return nil, fmt.Errorf("git rev-list printed %q for %s", line, short(commit))
	}
	return f[1:], nil
}

// IsAncestor reports whether a is an ancestor of (or equal to) b.
func (g *Git) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	if err := checkID("commit", a); err != nil {
		return false, err
	}
	if err := checkID("commit", b); err != nil {
		return false, err
	}
	_, err := g.run(ctx, nil, "merge-base", "--is-ancestor", a, b)
	var ge *GitError
	if errors.As(err, &ge) && ge.Code == 1 {
		return false, nil
	}
	return err == nil, err
}

// NotesRef is where approvals bundles are published, one note per landed commit.
const NotesRef = "refs/notes/rampart"

// Notes returns the note of every commit that has one under ref, keyed by commit id.
func (g *Git) Notes(ctx context.Context, ref string) (map[string][]byte, error) {
	tip, err := g.RefTip(ctx, ref)
	if err != nil || tip == "" {
		return map[string][]byte{}, err
	}
	out, err := g.run(ctx, nil, "notes", "--ref", ref, "list")
	if err != nil {
		return nil, err
	}
	var blobs, commits []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && IsObjectID(f[0]) && IsObjectID(f[1]) {
			blobs, commits = append(blobs, f[0]), append(commits, f[1])
		}
	}
	contents, err := g.readBlobs(ctx, blobs)
	if err != nil {
		return nil, err
	}
	notes := make(map[string][]byte, len(commits))
	for i, c := range commits {
		notes[c] = contents[i]
	}
	return notes, nil
}

// readBlobs reads blobs with one git cat-file --batch. A blob larger than MaxBundle is read as
// its first MaxBundle+1 bytes (the parser refuses it).
func (g *Git) readBlobs(ctx context.Context, ids []string) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	c := g.cmd(ctx, "cat-file", "--batch")
	c.Stdin = strings.NewReader(strings.Join(ids, "\n") + "\n")
	var errb bytes.Buffer
	c.Stderr = &errb
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(stdout, 1<<16)
	out := make([][]byte, 0, len(ids))
	for range ids {
		header, err := r.ReadString('\n')
		if err != nil {
			_ = c.Wait()
			return nil, fmt.Errorf("git cat-file: %v: %s", err, errb.String())
		}
		var id, typ string
		var size int64
		if n, _ := fmt.Sscanf(header, "%s %s %d", &id, &typ, &size); n != 3 {
			_ = c.Wait()
			return nil, fmt.Errorf("git cat-file: %q", strings.TrimSpace(header))
		}
		body := make([]byte, size+1)
		if _, err := io.ReadFull(r, body); err != nil {
			_ = c.Wait()
			return nil, err
		}
		out = append(out, body[:size])
	}
	return out, c.Wait()
}

// AddNote writes data as the note of commit under ref, replacing any.
func (g *Git) AddNote(ctx context.Context, ref, commit string, data []byte) error {
	if err := checkID("commit", commit); err != nil {
		return err
	}
	c := append([]string{}, g.Env...)
	g2 := &Git{Dir: g.Dir, Env: append(c, "GIT_AUTHOR_NAME=rampart", "GIT_AUTHOR_EMAIL=rampart@localhost", "GIT_COMMITTER_NAME=rampart", "GIT_COMMITTER_EMAIL=rampart@localhost")}
	_, err := g2.run(ctx, data, "notes", "--ref", ref, "add", "-f", "-F", "-", commit)
	return err
}

// FirstParentHistory returns the first-parent chain of tip, newest first, stopping before since
// (exclusive; "" walks to the root), as commits with their parents and trees.
func (g *Git) FirstParentHistory(ctx context.Context, tip, since string) ([]Commit, error) {
	if err := checkID("tip", tip); err != nil {
		return nil, err
	}
	args := []string{"log", "--first-parent", "-z", "--format=%H%n%P%n%T%n%ae%n%ce%n", tip}
	if since != "" {
		if err := checkID("since", since); err != nil {
			return nil, err
		}
		args = append(args, "^"+since)
	}
	out, err := g.run(ctx, nil, args...)
	if err != nil {
		return nil, err
	}
	return parseLog(out)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
