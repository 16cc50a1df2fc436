package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/suggest"
)

func newSearchCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "search QUERY...",
		Short: "Search the resource catalogue (names, tags, kinds, owners, descriptions; typo-tolerant)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("search needs words to look for, e.g. rampart search frontier weights")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rs, err := c.Search(cmd.Context(), strings.Join(args, " "), limit)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, rs, func(tw *tabwriter.Writer) {
				if len(rs) == 0 {
					fmt.Fprintln(tw, "No resource matches.")
					return
				}
				fmt.Fprintln(tw, "RESOURCE\tSENSITIVITY\tOWNERS\tSCORE\tDESCRIPTION")
				for _, r := range rs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\n", r.Name, r.Sensitivity, strings.Join(r.Owners, ","), r.Score, r.Description)
				}
			})
		},
	}
	cmd.Flags().IntVarP(&limit, "limit", "n", 10, "at most this many results")
	return cmd
}

func newSuggestCmd(g *globals) *cobra.Command {
	var resource string
	var actions []string
	cmd := &cobra.Command{
		Use:   `suggest "WHAT YOU NEED" | suggest --resource R --action A`,
		Short: "Suggest the least privileged role for what you need",
		Long: `Suggest the least privileged role for a sentence ("I need to run evals on the frontier-7
checkpoint") or for a resource and action(s). The candidates are the roles the decision engine
itself would honour, ranked by how much they grant (weighted by sensitivity), then by how many
approvals they need. A language model, if the server has one configured, may choose among them;
its answer is verified and refused if it is not a candidate or not minimal. A suggestion grants
nothing: request the role with 'rampart request create'.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			b := api.SuggestBody{Intent: strings.Join(args, " "), Resource: resource, Actions: actions}
			if (b.Intent == "") == (resource == "") {
				return usageErr("give a sentence, or --resource and --action (not both)")
			}
			if resource != "" && len(actions) == 0 {
				return usageErr("--resource needs --action (e.g. --action read)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			adv, err := c.Suggest(cmd.Context(), b)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, adv, func(tw *tabwriter.Writer) { printAdvice(tw, adv, true) })
		},
	}
	cmd.Flags().StringVar(&resource, "resource", "", "the resource you need access to")
	cmd.Flags().StringSliceVar(&actions, "action", nil, "the action(s) you need on it")
	cmd.AddCommand(newSuggestEvalCmd(g))
	return cmd
}

func printAdvice(tw *tabwriter.Writer, adv suggest.Advice, howToRequest bool) {
	if adv.Intent != nil {
		fmt.Fprintf(tw, "Read as:\t%s on %s (from %q)\n", strings.Join(adv.Actions, " and "), adv.Resource, adv.Intent.Text)
	}
	fmt.Fprintf(tw, "Least privileged role:\t%s\n", adv.Role.Role)
	fmt.Fprintf(tw, "  grants:\t%s on %d resource(s) (privilege %.0f)\n", strings.Join(adv.Role.Actions, ", "), adv.Role.Resources, adv.Role.Privilege)
	fmt.Fprintf(tw, "  approval:\t%d approver(s) under policy %s\n", adv.Role.Approvals, adv.Role.Policy)
	fmt.Fprintf(tw, "  why:\t%s\n", adv.Reason)
	if adv.Source == suggest.SourceModel {
		fmt.Fprintf(tw, "  chosen by:\tthe language model; %s\n", adv.ModelNote)
	} else if adv.ModelNote != "" {
		fmt.Fprintf(tw, "  note:\t%s\n", adv.ModelNote)
	}
	if len(adv.Candidates) > 1 {
		fmt.Fprintf(tw, "Other candidates:\t\n")
		for _, c := range adv.Candidates {
			if c.Role != adv.Role.Role {
				fmt.Fprintf(tw, "  %s\tprivilege %.0f, %d approver(s)\n", c.Role, c.Privilege, c.Approvals)
			}
		}
	}
	for _, alt := range adv.Alternatives {
		fmt.Fprintf(tw, "Also matches:\t%s (%s: %s)\n", alt.Resource, strings.Join(alt.Actions, ", "), alt.Candidates[0].Role)
	}
	if howToRequest {
		fmt.Fprintf(tw, "Request it with:\trampart request create --role %s --reason \"…\"\n", adv.Role.Role)
	}
}

func newSuggestEvalCmd(g *globals) *cobra.Command {
	var dir string
	var minAcc float64
	cmd := &cobra.Command{
		Use:   "eval FILE [--policy DIR] [--min 0.95]",
		Short: "Measure suggestion accuracy on a labelled set",
		Long: `Run a labelled set (YAML: cases with an intent, or a resource and action, and the expected
role) and print the top-1 accuracy and every miss. With --policy DIR the deterministic engine runs
offline on that catalogue; otherwise each case is asked of the server (with its model, if one is
configured). --min fails the command below that accuracy, for CI.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			cases, err := suggest.ParseCases(args[0], data)
			if err != nil {
				return err
			}
			var rep suggest.Report
			if dir != "" {
				pol, err := policy.Load(os.DirFS(dir))
				if err != nil {
					return fmt.Errorf("policy %s is invalid:\n%w", dir, err)
				}
				rep = suggest.New(pol).Evaluate(cases)
			} else {
				c, err := g.client()
				if err != nil {
					return err
				}
				rep = evaluateRemote(cmd.Context(), c, cases)
			}
			perr := output.Print(os.Stdout, g.output, rep, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "top-1 accuracy: %.1f%% (%d of %d)\n", 100*rep.Accuracy, rep.Correct, rep.Total)
				for _, m := range rep.Misses {
					what := m.Intent
					if what == "" {
						what = m.Action + " on " + m.Resource
					}
					got := m.Got
					if m.Error != "" {
						got = "error: " + m.Error
					}
					fmt.Fprintf(tw, "miss:\t%q\twant %s\tgot %s\n", what, m.Expect, got)
				}
			})
			if perr != nil {
				return perr
			}
			if rep.Accuracy < minAcc {
				return fmt.Errorf("top-1 accuracy %.1f%% is below --min %.1f%%", 100*rep.Accuracy, 100*minAcc)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "policy", "", "evaluate offline on this policy directory")
	cmd.Flags().Float64Var(&minAcc, "min", 0, "fail below this accuracy (0 to 1)")
	return cmd
}

func evaluateRemote(ctx context.Context, c *api.Client, cases []suggest.Case) suggest.Report {
	rep := suggest.Report{Total: len(cases), Misses: []suggest.Miss{}}
	for _, cs := range cases {
		b := api.SuggestBody{Intent: cs.Intent}
		if cs.Intent == "" {
			b = api.SuggestBody{Resource: cs.Resource, Actions: []string{cs.Action}}
		}
		adv, err := c.Suggest(ctx, b)
		if err == nil && adv.Role.Role == cs.Expect {
			rep.Correct++
			continue
		}
		m := suggest.Miss{Case: cs, Got: adv.Role.Role}
		if err != nil {
			m.Error = err.Error()
		}
		rep.Misses = append(rep.Misses, m)
	}
	if rep.Total > 0 {
		rep.Accuracy = float64(rep.Correct) / float64(rep.Total)
	}
	return rep
}
