package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

func newAdminCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Operator commands that work on the server's store directly"}
	var configPath, subject, kind, ttl, desc string
	token := &cobra.Command{
		Use:   "token --config FILE --subject NAME [--kind user|service] [--ttl 24h]",
		Short: "Issue an API token straight into the store (bootstrap the first admin, or a service)",
		Long: `Issue an API token by writing to the server's store directly, with the server's
configuration file: how the first administrator gets a token. The issue is recorded in the
ledger with the actor "operator" (rampart token list --all shows it). Needs the same access to
the database as the server.

It mints only what bootstrapping needs, so that it cannot be used to act as someone else
(invariant 8): a user token only for a member of the admin group as the policy files name it,
and service tokens for service:<name> subjects. Neither is bound to a sign-in session, so
neither can approve a request: approvals come only from a person's own session.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" || subject == "" {
				return usageErr("--config and --subject are required")
			}
			cfg, err := server.LoadConfig(configPath)
			if err != nil {
				return err
			}
			d, err := time.ParseDuration(ttl)
			if err != nil {
				return usageErr("--ttl %q is not a duration", ttl)
			}
			if kind == identity.KindUser && policy.SubjectKind(subject) == policy.KindUser {
				pol, err := policy.Load(os.DirFS(cfg.PolicyDir))
				if err != nil {
					return fmt.Errorf("read the policy to check --subject: %w", err)
				}
				if !pol.IsAdmin(subject) {
					return usageErr("--subject %s: rampart admin token mints a user token only for a member of the admin group %q as the policy files name it (to bootstrap administration); people sign in and mint their own tokens, and machines get service tokens (--kind service --subject service:NAME)",
						subject, pol.Settings().AdminGroup)
				}
			}
			st, err := server.OpenStore(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			ts := &identity.Tokens{Store: st, Now: time.Now}
			secret, t, err := ts.Issue(cmd.Context(), subject, kind, desc, "operator", d)
			if err != nil {
				return err
			}
			if g.output == output.Table {
				fmt.Fprintf(cmd.ErrOrStderr(), "Token %s for %s (%s) expires %s. Use it with RAMPART_TOKEN.\n", t.ID, t.Subject, t.Kind, t.ExpiresAt.UTC().Format(time.RFC3339))
			}
			return g.done(api.TokenResponse{Token: secret, ID: t.ID, Subject: t.Subject, Kind: t.Kind, ExpiresAt: t.ExpiresAt}, "%s\n", secret)
		},
	}
	token.Flags().StringVar(&configPath, "config", "", "server configuration file")
	token.Flags().StringVar(&subject, "subject", "", "who the token acts for")
	token.Flags().StringVar(&kind, "kind", identity.KindUser, "user or service")
	token.Flags().StringVar(&ttl, "ttl", "24h", "lifetime")
	token.Flags().StringVar(&desc, "description", "bootstrap", "what the token is for")
	var origin, out string
	ledgerKey := &cobra.Command{
		Use:   "ledger-key --out FILE [--origin NAME]",
		Short: "Make a new ledger signing key, before the first server starts (for several replicas, or a Kubernetes Secret)",
		Long: `Make a new ledger signing key and write it to FILE (mode 600; an existing file is never
replaced), and print its verifier key, the public half auditors pin. Every replica of a server
must sign with the same key: make it once with this command and give each replica the file
(ledger.signing_key_file), for example from a Kubernetes Secret. The origin names the ledger in
its checkpoints. A server that starts without a key makes one itself, in its data_dir.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr("--out is required: where to write the signing key")
			}
			skey, vkey, err := audit.GenerateKey(origin)
			if err != nil {
				return usageErr("--origin %q: %v", origin, err)
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists; a ledger signing key is never replaced (its checkpoints could not be verified any more): choose another --out", out)
			}
			if err != nil {
				return err
			}
			if _, err := f.WriteString(skey + "\n"); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			if g.output == output.Table {
				fmt.Fprintf(cmd.ErrOrStderr(), "Wrote the signing key of ledger %q to %s (keep it secret, back it up with the database). Its verifier key is above.\n", origin, out)
			}
			return g.done(map[string]string{"origin": origin, "signing_key_file": out, "verifier_key": vkey}, "%s\n", vkey)
		},
	}
	ledgerKey.Flags().StringVar(&origin, "origin", "rampart", "the ledger's name in its checkpoints")
	ledgerKey.Flags().StringVar(&out, "out", "", "where to write the signing key")
	cmd.AddCommand(token, ledgerKey)
	return cmd
}
