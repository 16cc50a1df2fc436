package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/server"
)

func newAdminCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Operator commands that work on the server's store directly"}
	var configPath, subject, kind, ttl, desc string
	token := &cobra.Command{
		Use:   "token --config FILE --subject NAME [--kind user|service] [--ttl 24h]",
		Short: "Issue an API token straight into the store (bootstrap the first admin)",
		Long: `Issue an API token by writing to the server's store directly, with the server's
configuration file: how the first administrator gets a token. The issue is recorded in the
ledger with the actor "operator". Needs the same access to the database as the server.`,
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
			fmt.Println(secret)
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %s for %s (%s) expires %s. Use it with RAMPART_TOKEN.\n", t.ID, t.Subject, t.Kind, t.ExpiresAt.UTC().Format(time.RFC3339))
			return nil
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
			fmt.Println(vkey)
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote the signing key of ledger %q to %s (keep it secret, back it up with the database). Its verifier key is above.\n", origin, out)
			return nil
		},
	}
	ledgerKey.Flags().StringVar(&origin, "origin", "rampart", "the ledger's name in its checkpoints")
	ledgerKey.Flags().StringVar(&out, "out", "", "where to write the signing key")
	cmd.AddCommand(token, ledgerKey)
	return cmd
}
