// Command rampart is Rampart's single binary: the control plane (`rampart server`, `rampart dev`)
// and the CLI client for people and scripts.
//
// Exit codes: 0 ok, 1 error, 2 usage, 3 denied (check).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1
	exitUsage  = 2
	exitDenied = 3
)

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
	code := exitError
	var ce *codeError
	if errors.As(err, &ce) {
		code = ce.code
	} else if isUsage(err) {
		code = exitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "rampart:", msg)
		if code == exitUsage {
			fmt.Fprintln(os.Stderr, "Run 'rampart --help' or 'rampart <command> --help' for usage.")
		}
	}
	os.Exit(code)
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

Start a local control plane with 'rampart dev', then use the other commands against it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := output.Check(g.output); err != nil {
				return &codeError{code: exitUsage, err: err}
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
		newDevCmd(), newServerCmd(), newEgressCmd(), newAdminCmd(),
		newLoginCmd(g), newLogoutCmd(g), newWhoamiCmd(g), newResourcesCmd(g), newRolesCmd(g),
		newRequestCmd(g), newGrantCmd(g), newCheckCmd(g), newAuditCmd(g), newPolicyCmd(g), newTokenCmd(g),
		newSearchCmd(g), newSuggestCmd(g), newSessionCmd(g), newMFACmd(g), newUserCmd(g), newWeightsCmd(g), newVaultCmd(g), newKMSPluginCmd(), newAdmissionCmd(), newKubeCmd(g), newExceptionCmd(g),
	)
	return root
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

// exactArgs is cobra.ExactArgs with a usage exit code and the argument names.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErr("%s needs %d argument(s): %v (got %d)", cmd.CommandPath(), len(names), names, len(args))
		}
		return nil
	}
}
