// Command rampart is Rampart's single binary: the control plane (`rampart server`, `rampart dev`)
// and the CLI client for people and scripts.
//
// Scripts rely on two promises, kept for every command and checked by TestCLIExitCodesAndFormats,
// which walks the command tree: the exit status (exitHelp below, docs/cli.md) and the output
// format (-o table, json or yaml; a command whose output has a fixed form refuses json and yaml).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitDenied = 3
	exitNoFit  = 4
)

// exitHelp is the table of exit codes, shown by `rampart --help` (docs/cli.md has it too).
const exitHelp = `Exit status:
  0  done (check: allowed)
  1  error: the server could not be reached or refused the request for another reason than a
     denial (not found, conflict, rate limit, a credential it does not accept: expired, revoked,
     unknown), or a local file could not be read or written; stderr says which
  2  usage: an unknown command or flag, a missing or extra argument, an invalid flag value, or a
     malformed credential in RAMPART_TOKEN; nothing was sent to the server
  3  denied: the policy or the decision engine refused (HTTP 403 on any command, a DENIED check,
     a failing kube scan, iac check or iac drift, a WEAKENED policy diff)
  4  no role fits: rampart suggest found no requestable role for what was asked, or did not
     understand a key word of it (the output names the words and the nearest resources);
     request create --resource filed nothing because some resource has no role`

// fixedOutput marks (in Annotations) a command whose output has one form of its own (a server's
// logs, the ledger's exact bytes, a shell script): it refuses -o json and -o yaml.
const fixedOutput = "rampart.dev/fixed-output"

// codeError carries an exit code; a nil err prints nothing.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func usageErr(format string, args ...any) error {
	return &codeError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// globals are the flags every client command shares.
type globals struct {
	addr   string
	output string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	code := exitCode(err)
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "rampart:", msg)
		if code == exitUsage {
			fmt.Fprintln(os.Stderr, "Run 'rampart --help' or 'rampart <command> --help' for usage.")
		}
	}
	os.Exit(code)
}

// exitCode maps an error to the exit status of exitHelp.
func exitCode(err error) int {
	var ce *codeError
	var se *api.ServerError
	var oe *api.OAuthError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.As(err, &se):
		// The server answered: never a usage error, whatever its message says (isUsage matches
		// words such as "accepts " that a server's message may hold).
		if se.Status == http.StatusForbidden {
			return exitDenied
		}
		return exitError
	case errors.As(err, &oe):
		if oe.Status == http.StatusForbidden {
			return exitDenied
		}
		return exitError
	case isUsage(err):
		return exitUsage
	}
	return exitError
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "rampart",
		Short: "Rampart secures research infrastructure: one grant ledger, enforced everywhere, proven by a tamper-evident record",
		Long: `Rampart is a control plane for just-in-time, multi-party-approved access to critical
resources such as unreleased model weights. Access is requested, approved by policy-defined
approvers, granted for a limited time, checked by every enforcement point, and recorded in a
Merkle-tree ledger with signed checkpoints.

Start a local control plane with 'rampart dev', then use the other commands against it.

Output: -o table (for people), json or yaml (for scripts; an empty list is [], never null).

` + exitHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(g.output); err != nil {
				return &codeError{code: exitUsage, err: err}
			}
			if g.output != output.Table && fixed(cmd) {
				return usageErr("-o %s does not apply to %s: %s", g.output, cmd.CommandPath(), cmd.Annotations[fixedOutput])
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return &codeError{code: exitUsage, err: err} })
	defAddr := os.Getenv("RAMPART_ADDR")
	if defAddr == "" {
		defAddr = defaultAddr
	}
	root.PersistentFlags().StringVar(&g.addr, "addr", defAddr, "server address (env RAMPART_ADDR)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", output.Table, "output format: table, json or yaml")
	root.AddCommand(
		newDevCmd(), newServerCmd(), newEgressCmd(), newAdminCmd(g),
		newLoginCmd(g), newLogoutCmd(g), newWhoamiCmd(g), newResourcesCmd(g), newRolesCmd(g),
		newRequestCmd(g), newGrantCmd(g), newCheckCmd(g), newAuditCmd(g), newPolicyCmd(g), newTokenCmd(g),
		newSearchCmd(g), newSuggestCmd(g), newSessionCmd(g), newMFACmd(g), newUserCmd(g), newWeightsCmd(g), newSecretCmd(g), newVaultCmd(g), newKMSPluginCmd(), newAdmissionCmd(), newKubeCmd(g), newIACCmd(g), newExceptionCmd(g), newChangeCmd(g), newCICmd(g), newPipelineCmd(g), newAlertsCmd(g), newDetectCmd(g),
	)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			c.Annotations = map[string]string{fixedOutput: "it prints help text"}
		case "completion":
			for _, sh := range c.Commands() {
				sh.Annotations = map[string]string{fixedOutput: "it prints a shell script"}
			}
		}
	}
	groups(root)
	return root
}

// fixed reports whether cmd's output has a form of its own (fixedOutput).
func fixed(cmd *cobra.Command) bool {
	_, ok := cmd.Annotations[fixedOutput]
	return ok
}

// groups makes every command that only groups others refuse what is not one of them: cobra
// checks the arguments of the root alone, and a group without a Run prints its help and
// succeeds whatever follows it (`rampart audit veryfy` exited 0).
func groups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		groups(sub)
	}
	if !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if cmd.SuggestionsMinimumDistance <= 0 {
			cmd.SuggestionsMinimumDistance = 2
		}
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return &codeError{code: exitUsage, err: errors.New(msg)}
	}
	// Without a subcommand, a group shows what it holds, as the root does.
	c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[fixedOutput] = "it groups other commands; give one of them"
}

// isUsage recognises cobra's argument and command errors.
func isUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires exactly", "required flag", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// client returns an API client for the server, authenticated with $RAMPART_TOKEN or the token
// saved by `rampart login`.
func (g *globals) client() (*api.Client, error) {
	token := os.Getenv("RAMPART_TOKEN")
	if token != "" {
		if err := identity.CheckForm(token); err != nil {
			return nil, usageErr("RAMPART_TOKEN is %v. Set it to an API token (rampart token create) or a session access token (rampart login --print-token), or unset it to use the login saved by 'rampart login'", err)
		}
	}
	if token == "" {
		st, err := clistate.Load()
		if err != nil {
			return nil, err
		}
		if err := refreshIfDue(st, g.addr); err != nil {
			return nil, err
		}
		token = st.For(g.addr).Token
	}
	if token == "" {
		return nil, fmt.Errorf("not logged in to %s: run `rampart login` (or `rampart login --dev --user NAME` against rampart dev without signing in), or set RAMPART_TOKEN", g.addr)
	}
	return api.NewClient(g.addr, token), nil
}

// done prints what a command did: v under -o json and yaml, the sentence (format, args) as its
// table.
func (g *globals) done(v any, format string, args ...any) error {
	return output.Print(os.Stdout, g.output, v, func(tw *tabwriter.Writer) { fmt.Fprintf(tw, format, args...) })
}

// exactArgs is cobra.ExactArgs with a usage exit code and the argument names.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErr("%s needs %d argument(s): %v (got %d)", cmd.CommandPath(), len(names), names, len(args))
		}
		return nil
	}
}
