package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Validate policy files, explain what a request would need, and show what a policy change does"}
	validate := &cobra.Command{
		Use:   "validate DIR",
		Short: "Validate a policy directory; every error with file:line:column and field",
		Long:  "Validate every *.yaml / *.yml file under DIR, offline. Prints every error (file:line:column: field: message) and exits 1 if there is any; for CI.",
		Args:  exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fi, err := os.Stat(args[0]); err != nil || !fi.IsDir() {
				return usageErr("%s is not a directory", args[0])
			}
			p, err := policy.Load(os.DirFS(args[0]))
			if err != nil {
				return fmt.Errorf("policy %s is invalid:\n%w", args[0], err)
			}
			summary := map[string]any{"valid": true, "digest": p.Digest, "groups": len(p.Groups()), "resources": len(p.Resources()),
				"roles": len(p.Roles()), "approval_policies": len(p.ApprovalPolicies()), "standing_bindings": len(p.StandingBindings())}
			return output.Print(os.Stdout, g.output, summary, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "OK: %s is valid: %d groups, %d resources, %d roles, %d approval policies, %d standing bindings (digest %s)\n",
					args[0], len(p.Groups()), len(p.Resources()), len(p.Roles()), len(p.ApprovalPolicies()), len(p.StandingBindings()), p.Digest[:12])
			})
		},
	}
	var requester, beneficiary, role, dir, repository, ref, pusher string
	var paths, authors []string
	explain := &cobra.Command{
		Use:   "explain --requester NAME --role ROLE [--beneficiary SUBJECT] [--policy DIR] | --repository R --ref REF [--paths P,...] [--author A]... [--requester NAME] [--pusher NAME] [--policy DIR]",
		Short: "Dry run: whether a request may be filed, what approval it would need, who is eligible, allowed durations",
		Long: "Explain what a request by --requester for --beneficiary (default: the requester) for --role would need under the policy: " +
			"whether the requester may file it (request_for), who is eligible for each step and why others are not. " +
			"Offline with --policy DIR, otherwise from the server's policy in force. The workflow decides with the same functions, so what this says is what a real request gets.\n\n" +
			"With --repository: explain what a change of --paths on --ref of the repository would need (docs/change.md): the rules that apply, " +
			"who could approve each step with the authors (--author), the requester and the pusher excluded, and why others could not; " +
			"the Git hook and the change workflow decide with the same functions.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repository != "" {
				return explainChange(cmd, g, dir, repository, ref, paths, authors, requester, pusher)
			}
			if role == "" || requester == "" {
				return usageErr("--requester and --role are required")
			}
			var e policy.Explanation
			if dir != "" {
				p, err := policy.Load(os.DirFS(dir))
				if err != nil {
					return fmt.Errorf("policy %s is invalid:\n%w", dir, err)
				}
				ep, err := p.Explain(requester, beneficiary, role)
				if err != nil {
					return err
				}
				e = *ep
			} else {
				c, err := g.client()
				if err != nil {
					return err
				}
				if e, err = c.Explain(cmd.Context(), requester, beneficiary, role); err != nil {
					return err
				}
			}
			return output.Print(os.Stdout, g.output, e, func(tw *tabwriter.Writer) { printExplanation(tw, e) })
		},
	}
	explain.Flags().StringVar(&requester, "requester", "", "who would ask")
	explain.Flags().StringVar(&role, "role", "", "the role asked for")
	explain.Flags().StringVar(&beneficiary, "beneficiary", "", "who would get the access (default: the requester), e.g. bob or k8s:prod/ml/trainer")
	explain.Flags().StringVar(&dir, "policy", "", "explain from this policy directory instead of the server")
	explain.Flags().StringVar(&repository, "repository", "", "explain a change to this repository (kind: Repository) instead of a request")
	explain.Flags().StringVar(&ref, "ref", "", "with --repository: the protected ref, e.g. refs/heads/main (or main)")
	explain.Flags().StringSliceVar(&paths, "paths", nil, "with --repository: the changed paths")
	explain.Flags().StringSliceVar(&authors, "author", nil, "with --repository: an author, committer or co-author of the change's commits")
	explain.Flags().StringVar(&pusher, "pusher", "", "with --repository: who would push the update")
	cmd.AddCommand(validate, explain, newPolicyDiffCmd(g))
	return cmd
}

func printExplanation(tw *tabwriter.Writer, e policy.Explanation) {
	var res []string
	for _, r := range e.Resources {
		res = append(res, r.Name+" ("+r.Sensitivity+")")
	}
	who := ""
	if e.Beneficiary != "" && e.Beneficiary != e.Requester {
		who = " for " + e.Beneficiary
		if len(e.BeneficiaryOwners) > 0 {
			who += " (owned by " + strings.Join(e.BeneficiaryOwners, ", ") + ")"
		}
	}
	fmt.Fprintf(tw, "A request by %s%s for role %s\n", e.Requester, who, e.Role)
	if e.MayFile {
		fmt.Fprintf(tw, "  may be filed:\tyes, %s\n", e.Filing)
	} else {
		fmt.Fprintf(tw, "  may be filed:\tNO: %s\n", e.Filing)
	}
	fmt.Fprintf(tw, "  reaches:\t%s\n", strings.Join(res, ", "))
	fmt.Fprintf(tw, "  approval policy:\t%s (strictest of: %s)\n", e.Policy, strings.Join(e.Matched, ", "))
	fmt.Fprintf(tw, "  needs, all of:\t\n")
	for i, st := range e.Steps {
		name := st.Name
		if name == "" {
			name = fmt.Sprintf("step %d", i+1)
		}
		eligible := strings.Join(st.Eligible, ", ")
		if eligible == "" {
			eligible = "NOBODY"
		}
		fmt.Fprintf(tw, "    %s:\t%d of %s; eligible: %s\n", name, st.Count, strings.Join(st.From, ", "), eligible)
		for _, x := range st.Excluded {
			fmt.Fprintf(tw, "    \t  not %s: %s\n", x.Approver, x.Why)
		}
	}
	fmt.Fprintf(tw, "  never counted:\t%s\n", strings.Join(e.Exclusions, ", "))
	fmt.Fprintf(tw, "  duration:\t%s to %s (default %s); pending requests lapse after %s\n", e.MinDuration, e.MaxDuration, e.Default, e.RequestTTL)
	fmt.Fprintf(tw, "  reason required:\t%v\n  renewable:\t%v\n  denials that end it:\t%d\n  break-glass:\t%s\n", e.Reason, e.Renewable, e.DenyCount, e.BreakGlass)
	for _, c := range e.Conditions {
		fmt.Fprintf(tw, "  condition:\t%s\n", c)
	}
	switch {
	case !e.MayFile:
		fmt.Fprintf(tw, "  WARNING:\tthis request would be refused when filed\n")
	case !e.Satisfiable:
		fmt.Fprintf(tw, "  WARNING:\tthe eligible approvers cannot satisfy every step: this request could never be approved\n")
	}
}

func explainChange(cmd *cobra.Command, g *globals, dir, repository, ref string, paths, authors []string, requester, pusher string) error {
	if ref == "" {
		return usageErr("--repository needs --ref (e.g. refs/heads/main)")
	}
	if !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + ref
	}
	var e policy.ChangeExplanation
	if dir != "" {
		p, err := policy.Load(os.DirFS(dir))
		if err != nil {
			return fmt.Errorf("policy %s is invalid:\n%w", dir, err)
		}
		var parties []policy.ChangeParty
		for _, a := range authors {
			parties = append(parties, policy.ChangeParty{Subject: a, Role: "an author"})
		}
		if requester != "" {
			parties = append(parties, policy.ChangeParty{Subject: requester, Role: policy.PartyRequester})
		}
		if pusher != "" {
			parties = append(parties, policy.ChangeParty{Subject: pusher, Role: policy.PartyPusher})
		}
		ep, err := p.ExplainChange(repository, ref, paths, parties)
		if err != nil {
			return err
		}
		e = *ep
	} else {
		c, err := g.client()
		if err != nil {
			return err
		}
		if e, err = c.ExplainChange(cmd.Context(), repository, ref, paths, authors, requester, pusher); err != nil {
			return err
		}
	}
	return output.Print(os.Stdout, g.output, e, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "A change of %d path(s) on %s of %s\n", len(e.Paths), e.Ref, e.Repository)
		for _, r := range e.Rules {
			fmt.Fprintf(tw, "  rule:\t%s (%s)\n", r.Approval, r.Why)
		}
		for _, pt := range e.Parties {
			fmt.Fprintf(tw, "  party:\t%s, %s\n", pt.Subject, pt.Role)
		}
		printChangeSteps(tw, e)
	})
}
