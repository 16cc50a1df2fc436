package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
checkpoint", "读取 frontier-7 的权重") or for a resource and action(s). The candidates are the
roles the decision engine itself would honour, ranked by how much they grant (weighted by action
and sensitivity), then by how many approvals they need. A sentence that asks for several things
("read the base checkpoint and call the OpenAI API") gets one role per need.

When no requestable role fits, or a key word of the sentence matches nothing in the catalogue,
the answer is "No role fits", with the words not understood and the nearest resources, and the
command exits 4: never an unrelated role.

A language model, if the server has one configured, may choose among the candidates; its answer
is verified and refused if it is not a candidate or grants more than the deterministic choice.
A suggestion grants nothing: request the role with 'rampart request create'.`,
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
				return noFitCode(err)
			}
			if err := output.Print(os.Stdout, g.output, adv, func(tw *tabwriter.Writer) { printAdvice(tw, adv, true) }); err != nil {
				return err
			}
			if adv.Status != "" && adv.Status != suggest.StatusSuggested {
				return &codeError{code: exitNoFit}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&resource, "resource", "", "the resource you need access to")
	cmd.Flags().StringSliceVar(&actions, "action", nil, "the action(s) you need on it")
	cmd.AddCommand(newSuggestEvalCmd(g))
	return cmd
}

// noFitCode gives the server's "no requestable role grants this" (HTTP 422 no_candidate) the
// exit status of an answer where nothing fits.
func noFitCode(err error) error {
	var se *api.ServerError
	if errors.As(err, &se) && se.Code == api.CodeNoCandidate {
		return &codeError{code: exitNoFit, err: err}
	}
	return err
}

// printAdvice prints an answer: the role for each need, or why no role fits.
func printAdvice(tw *tabwriter.Writer, adv suggest.Advice, howToRequest bool) {
	if adv.Status != "" && adv.Status != suggest.StatusSuggested {
		printNoFit(tw, adv)
		return
	}
	if len(adv.Parts) > 1 {
		if adv.Intent != nil {
			fmt.Fprintf(tw, "Read as:\t%d needs (from %q)\n", len(adv.Parts), adv.Intent.Text)
		}
		fmt.Fprintf(tw, "Roles to request:\t%s\n", strings.Join(adv.Roles, ", "))
		for i, p := range adv.Parts {
			fmt.Fprintf(tw, "Need %d:\t%s on %s\n", i+1, strings.Join(p.Actions, " and "), p.Resource)
			printRole(tw, p)
		}
	} else {
		if adv.Intent != nil {
			fmt.Fprintf(tw, "Read as:\t%s on %s (from %q)\n", strings.Join(adv.Actions, " and "), adv.Resource, adv.Intent.Text)
		}
		printRole(tw, adv.AsPart())
		if len(adv.Candidates) > 1 {
			fmt.Fprintf(tw, "Other candidates:\t\n")
			for _, c := range adv.Candidates {
				if c.Role != adv.Role.Role {
					fmt.Fprintf(tw, "  %s\tprivilege %.0f, %d approver(s)\n", c.Role, c.Privilege, c.Approvals)
				}
			}
		}
		for _, alt := range adv.Alternatives {
			if len(alt.Candidates) > 0 {
				fmt.Fprintf(tw, "Also matches:\t%s (%s: %s)\n", alt.Resource, strings.Join(alt.Actions, ", "), alt.Candidates[0].Role)
			}
		}
	}
	if howToRequest {
		roles := adv.Roles
		if len(roles) == 0 {
			roles = []string{adv.Role.Role}
		}
		for _, r := range roles {
			fmt.Fprintf(tw, "Request it with:\trampart request create --role %s --reason \"…\"\n", r)
		}
	}
}

// printRole prints the role chosen for one need and why.
func printRole(tw *tabwriter.Writer, adv suggest.Part) {
	fmt.Fprintf(tw, "Least privileged role:\t%s\n", adv.Role.Role)
	fmt.Fprintf(tw, "  grants:\t%s on %d resource(s) (privilege %.0f)\n", strings.Join(adv.Role.Actions, ", "), adv.Role.Resources, adv.Role.Privilege)
	fmt.Fprintf(tw, "  approval:\t%d approver(s) under policy %s\n", adv.Role.Approvals, adv.Role.Policy)
	fmt.Fprintf(tw, "  why:\t%s\n", adv.Reason)
	if adv.Source == suggest.SourceModel {
		fmt.Fprintf(tw, "  chosen by:\tthe language model; %s\n", adv.ModelNote)
	} else if adv.ModelNote != "" {
		fmt.Fprintf(tw, "  note:\t%s\n", adv.ModelNote)
	}
}

// printNoFit says that no role fits, which words were not understood and what is nearest.
func printNoFit(tw *tabwriter.Writer, adv suggest.Advice) {
	why := "nothing in the catalogue fits what was asked"
	if adv.Status == suggest.StatusNotUnderstood {
		why = "a key word of the request matches nothing in the catalogue"
	}
	fmt.Fprintf(tw, "No role fits:\t%s (%s)\n", why, adv.Status)
	if adv.Intent != nil {
		fmt.Fprintf(tw, "Request:\t%q\n", adv.Intent.Text)
	}
	if len(adv.Unknown) > 0 {
		fmt.Fprintf(tw, "Not understood:\t%s\n", strings.Join(adv.Unknown, ", "))
	}
	if len(adv.Nearest) > 0 {
		fmt.Fprintf(tw, "Nearest resources:\t%s\n", strings.Join(adv.Nearest, ", "))
	}
	if adv.Message != "" {
		fmt.Fprintf(tw, "What to do:\t%s\n", adv.Message)
	} else {
		fmt.Fprintf(tw, "What to do:\tsearch the catalogue with 'rampart search WORDS', or ask the owners of the nearest resource\n")
	}
}

func newSuggestEvalCmd(g *globals) *cobra.Command {
	var dir string
	var minAcc, minCat float64
	cmd := &cobra.Command{
		Use:   "eval FILE [--policy DIR] [--min 0.95] [--min-category 0.90]",
		Short: "Measure suggestion accuracy on a labelled set, overall and per category",
		Long: `Run a labelled set and print the accuracy, overall and per category, and every miss with its
file:line. Each case has an intent (or a resource and an action), expect (a role; a list of roles,
one per need, matched as a set; or none: the answer must be that no role fits), and optionally a
category and a note (see docs/suggest-eval.md).

With --policy DIR the deterministic engine runs offline on that catalogue; otherwise each case is
asked of the server (with its model, if one is configured). --min fails the command (exit 1)
below that overall accuracy and --min-category below that accuracy in any category, for CI.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range []struct {
				name string
				v    float64
			}{{"--min", minAcc}, {"--min-category", minCat}} {
				if f.v < 0 || f.v > 1 {
					return usageErr("%s %g: give an accuracy from 0 to 1, e.g. 0.95", f.name, f.v)
				}
			}
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
				rep, err = evaluateRemote(cmd.Context(), c, cases)
				if err != nil {
					return err
				}
			}
			perr := output.Print(os.Stdout, g.output, rep, func(tw *tabwriter.Writer) { printReport(tw, args[0], rep) })
			if perr != nil {
				return perr
			}
			var fails []string
			if rep.Accuracy < minAcc {
				fails = append(fails, fmt.Sprintf("accuracy %.1f%% is below --min %.1f%%", 100*rep.Accuracy, 100*minAcc))
			}
			for _, n := range rep.Below(minCat) {
				c := rep.Categories[n]
				fails = append(fails, fmt.Sprintf("category %s: %.1f%% (%d of %d) is below --min-category %.1f%%", n, 100*c.Accuracy, c.Correct, c.Total, 100*minCat))
			}
			if len(fails) > 0 {
				return errors.New(strings.Join(fails, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "policy", "", "evaluate offline on this policy directory")
	cmd.Flags().Float64Var(&minAcc, "min", 0, "fail below this overall accuracy (0 to 1)")
	cmd.Flags().Float64Var(&minCat, "min-category", 0, "fail below this accuracy in any category (0 to 1)")
	return cmd
}

func printReport(tw *tabwriter.Writer, file string, rep suggest.Report) {
	fmt.Fprintf(tw, "accuracy: %.1f%% (%d of %d)\n", 100*rep.Accuracy, rep.Correct, rep.Total)
	fmt.Fprintln(tw, "CATEGORY\tCASES\tCORRECT\tACCURACY")
	for _, n := range rep.CategoryNames() {
		c := rep.Categories[n]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\n", n, c.Total, c.Correct, 100*c.Accuracy)
	}
	// A line without a tab ends the table's columns, so the misses align on their own.
	switch n := len(rep.Misses); n {
	case 0:
	case 1:
		fmt.Fprintln(tw, "1 miss:")
	default:
		fmt.Fprintf(tw, "%d misses:\n", n)
	}
	for _, m := range rep.Misses {
		what := fmt.Sprintf("%q", m.Intent)
		if m.Intent == "" {
			what = m.Action + " on " + m.Resource
		}
		got := m.Status
		if len(m.Got) > 0 {
			got += " " + strings.Join(m.Got, ", ")
		}
		if m.Error != "" {
			got = "error: " + m.Error
		}
		fmt.Fprintf(tw, "miss:\t%s:%d\t[%s]\t%s\twant %s\tgot %s\n", file, m.Line, orUncategorised(m.Category), what, m.Expect, got)
	}
}

func orUncategorised(c string) string {
	if c == "" {
		return suggest.Uncategorised
	}
	return c
}

// evaluateRemote asks the server each case. The server's "no requestable role" (422) is the
// answer nothing_fits and an unknown resource (404) not_understood; any other error stops the
// run when it is the server's or the network's fault (an eval against a broken server is no
// measure), and is a miss otherwise.
func evaluateRemote(ctx context.Context, c *api.Client, cases []suggest.Case) (suggest.Report, error) {
	rep := suggest.NewReport()
	for _, cs := range cases {
		b := api.SuggestBody{Intent: cs.Intent}
		if cs.Intent == "" {
			b = api.SuggestBody{Resource: cs.Resource, Actions: []string{cs.Action}}
		}
		adv, err := c.Suggest(ctx, b)
		var se *api.ServerError
		switch {
		case err == nil:
			rep.Add(cs, adv.Status, adv.Roles, nil)
		case errors.As(err, &se) && se.Code == api.CodeNoCandidate:
			rep.Add(cs, suggest.StatusNothingFits, nil, nil)
		case errors.As(err, &se) && se.Code == api.CodeNotFound && cs.Intent == "":
			rep.Add(cs, suggest.StatusNotUnderstood, nil, nil)
		case errors.As(err, &se) && se.Status < 500 && se.Status != http.StatusUnauthorized && se.Status != http.StatusForbidden && se.Status != http.StatusTooManyRequests:
			rep.Add(cs, "", nil, err)
		default:
			return *rep, err
		}
	}
	return *rep, nil
}
