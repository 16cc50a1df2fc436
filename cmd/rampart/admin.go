package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

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
	cmd.AddCommand(token)
	return cmd
}
