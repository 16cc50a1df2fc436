// Package gittree reads the policy files of one commit of a local Git checkout through the
// real git binary, into memory. Nothing from the repository is written to disk, and no path
// from the repository is ever used as a path on this machine: names only label the files in
// messages and in the policy's digest. Symbolic links are refused (their target is text chosen
// by whoever committed them) and submodules are not entered.
//
// The files read are those policy.ReadFS would read from a checkout of the same directory (the
// same names, so the same policy digest): *.yaml and *.yml, skipping names that start with '.',
// within policy.MaxFiles and policy.MaxFileSize.
package gittree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"

	"rampart.dev/rampart/policy"
)

// Entry is one blob of a tree as `git ls-tree -r -l -z` lists it.
type Entry struct {
	Mode string // 100644, 100755, 120000 (a symbolic link), 160000 (a submodule)
	Type string // blob, tree, commit
	OID  string
	Size int64  // -1 when git prints "-" (a submodule)
	Path string // relative to the tree listed, with '/' separators
}

// ParseLsTree parses the output of `git ls-tree -r -l -z`: records
// "<mode> SP <type> SP <object> SP+ <size> TAB <path>", each ended by NUL.
func ParseLsTree(out []byte) ([]Entry, error) {
	var entries []Entry
	for len(out) > 0 {
		rec, rest, ok := bytes.Cut(out, []byte{0})
		if !ok {
			return nil, fmt.Errorf("git ls-tree: a record is not ended by NUL: %.80q", rec)
		}
		out = rest
		meta, p, ok := strings.Cut(string(rec), "\t")
		if !ok || p == "" {
			return nil, fmt.Errorf("git ls-tree: a record has no path: %.80q", rec)
		}
		f := strings.Fields(meta)
		if len(f) != 4 {
			return nil, fmt.Errorf("git ls-tree: a record does not have mode, type, object and size: %.80q", rec)
		}
		size := int64(-1)
		if f[3] != "-" {
			n, err := strconv.ParseInt(f[3], 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("git ls-tree: size %q of %q is not a number", f[3], p)
			}
			size = n
		}
		if !isHex(f[2]) {
			return nil, fmt.Errorf("git ls-tree: object %q of %q is not an object id", f[2], p)
		}
		entries = append(entries, Entry{Mode: f[0], Type: f[1], OID: f[2], Size: size, Path: p})
	}
	return entries, nil
}

func isHex(s string) bool {
	if len(s) < 40 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Source says where a policy was read from.
type Source struct {
	Repo   string // the checkout, as given
	Rev    string // the revision, as given
	Commit string // the commit it names
	Dir    string // the policy directory in the commit's tree ("" for the root)
}

func (s Source) String() string {
	where := s.Commit
	if len(where) > 12 {
		where = where[:12]
	}
	if s.Dir != "" {
		where += ":" + s.Dir
	}
	return fmt.Sprintf("%s (commit %s of %s)", s.Rev, where, s.Repo)
}

// git runs git in repo with fixed arguments and returns its standard output. The repository's
// configuration cannot make it run a filesystem monitor.
func git(ctx context.Context, repo string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", repo, "-c", "core.fsmonitor=false"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if errors.Is(err, exec.ErrNotFound) {
			msg = "git is not installed (it reads commits of the policy repository): install git"
		}
		if msg == "" {
			return nil, fmt.Errorf("git %s: %v", args[0], err)
		}
		return nil, fmt.Errorf("git %s: %v: %s", args[0], err, msg)
	}
	return out, nil
}

// Resolve returns the commit that rev names in the checkout repo.
func Resolve(ctx context.Context, repo, rev string) (string, error) {
	if rev == "" || strings.HasPrefix(rev, "-") || strings.ContainsAny(rev, "\x00\n") {
		return "", fmt.Errorf("%q is not a revision: give a commit id, branch or tag (it may not start with '-')", rev)
	}
	out, err := git(ctx, repo, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("%q is not a commit in the Git checkout %s (%v): give a commit id, branch or tag", rev, repo, err)
	}
	commit := strings.TrimSpace(string(out))
	if !isHex(commit) {
		return "", fmt.Errorf("git rev-parse %q printed %q, not a commit id", rev, commit)
	}
	return commit, nil
}

// cleanDir checks a directory inside the repository given on the command line.
func cleanDir(dir string) (string, error) {
	if dir == "" || dir == "." {
		return "", nil
	}
	c := path.Clean(strings.TrimSuffix(dir, "/"))
	if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") || strings.ContainsAny(c, "\x00\n:") {
		return "", fmt.Errorf("--path %q must be a directory inside the repository, relative to its root (e.g. policy)", dir)
	}
	return c, nil
}

// Read reads the policy files of directory dir ("" for the root) of the commit rev names in
// the checkout repo.
func Read(ctx context.Context, repo, rev, dir string) ([]policy.File, Source, error) {
	src := Source{Repo: repo, Rev: rev}
	d, err := cleanDir(dir)
	if err != nil {
		return nil, src, err
	}
	src.Dir = d
	if src.Commit, err = Resolve(ctx, repo, rev); err != nil {
		return nil, src, err
	}
	files, err := readTree(ctx, repo, src.Commit, d, src)
	return files, src, err
}

// ReadTree reads the policy files of directory dir of a tree (a full object id: a merge tree
// that no commit has yet) in the checkout repo, as Read does for a commit.
func ReadTree(ctx context.Context, repo, tree, dir string) ([]policy.File, Source, error) {
	src := Source{Repo: repo, Rev: tree, Commit: tree}
	d, err := cleanDir(dir)
	if err != nil {
		return nil, src, err
	}
	src.Dir = d
	if !isHex(tree) {
		return nil, src, fmt.Errorf("%q is not a tree id", tree)
	}
	if t, err := git(ctx, repo, "cat-file", "-t", tree); err != nil || strings.TrimSpace(string(t)) != "tree" {
		return nil, src, fmt.Errorf("%s is not a tree in the Git checkout %s (%v)", tree, repo, err)
	}
	files, err := readTree(ctx, repo, tree, d, src)
	return files, src, err
}

// readTree reads the policy files under d of treeish (a commit or tree id).
func readTree(ctx context.Context, repo, id, d string, src Source) ([]policy.File, error) {
	treeish := id
	if d != "" {
		treeish += ":" + d
		if t, err := git(ctx, repo, "cat-file", "-t", treeish); err != nil || strings.TrimSpace(string(t)) != "tree" {
			return nil, fmt.Errorf("%s has no directory %s: check --path", id[:12], d)
		}
	}
	out, err := git(ctx, repo, "ls-tree", "-r", "-l", "-z", "--end-of-options", treeish)
	if err != nil {
		return nil, err
	}
	entries, err := ParseLsTree(out)
	if err != nil {
		return nil, err
	}
	var files []policy.File
	for _, e := range Select(entries) {
		if e.Mode == "120000" {
			return nil, fmt.Errorf("%s is a symbolic link in %s: policy files in Git must be regular files", e.Path, id[:12])
		}
		if e.Size > policy.MaxFileSize {
			return nil, fmt.Errorf("%s: %d bytes is over the %d byte limit for a policy file", e.Path, e.Size, policy.MaxFileSize)
		}
		if len(files) == policy.MaxFiles {
			return nil, fmt.Errorf("more than %d policy files in %s; split the repository or remove stray files", policy.MaxFiles, id[:12])
		}
		data, err := git(ctx, repo, "cat-file", "blob", e.OID)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) != e.Size {
			return nil, fmt.Errorf("%s: git cat-file gave %d bytes, ls-tree said %d", e.Path, len(data), e.Size)
		}
		files = append(files, policy.File{Name: e.Path, Data: data})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no policy files (*.yaml, *.yml) in %s", src)
	}
	return files, nil
}

// Select returns the entries policy.ReadFS would read from a checkout: blobs (and symbolic
// links, which Read refuses) named *.yaml or *.yml, none of whose path elements starts with
// '.', in the order a directory walk visits them.
func Select(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Type != "blob" || (path.Ext(e.Path) != ".yaml" && path.Ext(e.Path) != ".yml") {
			continue
		}
		hidden := false
		for _, el := range strings.Split(e.Path, "/") {
			hidden = hidden || strings.HasPrefix(el, ".") || el == ""
		}
		if !hidden {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return slices.Compare(strings.Split(a.Path, "/"), strings.Split(b.Path, "/"))
	})
	return out
}
