package server

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"rampart.dev/rampart/change"
	"rampart.dev/rampart/policy"
)

// policyRepo reads the policy repository with the real git binary (change.Git). The policy is
// read from git's object database, never from a work tree, so what is loaded is exactly the
// commit that was verified.
type policyRepo struct{ g *change.Git }

func (r policyRepo) RefTip(ctx context.Context, ref string) (string, error) {
	return r.g.RefTip(ctx, ref)
}

func (r policyRepo) IsAncestor(ctx context.Context, a, b string) (bool, error) {
	return r.g.IsAncestor(ctx, a, b)
}

// LoadPolicy reads the policy files under dir in commit (change.PolicyAt: policy.ReadFS's rules,
// a symbolic link refused) and parses them.
func (r policyRepo) LoadPolicy(ctx context.Context, commit, dir string) (*policy.Policy, error) {
	return change.PolicyAt(ctx, r.g, commit, dir)
}

// changeGate is the gate of a policy loaded from Git: change.VerifyHistory over the first-parent
// updates from the commit in force to the tip, each judged under the policy files at its parent
// in the repository itself (weakening the rules needs approval under the old ones), with the
// approvals, landings and inclusion proofs the notes ref carries, checked against this server's
// own ledger key. It stops before the first update that does not verify.
func (in *Instance) changeGate(dir string) PolicyGate {
	return func(ctx context.Context, ref, from, to string) (string, error) {
		rep, err := change.VerifyHistory(ctx, &change.Git{Dir: dir}, change.VerifyOptions{Repository: in.cfg.PolicyGit.Repository,
			Ref: ref, Rev: to, Since: from, Key: in.Ledger.Verifier(), PolicyPath: cmp.Or(in.cfg.PolicyGit.Dir, ".")})
		if err != nil {
			return from, err
		}
		if len(rep.Violations) == 0 {
			return rep.Tip, nil
		}
		v := rep.Violations[0]
		return v.Parent, fmt.Errorf("update %s (from %s) is not an approved change under the policy in force before it: %s", v.Commit, v.Parent, v.Reason)
	}
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
	git := func(args ...string) error {
		c := exec.CommandContext(ctx, "git", append([]string{"-C", dir, "-c", "core.fsmonitor=false"}, args...)...)
		c.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Run(); err != nil {
			return fmt.Errorf("git %s: %v: %s", args[0], err, strings.TrimSpace(errb.String()))
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := git("init", "--bare", "--quiet"); err != nil {
			return err
		}
	}
	if err := git("fetch", "--quiet", "--no-tags", "--end-of-options", url, "+"+ref+":"+ref, "+"+change.NotesRef+":"+change.NotesRef); err != nil {
		// A repository with no approvals yet has no notes ref; fetch the ref alone.
		if err2 := git("fetch", "--quiet", "--no-tags", "--end-of-options", url, "+"+ref+":"+ref); err2 != nil {
			return fmt.Errorf("fetch %s from %s: %w", ref, url, err2)
		}
	}
	return nil
}
