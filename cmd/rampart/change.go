package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/change"
	"rampart.dev/rampart/internal/gittree"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
)

// Guarded change (docs/change.md): requests and reviews computed with git in the person's own
// checkout, the Git server hooks, offline verification.

func newChangeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "change", Short: "Request, review and verify approved changes to protected Git refs"}
	cmd.AddCommand(newChangeRequest(g), newChangeShow(g), newChangeReview(g, change.Approve), newChangeReview(g, change.Deny),
		newChangeList(g), newChangeBundle(g), newChangePublish(g), newChangeHook(g), newChangeVerify(g))
	return cmd
}

// repositoryName is --repository, or the checkout's `git config rampart.repository`.
func repositoryName(ctx context.Context, flag, dir string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	g := &change.Git{Dir: dir}
	if name, err := g.Config(ctx, "rampart.repository"); err == nil && name != "" {
		return name, nil
	}
	return "", usageErr("name the repository as the policy declares it (kind: Repository) with --repository NAME, or once with `git config rampart.repository NAME` in the checkout")
}

// localTip is the ref's tip as the checkout knows it: its remote-tracking ref
// (refs/remotes/origin/main for refs/heads/main) when there is one, else the ref itself.
func localTip(ctx context.Context, g *change.Git, ref, remote string) (string, error) {
	if b, ok := strings.CutPrefix(ref, "refs/heads/"); ok && remote != "" {
		if tip, err := g.RefTip(ctx, "refs/remotes/"+remote+"/"+b); err != nil || tip != "" {
			return tip, err
		}
	}
	return g.RefTip(ctx, ref)
}

func newChangeRequest(g *globals) *cobra.Command {
	var dir, ref, source, repo, remote string
	cmd := &cobra.Command{
		Use:   "request --repo DIR --ref REF --source BRANCH_OR_COMMIT [--repository NAME]",
		Short: "File a change request computed with git in your checkout",
		Long: `Compute, with git in the checkout DIR: the base (REF's tip, as the checkout's remote-tracking
ref refs/remotes/ORIGIN/BRANCH has it, else REF itself; fetch first), the source commit, the merge
tree (git merge-tree --write-tree; a conflict is refused), the changed paths and the commits the
change brings with their authors, committers and Co-authored-by trailers; file them with the
server, and print the change with the rules that apply and who may approve.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ref == "" || source == "" {
				return usageErr("--ref and --source are required")
			}
			name, err := repositoryName(ctx, repo, dir)
			if err != nil {
				return err
			}
			gt := &change.Git{Dir: dir}
			in, err := change.Compute(ctx, gt, ref, source, func(ctx context.Context) (string, error) { return localTip(ctx, gt, ref, remote) })
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.FileChange(ctx, api.FileChangeBody{Repository: name, Ref: ref, Base: in.Base, Source: in.Source, Tree: in.Tree, Paths: in.Paths, Commits: in.Commits})
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, v, func(tw *tabwriter.Writer) { printChange(tw, v) })
		},
	}
	cmd.Flags().StringVar(&dir, "repo", ".", "the checkout")
	cmd.Flags().StringVar(&ref, "ref", "", "the protected ref to merge into, e.g. refs/heads/main")
	cmd.Flags().StringVar(&source, "source", "", "the branch or commit to merge")
	cmd.Flags().StringVar(&repo, "repository", "", "the repository's name in the policy (default: git config rampart.repository)")
	cmd.Flags().StringVar(&remote, "remote", "origin", "the remote whose tracking ref is the ref's tip (\"\" for the local ref)")
	return cmd
}

// recompute computes the change's merge tree and changed paths in the reviewer's checkout and
// refuses if they are not what was filed: a reviewer approves what they have seen.
func recompute(ctx context.Context, dir string, c change.Change) (tree, stat string, err error) {
	gt := &change.Git{Dir: dir}
	tree, paths, err := change.Recompute(ctx, gt, c.Base, c.Source)
	if err != nil {
		return "", "", fmt.Errorf("your checkout %s cannot compute change %s (fetch its source %s first: git fetch origin %s): %w", dir, c.ID, shortID(c.Source), c.Source, err)
	}
	if tree != c.Tree {
		return "", "", fmt.Errorf("your checkout computes merge tree %s for change %s, but it was filed for tree %s: what was filed is not what you see; refusing", tree, c.ID, c.Tree)
	}
	if change.PathsDigest(paths) != change.PathsDigest(c.Paths) {
		return "", "", fmt.Errorf("your checkout computes %d changed paths for change %s, but it was filed with %d other paths; refusing", len(paths), c.ID, len(c.Paths))
	}
	stat, err = gt.DiffStat(ctx, c.Base, tree)
	return tree, stat, err
}

// seenChange fetches change id and recomputes it in the reviewer's checkout dir (recompute):
// what show prints and a review is bound to.
func seenChange(ctx context.Context, g *globals, id, dir string) (*api.Client, change.View, string, string, error) {
	c, err := g.client()
	if err != nil {
		return nil, change.View{}, "", "", err
	}
	v, err := c.GetChange(ctx, id)
	if err != nil {
		return nil, change.View{}, "", "", err
	}
	tree, stat, err := recompute(ctx, dir, v.Change)
	return c, v, tree, stat, err
}

func newChangeShow(g *globals) *cobra.Command {
	var dir, policyPath string
	cmd := &cobra.Command{
		Use:   "show ID [--repo DIR] [--policy-path P]",
		Short: "Show a change and its diff summary, recomputed in your own checkout",
		Long: `Print the change, the rules it needs, who may approve and how its approvals count, and its
diff summary computed by git in your checkout DIR from the change's base and source. Refuses
(exit 1) if your checkout does not compute the same merge tree and paths as were filed.

For a change to a policy repository (--policy-path P, or once ` + "`git config rampart.policyPath P`" + ` in
the checkout: the policy directory inside it, "." for its root), it also prints what approving
it grants: rampart policy diff between the policy at the base and the policy in the merge tree,
each change marked WEAKENED, strengthened or neutral.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, v, tree, stat, err := seenChange(cmd.Context(), g, args[0], dir)
			if err != nil {
				return err
			}
			if policyPath == "" {
				policyPath, _ = (&change.Git{Dir: dir}).Config(cmd.Context(), "rampart.policyPath")
			}
			out := changeShown{View: v}
			if policyPath != "" {
				if out.PolicyDiff, err = changePolicyDiff(cmd.Context(), dir, v.Change.Base, tree, policyPath); err != nil {
					return err
				}
			}
			return output.Print(os.Stdout, g.output, out, func(tw *tabwriter.Writer) {
				printChange(tw, v)
				fmt.Fprintf(tw, "\nAs your checkout computes it (tree %s):\n%s\n", shortID(v.Change.Tree), stat)
				if d := out.PolicyDiff; d != nil {
					fmt.Fprintf(tw, "\nWhat approving it grants (the policy under %s, as rampart policy diff shows it):\n", policyPath)
					printDiff(tw, d, "base "+shortID(v.Change.Base), "merge tree "+shortID(tree))
				}
			})
		},
	}
	cmd.Flags().StringVar(&dir, "repo", ".", "your checkout, holding the change's base and source")
	cmd.Flags().StringVar(&policyPath, "policy-path", "", "for a policy repository: the policy directory inside it (\".\" for its root; default git config rampart.policyPath)")
	return cmd
}

// changeShown is what change show prints: the change, and for a policy repository what the
// change does to the policy.
type changeShown struct {
	change.View
	PolicyDiff *policy.Diff `json:"policy_diff,omitempty"`
}

// changePolicyDiff compares the policy at the change's base with the policy in its merge tree,
// both read with git from the reviewer's own checkout.
func changePolicyDiff(ctx context.Context, dir, base, tree, path string) (*policy.Diff, error) {
	files, src, err := gittree.Read(ctx, dir, base, path)
	if err != nil {
		return nil, fmt.Errorf("the policy at the change's base: %w", err)
	}
	old, err := policy.Parse(files)
	if err != nil {
		return nil, fmt.Errorf("the policy at the change's base (%s) is invalid:\n%w", src, err)
	}
	if files, src, err = gittree.ReadTree(ctx, dir, tree, path); err != nil {
		return nil, fmt.Errorf("the policy in the change's merge tree: %w", err)
	}
	new, err := policy.Parse(files)
	if err != nil {
		return nil, fmt.Errorf("the policy in the change's merge tree (%s) is invalid: approving it would load nothing:\n%w", src, err)
	}
	return policy.Compare(old, new), nil
}

func newChangeReview(g *globals, d change.Decision) *cobra.Command {
	var dir, comment string
	cmd := &cobra.Command{
		Use:   string(d) + " ID [--repo DIR] [--comment TEXT]",
		Short: map[change.Decision]string{change.Approve: "Approve a change you have seen in your own checkout", change.Deny: "Deny a change"}[d],
		Long: `Recompute the change's merge tree in your checkout DIR (refusing if it is not what was filed) and
record your ` + string(d) + ` in the ledger, bound to the repository, ref, base and merge tree. Needs your
own sign-in session (rampart login); approvals that require step-up need a recent multi-factor
sign-in (rampart login --step-up).`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, v, tree, _, err := seenChange(cmd.Context(), g, args[0], dir)
			if err != nil {
				return err
			}
			v, err = c.ReviewChange(cmd.Context(), args[0], d, api.ReviewChangeBody{Base: v.Change.Base, Tree: tree, Comment: comment})
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, v, func(tw *tabwriter.Writer) { printChange(tw, v) })
		},
	}
	cmd.Flags().StringVar(&dir, "repo", ".", "your checkout, holding the change's base and source")
	cmd.Flags().StringVar(&comment, "comment", "", "a comment recorded with the review")
	return cmd
}

func newChangeList(g *globals) *cobra.Command {
	var repo, ref string
	var states []string
	cmd := &cobra.Command{
		Use:   "list [--repository NAME] [--ref REF] [--state S]...",
		Short: "List change requests, newest first",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			cs, err := c.ListChanges(cmd.Context(), repo, ref, states)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, cs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tREPOSITORY\tREF\tSTATE\tREQUESTER\tTREE\tBASE")
				for _, ch := range cs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.12s\t%.12s\n", ch.ID, ch.Repository, ch.Ref, ch.State, ch.Requester, ch.Tree, ch.Base)
				}
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repository", "", "only this repository")
	cmd.Flags().StringVar(&ref, "ref", "", "only this ref")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only these states: pending, approved, landed, denied, void")
	return cmd
}

func newChangeBundle(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle ID",
		Short: "Print a change's approvals bundle (for the offline hook)",
		Long: `Print the approvals bundle of a change: its request, approvals and landing ledger entries with
inclusion proofs to a signed checkpoint. Put it in the offline hook's --bundles directory as
ID.json.`,
		Args:        exactArgs("ID"),
		Annotations: map[string]string{fixedOutput: "it prints the bundle's JSON"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			b, err := c.ChangeBundle(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(b.Marshal())
			return err
		},
	}
	return cmd
}

func newChangePublish(g *globals) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "publish ID --repo DIR",
		Short: "Write a landed change's approvals bundle as the note of the commit it landed",
		Long: `Fetch the approvals bundle of a landed change and write it as the note of the commit that
landed it under refs/notes/rampart in DIR (push it with git push origin refs/notes/rampart). The
post-receive hook does this by itself; use it when the hook could not.`,
		Args: exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.GetChange(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if v.Change.State != change.StateLanded || !change.IsObjectID(v.Change.LandedAs) {
				return fmt.Errorf("change %s has not landed (it is %s); nothing to publish", args[0], v.Change.State)
			}
			b, err := c.ChangeBundle(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if err := (&change.Git{Dir: dir}).AddNote(cmd.Context(), change.NotesRef, v.Change.LandedAs, b.Marshal()); err != nil {
				return err
			}
			return g.done(map[string]string{"change": args[0], "commit": v.Change.LandedAs, "notes_ref": change.NotesRef},
				"Wrote the approvals of %s as the note of %s under %s.\n", args[0], shortID(v.Change.LandedAs), change.NotesRef)
		},
	}
	cmd.Flags().StringVar(&dir, "repo", ".", "the repository to write the note in")
	return cmd
}

func printChange(tw *tabwriter.Writer, v change.View) {
	c := v.Change
	fmt.Fprintf(tw, "Change %s (%s): merge %.12s into %s of %s\n", c.ID, c.State, c.Source, c.Ref, c.Repository)
	fmt.Fprintf(tw, "  base:\t%s\n  merge tree:\t%s\n  requester:\t%s\n  changed paths:\t%d\n  commits:\t%d\n", c.Base, c.Tree, c.Requester, len(c.Paths), len(c.Commits))
	if v.Problem != "" {
		fmt.Fprintf(tw, "  PROBLEM:\t%s\n", v.Problem)
	}
	if e := v.Explain; e != nil {
		for _, r := range e.Rules {
			fmt.Fprintf(tw, "  rule:\t%s (%s)\n", r.Approval, r.Why)
		}
		printChangeSteps(tw, *e)
	}
	for _, r := range v.Reviews {
		fmt.Fprintf(tw, "  %s:\t%s at %s %s\n", r.Decision, r.Approver, r.At.Format("2006-01-02 15:04:05Z"), r.Comment)
	}
	if t := v.Tally; t != nil {
		fmt.Fprintf(tw, "  quorum:\t%v\n", t.Satisfied)
	}
	for _, u := range v.UnknownIdentities {
		fmt.Fprintf(tw, "  WARNING:\t%s names no user: it excludes nobody\n", u)
	}
}

func printChangeSteps(tw *tabwriter.Writer, e policy.ChangeExplanation) {
	fmt.Fprintf(tw, "  needs, all of (one person fills one slot):\t\n")
	for _, st := range e.Steps {
		eligible := strings.Join(st.Eligible, ", ")
		if eligible == "" {
			eligible = "NOBODY"
		}
		fmt.Fprintf(tw, "    %s:\t%d of %s; eligible: %s\n", st.Name, st.Count, strings.Join(st.From, ", "), eligible)
		for _, x := range st.Excluded {
			fmt.Fprintf(tw, "    \t  not %s: %s\n", x.Approver, x.Why)
		}
	}
	fmt.Fprintf(tw, "  never counted:\t%s\n", strings.Join(e.Exclusions, ", "))
	if e.StepUp != "" {
		fmt.Fprintf(tw, "  step-up:\twithin %s (%s)\n", e.StepUp, e.StepUpPolicy)
	}
	if !e.Satisfiable {
		fmt.Fprintf(tw, "  WARNING:\tthe eligible approvers cannot satisfy every step: this change could never be approved\n")
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
