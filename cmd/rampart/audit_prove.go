package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
)

func newAuditProve(g *globals) *cobra.Command {
	var keyArg string
	cmd := &cobra.Command{
		Use:   "prove SEQ... [--key KEY]",
		Short: "Prove that ledger entries are in the ledger (an alert's evidence: rampart alerts show)",
		Long: `Fetches each entry (admins and auditors) and its inclusion proof, and checks that they
recompute the root of the server's newest checkpoint, signed by the ledger key pinned by
rampart audit verify (or --key; or, if neither, the key the server serves, which proves only
that the server is consistent with itself: pin the key first). Exit 0 when every entry is
proven, 1 otherwise.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErr("give the sequence numbers of the entries to prove (rampart alerts show ID prints them)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			seqs := make([]uint64, len(args))
			for i, a := range args {
				n, err := strconv.ParseUint(a, 10, 63)
				if err != nil {
					return usageErr("%q is not a ledger sequence number (a whole number from 0)", a)
				}
				seqs[i] = n
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := clistate.Load()
			if err != nil {
				return err
			}
			pinned := st.For(g.addr).LedgerKey
			if keyArg != "" {
				if pinned, err = readKey(keyArg); err != nil {
					return err
				}
			}
			rep, proven, err := api.ProveEntries(cmd.Context(), c, pinned, seqs)
			if err != nil {
				var kc *api.KeyChangedError
				if errors.As(err, &kc) {
					return err
				}
				return fmt.Errorf("NOT proven: %w", err)
			}
			return output.Print(os.Stdout, g.output, map[string]any{"origin": rep.Origin, "key": rep.Key, "size": rep.Checkpoint.Size,
				"root": fmt.Sprintf("%x", rep.Checkpoint.Root), "key_pinned": pinned != "", "entries": proven}, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "OK: %d entr%s proven in ledger %s, checkpoint size %d, root %x.\n", len(proven), map[bool]string{true: "y", false: "ies"}[len(proven) == 1],
					rep.Origin, rep.Checkpoint.Size, rep.Checkpoint.Root)
				if pinned == "" {
					fmt.Fprintf(tw, "  key:\tthe server's own (%s), not pinned: run rampart audit verify to pin it\n", rep.Key)
				}
				for _, p := range proven {
					s, err := audit.Summarize(p.Entry)
					if err != nil {
						fmt.Fprintf(tw, "  %d\tproven (%v)\n", p.Seq, err)
						continue
					}
					fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", p.Seq, s.Code, text.Escape(s.Actor), text.Escape(s.Message))
				}
			})
		},
	}
	cmd.Flags().StringVar(&keyArg, "key", "", "ledger public key, or a file holding it (default: the key pinned by audit verify)")
	return cmd
}
