package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/internal/gittree"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
)

func newPolicyDiffCmd(g *globals) *cobra.Command {
	var repo, dir string
	cmd := &cobra.Command{
		Use:   "diff OLD NEW [--repo DIR [--path SUBDIR]]",
		Short: "Show what a policy change does: who gains or loses which role, reach, approval weakened; exit 3 if anything is WEAKENED",
		Long: "Compare two policies and print the effective change, each marked WEAKENED, strengthened or neutral: " +
			"what a request for each role needs (quorum, independence, who may file for whom, durations, renewal, break-glass, step-up, conditions), " +
			"who gains or loses standing roles, admin and auditor rights, approver eligibility and egress, what each role reaches, and every declared field changed.\n\n" +
			"OLD and NEW are policy directories, or with --repo two commits (ids, branches, tags) of that Git checkout, read with git from the commits themselves " +
			"(not the work tree); --path is the policy directory inside the repository.\n\n" +
			"Exit status: 0 when nothing is weakened (no change, or only strengthened and neutral changes), 3 when any change is WEAKENED, " +
			"1 when a policy cannot be read or is invalid, 2 on a usage error. A change the diff cannot prove harmless is WEAKENED. See docs/policy.md, \"Policy diff\".",
		Example: "  rampart policy diff ./policy-before ./policy\n" +
			"  rampart policy diff --repo . --path policy origin/main HEAD -o json",
		Args: exactArgs("OLD", "NEW"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir != "" && repo == "" {
				return usageErr("--path is the policy directory inside --repo: give --repo too, or give the directories themselves")
			}
			load := func(arg string) (*policy.Policy, string, error) {
				if repo != "" {
					files, src, err := gittree.Read(cmd.Context(), repo, arg, dir)
					if err != nil {
						return nil, "", err
					}
					p, err := policy.Parse(files)
					if err != nil {
						return nil, "", fmt.Errorf("policy %s is invalid:\n%w", src, err)
					}
					return p, src.String(), nil
				}
				if fi, err := os.Stat(arg); err != nil || !fi.IsDir() {
					return nil, "", usageErr("%s is not a directory: give two policy directories, or --repo DIR and two commits", arg)
				}
				p, err := policy.Load(os.DirFS(arg))
				if err != nil {
					return nil, "", fmt.Errorf("policy %s is invalid:\n%w", arg, err)
				}
				return p, arg, nil
			}
			old, oldName, err := load(args[0])
			if err != nil {
				return err
			}
			new, newName, err := load(args[1])
			if err != nil {
				return err
			}
			d := policy.Compare(old, new)
			if err := output.Print(os.Stdout, g.output, d, func(tw *tabwriter.Writer) { printDiff(tw, d, oldName, newName) }); err != nil {
				return err
			}
			if d.Verdict == policy.Weakened {
				return &codeError{code: exitDenied, err: fmt.Errorf("the new policy is WEAKER: %d of its changes are marked WEAKENED; review them before approving it", d.Weakened)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "OLD and NEW are commits of this Git checkout")
	cmd.Flags().StringVar(&dir, "path", "", "with --repo: the policy directory inside the repository (default: its root)")
	return cmd
}

func printDiff(tw *tabwriter.Writer, d *policy.Diff, oldName, newName string) {
	fmt.Fprintf(tw, "old:\t%s (digest %.12s)\n", oldName, d.OldDigest)
	fmt.Fprintf(tw, "new:\t%s (digest %.12s)\n", newName, d.NewDigest)
	if len(d.Changes) == 0 {
		fmt.Fprintf(tw, "No change in effect or declaration.\n")
		return
	}
	fmt.Fprintf(tw, "verdict:\t%s (%d weakened, %d strengthened, %d neutral)\n\n", d.Verdict.Label(), d.Weakened, d.Strengthened, d.Neutral)
	fmt.Fprintf(tw, "VERDICT\tSECTION\tOF\tFIELD\tCHANGE\n")
	for _, c := range d.Changes {
		of := strings.ReplaceAll(c.Kind, "_", " ") + " " + c.Name
		if c.Kind == "subject" {
			of = c.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Verdict.Label(), c.Section, of, c.Field, c.Message)
	}
}
