package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/internal/output"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Mint, list and revoke API tokens"}
	var subject, kind, ttl, desc string
	create := &cobra.Command{
		Use:   "create [--ttl D] [--description TEXT] | --kind service --subject service:NAME",
		Short: "Mint a token for yourself, bound to your session (admins: service tokens for service: subjects)",
		Long: `Mint an API token for yourself, from your signed-in session (rampart login): it acts only for
you, lasts until your session ends (or --ttl, if shorter), and is revoked with the session. A token
that outlives the session needs a multi-factor sign-in in the last 5 minutes (rampart login
--step-up); it is recorded as a High ledger entry, cannot approve requests, and is revoked if you
are disabled. Nobody, admins included, can obtain a token that acts as another person. Admins
issue service tokens (--kind service) for service:<name> subjects: gateways, webhooks, CI.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), api.CreateTokenBody{Subject: subject, Kind: kind, TTL: ttl, Description: desc})
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, t, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s\n", t.Token)
				bound := ""
				if t.SessionBound {
					bound = ", bound to session " + t.SessionID
				}
				fmt.Fprintf(os.Stderr, "Token %s for %s (%s%s) expires %s. It is shown once; store it as a secret.\n", t.ID, t.Subject, t.Kind, bound, t.ExpiresAt.UTC().Format(time.RFC3339))
			})
		},
	}
	create.Flags().StringVar(&subject, "subject", "", "who the token acts for: yourself (default), or service:NAME with --kind service")
	create.Flags().StringVar(&kind, "kind", "user", "user or service (service tokens may check any subject and never approve)")
	create.Flags().StringVar(&ttl, "ttl", "", "lifetime (default: until your session ends; service tokens 24h)")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	var listSubject string
	var all bool
	list := &cobra.Command{
		Use:   "list [--subject NAME | --all]",
		Short: "List your tokens (admins and auditors: anyone's); secrets are never shown",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context(), listSubject, all)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, ts, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSUBJECT\tKIND\tISSUED BY\tSESSION\tCREATED\tEXPIRES\tSTATE\tDESCRIPTION")
				now := time.Now()
				for _, t := range ts {
					state := "active"
					switch {
					case !t.RevokedAt.IsZero():
						state = "revoked: " + t.RevokedReason
					case !now.Before(t.ExpiresAt):
						state = "expired"
					}
					ses := "-"
					switch {
					case t.SessionBound:
						ses = t.SessionID + " (bound)"
					case t.SessionID != "":
						ses = t.SessionID + " (outlives it)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Subject, t.Kind, orDash(t.IssuedBy), ses,
						t.CreatedAt.Local().Format(time.DateTime), t.ExpiresAt.Local().Format(time.DateTime), state, t.Description)
				}
			})
		},
	}
	list.Flags().StringVar(&listSubject, "subject", "", "whose tokens (admins and auditors)")
	list.Flags().BoolVar(&all, "all", false, "everyone's tokens (admins and auditors)")
	revoke := &cobra.Command{
		Use:   "revoke TOKEN-ID",
		Short: "Revoke a token (your own; admins: any)",
		Args:  exactArgs("TOKEN-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			return g.done(map[string]any{"id": args[0], "revoked": true}, "Token %s revoked.\n", args[0])
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
