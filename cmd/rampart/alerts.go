package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/detect"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
)

func newAlertsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Detection's alerts: list, show with evidence, acknowledge, resolve (docs/alerts.md)"}
	var f detect.AlertFilter
	var since string
	list := &cobra.Command{
		Use:   "list [--state open|acked|resolved] [--rule R] [--severity S] [--since 24h] [--limit N] [--before ID]",
		Short: "List alerts, newest first (admins and auditors)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := f.Normalize(); err != nil {
				return usageErr("--state: %v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.Alerts(cmd.Context(), f, since)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, l, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSTATE\tSEVERITY\tRULE\tKEY\tCOUNT\tUPDATED")
				for _, a := range l.Alerts {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", a.ID, a.State, text.Escape(a.Severity), text.Escape(a.Rule), text.Escape(a.Key), a.Count, a.Updated.Local().Format(time.DateTime))
				}
				if l.NextBefore > 0 {
					fmt.Fprintf(tw, "\nMore: rampart alerts list --before %d\n", l.NextBefore)
				}
			})
		},
	}
	list.Flags().StringVar(&f.State, "state", "", "only alerts in this state: open, acked or resolved")
	list.Flags().StringVar(&f.Rule, "rule", "", "only alerts of this detection rule")
	list.Flags().StringVar(&f.Severity, "severity", "", "only alerts of this severity")
	list.Flags().StringVar(&since, "since", "", "only alerts updated since: a duration before now (24h) or an RFC 3339 time")
	list.Flags().IntVar(&f.Limit, "limit", 0, "at most this many (default 100, at most 1000)")
	list.Flags().Int64Var(&f.Before, "before", 0, "only alerts with an id below this (the next page)")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an alert with the ledger entries that are its evidence, and how to prove them",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			d, err := c.Alert(cmd.Context(), id)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, d, func(tw *tabwriter.Writer) {
				printAlert(tw, d.Alert)
				fmt.Fprintln(tw, "\nFirings (detect.alert):")
				printEntries(tw, d.Firings)
				fmt.Fprintf(tw, "\nEvidence (%d entries):\n", len(d.Evidence))
				printEntries(tw, d.Evidence)
				fmt.Fprintf(tw, "\nProve they are in the ledger: %s\n", d.Prove)
			})
		},
	}
	cmd.AddCommand(list, show, newAlertTransition(g, "ack", "Acknowledge an open alert: someone is looking at it (admins)"),
		newAlertTransition(g, "resolve", "Resolve an alert, with a note saying why (admins)"))
	return cmd
}

func newAlertTransition(g *globals, verb, short string) *cobra.Command {
	var note string
	cmd := &cobra.Command{
		Use:   verb + " ID [--note TEXT]",
		Short: short,
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := alertArg(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var a detect.Alert
			if verb == "ack" {
				a, err = c.AckAlert(cmd.Context(), id, note)
			} else {
				a, err = c.ResolveAlert(cmd.Context(), id, note)
			}
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, a, func(tw *tabwriter.Writer) { printAlert(tw, a) })
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why (recorded in the ledger with the change)")
	return cmd
}

func alertArg(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErr("%q is not an alert id: a positive whole number, as `rampart alerts list` shows", s)
	}
	return id, nil
}

func printAlert(tw *tabwriter.Writer, a detect.Alert) {
	fmt.Fprintf(tw, "Alert:\t%d\n", a.ID)
	fmt.Fprintf(tw, "State:\t%s\n", a.State)
	fmt.Fprintf(tw, "Rule:\t%s\n", text.Escape(a.Rule))
	fmt.Fprintf(tw, "Key:\t%s\n", text.Escape(a.Key))
	fmt.Fprintf(tw, "Severity:\t%s\n", text.Escape(a.Severity))
	fmt.Fprintf(tw, "Firings:\t%d (ledger entries %d to %d)\n", a.Count, a.FirstSeq, a.LastSeq)
	fmt.Fprintf(tw, "Created:\t%s\n", a.Created.Local().Format(time.RFC3339))
	fmt.Fprintf(tw, "Updated:\t%s\n", a.Updated.Local().Format(time.RFC3339))
	if a.AckedBy != "" {
		fmt.Fprintf(tw, "Acked by:\t%s\n", a.AckedBy)
	}
	if a.ResolvedBy != "" {
		fmt.Fprintf(tw, "Resolved by:\t%s\n", a.ResolvedBy)
	}
	if a.Note != "" {
		fmt.Fprintf(tw, "Note:\t%s\n", text.Escape(a.Note))
	}
}

func printEntries(tw *tabwriter.Writer, es []api.AlertEntry) {
	for _, e := range es {
		s, err := audit.Summarize(e.Entry)
		if err != nil {
			fmt.Fprintf(tw, "  %d\t(unreadable: %v)\n", e.Seq, err)
			continue
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", e.Seq, s.Code, text.Escape(s.Actor), text.Escape(s.Message))
	}
}
