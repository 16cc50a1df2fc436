package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
)

func newChangeHook(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hook", Short: "The Git server's hooks: pre-receive decides, post-receive publishes approvals as notes"}
	var repo, bundles, key, policyDir, pusher string
	var timeout time.Duration
	pre := &cobra.Command{
		Use:   "pre-receive --repository NAME [--bundles DIR --key KEY --policy DIR] [--pusher NAME]",
		Short: "Refuse updates of protected refs that are not approved merges (install as the pre-receive hook)",
		Long: `Install as the pre-receive hook of a bare repository on the Git server. For every "old new ref"
line git gives it, it computes with git the new tip's tree, first parent, changed paths and
commits, and decides:

  online (default): asks the server (--addr, a token of one of the repository's git_servers in
  RAMPART_TOKEN), which records the landing and returns its approvals bundle, kept for
  post-receive to write as a note;
  offline (--bundles DIR --key KEY --policy DIR): from approvals bundles (rampart change bundle)
  signed by the ledger key, under the policy in DIR.

It refuses (exit 1, the reason on standard error, which git shows the pusher) deletions of
protected refs, updates that are not one first-parent step from the old tip, updates whose tree
is not an approved merge tree with quorum, and everything when it cannot establish the answer
(the server unreachable, a bundle or the policy unreadable, the pusher unknown): fail closed.
The pusher is --pusher, else $REMOTE_USER (git http-backend), else $GL_USERNAME.
Push one protected ref at a time: a landing is recorded when decided, even if git then rejects
the push for another ref.`,
		Args:        exactArgs(),
		Annotations: map[string]string{fixedOutput: "it talks to git on standard error"},
		RunE: func(cmd *cobra.Command, args []string) error {
			err := preReceive(cmd.Context(), g, cmd.InOrStdin(), cmd.ErrOrStderr(), repo, bundles, key, policyDir, pusher, timeout)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "rampart: push refused: %v\n", err)
				return &codeError{code: exitError, err: errors.New("")}
			}
			return nil
		},
	}
	pre.Flags().StringVar(&repo, "repository", "", "the repository's name in the policy (kind: Repository)")
	pre.Flags().StringVar(&bundles, "bundles", "", "offline: the directory of approvals bundles")
	pre.Flags().StringVar(&key, "key", "", "offline: the ledger's public key, or a file holding it")
	pre.Flags().StringVar(&policyDir, "policy", "", "offline: the policy directory")
	pre.Flags().StringVar(&pusher, "pusher", "", "who pushes (default $REMOTE_USER, then $GL_USERNAME)")
	pre.Flags().DurationVar(&timeout, "timeout", 20*time.Second, "online: how long to wait for the server before refusing")
	post := &cobra.Command{
		Use:         "post-receive",
		Short:       "Write the approvals bundles of accepted updates as notes under refs/notes/rampart (install as the post-receive hook)",
		Args:        exactArgs(),
		Annotations: map[string]string{fixedOutput: "it talks to git on standard error"},
		RunE: func(cmd *cobra.Command, args []string) error {
			ups, err := change.ReadUpdates(io.LimitReader(cmd.InOrStdin(), 64<<20))
			if err != nil {
				return err
			}
			gitDir := os.Getenv("GIT_DIR")
			if gitDir == "" {
				gitDir = "."
			}
			n, err := change.PublishPending(cmd.Context(), &change.Git{Dir: "."}, gitDir, ups)
			if n > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "rampart: published the approvals of %d update(s) under %s\n", n, change.NotesRef)
			}
			return err
		},
	}
	cmd.AddCommand(pre, post)
	return cmd
}

func preReceive(ctx context.Context, g *globals, stdin io.Reader, stderr io.Writer, repo, bundles, key, policyDir, pusher string, timeout time.Duration) error {
	if repo == "" {
		return errors.New("the hook has no --repository: fix its installation")
	}
	if pusher == "" {
		pusher = os.Getenv("REMOTE_USER")
	}
	if pusher == "" {
		pusher = os.Getenv("GL_USERNAME")
	}
	if err := policy.ValidateSubject(pusher); err != nil {
		return fmt.Errorf("the Git server did not say who pushes (REMOTE_USER): %v; authenticated pushes only", err)
	}
	ups, err := change.ReadUpdates(io.LimitReader(stdin, 64<<20))
	if err != nil {
		return err
	}
	var d change.Decider
	if bundles != "" || key != "" || policyDir != "" {
		if bundles == "" || key == "" || policyDir == "" {
			return errors.New("the offline hook needs --bundles, --key and --policy together")
		}
		k, err := readKey(key)
		if err != nil {
			return err
		}
		v, err := audit.NewVerifier(k)
		if err != nil {
			return err
		}
		pol, err := policy.Load(os.DirFS(policyDir))
		if err != nil {
			return fmt.Errorf("the hook's policy %s is invalid: %w", policyDir, err)
		}
		d = &change.OfflineDecider{Policy: pol, Bundles: bundles, Key: v}
	} else {
		token := os.Getenv("RAMPART_TOKEN")
		if err := identity.CheckForm(token); err != nil {
			return fmt.Errorf("the hook's RAMPART_TOKEN is %v: give it a token of one of the repository's git_servers", err)
		}
		c := api.NewClient(g.addr, token)
		c.HTTP.Timeout = timeout
		d = c
	}
	gitDir := os.Getenv("GIT_DIR")
	if gitDir == "" {
		gitDir = "."
	}
	gt := &change.Git{Dir: "."}
	for _, ru := range ups {
		u, err := change.Facts(ctx, gt, repo, pusher, ru)
		if err != nil {
			return err
		}
		v, err := d.Decide(ctx, u)
		if err != nil {
			return fmt.Errorf("%s: cannot establish whether this update is approved, so it is refused: %w", ru.Ref, err)
		}
		if !v.Allowed {
			return fmt.Errorf("%s: %s", ru.Ref, v.Reason)
		}
		if !v.Protected {
			continue
		}
		fmt.Fprintf(stderr, "rampart: %s: %s\n", ru.Ref, v.Reason)
		if v.Warning != "" {
			fmt.Fprintf(stderr, "rampart: warning: %s\n", v.Warning)
		}
		if v.Bundle != nil {
			if err := change.SavePending(gitDir, u.New, v.Bundle); err != nil {
				fmt.Fprintf(stderr, "rampart: warning: the approvals bundle could not be kept for post-receive (%v); run rampart change publish %s\n", err, v.ChangeID)
			}
		} else if bundles != "" {
			if err := change.SaveOffline(gitDir, u); err != nil {
				return fmt.Errorf("record the offline landing for publishing: %w", err)
			}
		}
	}
	return nil
}

func newChangeVerify(g *globals) *cobra.Command {
	var dir, ref, rev, since, key, policyPath, repo string
	cmd := &cobra.Command{
		Use:   "verify --repo DIR --ref REF --key KEY [--repository NAME] [--since COMMIT] [--policy-path DIR]",
		Short: "Verify offline that every update of a protected ref was an approved merge (exit 0, 3 or 1)",
		Long: `Walk the first-parent history of REF in the repository DIR (from --since, exclusive, or from the
root) and check every update against its note under refs/notes/rampart: a landing signed by the
ledger (inclusion proof to a checkpoint the pinned --key signed) of this repository, ref, base and
tree; the request and approvals it names bound to the same; the parties recomputed from git
(authors, committers, co-authors), the requester and the pusher excluded; quorum counted again
under the rule recorded at landing, or with --policy-path under the policy files in the
repository at the update's parent (the rules in force before the change). Needs nothing from the
server: fetch the notes first (git fetch origin refs/notes/rampart:refs/notes/rampart).

Exit 0: every update verifies; 3: violations, each listed; 1: an error.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ref == "" || key == "" {
				return usageErr("--ref and --key are required")
			}
			name, err := repositoryName(cmd.Context(), repo, dir)
			if err != nil {
				return err
			}
			k, err := readKey(key)
			if err != nil {
				return err
			}
			v, err := audit.NewVerifier(k)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			if !strings.HasPrefix(ref, "refs/") {
				ref = "refs/heads/" + ref
			}
			rep, err := change.VerifyHistory(cmd.Context(), &change.Git{Dir: dir}, change.VerifyOptions{Repository: name, Ref: ref, Rev: rev, Since: since, Key: v, PolicyPath: policyPath})
			if err != nil {
				return err
			}
			if err := output.Print(os.Stdout, g.output, rep, func(tw *tabwriter.Writer) {
				for _, vi := range rep.Violations {
					fmt.Fprintf(tw, "VIOLATION %s (parent %s): %s\n", shortID(vi.Commit), shortID(vi.Parent), vi.Reason)
				}
				fmt.Fprintf(tw, "%s of %s: %d update(s) from %s to %s, %d violation(s)\n", ref, name, rep.Updates, shortID(rep.From), shortID(rep.Tip), len(rep.Violations))
			}); err != nil {
				return err
			}
			if len(rep.Violations) > 0 {
				return &codeError{code: exitDenied, err: fmt.Errorf("%d update(s) of %s are not approved merges", len(rep.Violations), ref)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "repo", ".", "the repository")
	cmd.Flags().StringVar(&ref, "ref", "", "the protected ref as the policy names it (refs/heads/main, or main)")
	cmd.Flags().StringVar(&rev, "rev", "", "what to walk in this checkout (default: the ref; e.g. refs/remotes/origin/main)")
	cmd.Flags().StringVar(&since, "since", "", "start after this commit (its state is trusted)")
	cmd.Flags().StringVar(&key, "key", "", "the ledger's public key (rampart audit key), or a file holding it")
	cmd.Flags().StringVar(&policyPath, "policy-path", "", "judge each update by the policy files under this directory of the repository at its parent")
	cmd.Flags().StringVar(&repo, "repository", "", "the repository's name in the policy (default: git config rampart.repository)")
	return cmd
}
