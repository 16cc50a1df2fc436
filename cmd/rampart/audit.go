package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/clistate"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/internal/text"
)

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read, export and verify the tamper-evident ledger"}
	cmd.AddCommand(newAuditTail(g), newAuditExport(g), newAuditVerify(g), newAuditCheckpoint(g), newAuditKey(g), newAuditProve(g))
	return cmd
}

func newAuditKey(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the ledger's public key (pin it for offline verification: audit verify, change verify)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.LedgerKey(cmd.Context())
			if err != nil {
				return err
			}
			return g.done(k, "%s\n", k.Key)
		},
	}
}

func newAuditTail(g *globals) *cobra.Command {
	var n uint64
	var follow bool
	cmd := &cobra.Command{
		Use:   "tail [-n 20] [--follow]",
		Short: "Show the newest ledger entries (admins and auditors)",
		Long: `Show the newest ledger entries (admins and auditors): a line each, or with -o json one entry
per line (JSON lines, the entry's fields as stored), or with -o yaml one YAML document per entry.
With --follow, keep printing new entries as they are written.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			cp, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			from := uint64(0)
			if cp.Size > n {
				from = cp.Size - n
			}
			print := func(seq uint64, data []byte) error {
				from = seq + 1
				// Entries recorded before the text rule (or by a compromised writer) may hold
				// control or bidirectional characters: shown escaped, never obeyed (invariant 7).
				// `audit export` gives the exact bytes.
				return output.Stream(os.Stdout, g.output, text.EscapeJSON(data), func() (string, error) {
					s, err := audit.Summarize(data)
					if err != nil {
						return "", err
					}
					return fmt.Sprintf("%6d  %s  %-28s %-10s %s", s.Seq, s.Time.Format(time.RFC3339), text.Escape(s.Code), text.Escape(s.Actor), text.Escape(s.Message)), nil
				})
			}
			if err := c.Entries(cmd.Context(), from, 0, print); err != nil {
				return err
			}
			for follow {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(time.Second):
				}
				if err := c.Entries(cmd.Context(), from, 0, print); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().Uint64VarP(&n, "lines", "n", 20, "how many entries")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new entries")
	return cmd
}

func newAuditExport(g *globals) *cobra.Command {
	var file, cpFile string
	var from uint64
	cmd := &cobra.Command{
		Use:         "export [--file entries.jsonl] [--checkpoint cp.txt]",
		Annotations: map[string]string{fixedOutput: "it writes the entries' exact bytes as JSON lines, which verification hashes"},
		Short:       "Write ledger entries as JSON lines, with the signed checkpoint that covers them",
		Long: `Write every ledger entry (from --from) as JSON lines, byte for byte as hashed. With
--checkpoint, also write the signed checkpoint covering exactly the exported entries, so that
'rampart audit verify --entries F --checkpoint C --key K' can verify them offline. The ledger's
public key is printed on standard error.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.LedgerKey(cmd.Context())
			if err != nil {
				return err
			}
			cp, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			var w io.Writer = os.Stdout
			var f *os.File
			if file != "" && file != "-" {
				if f, err = os.Create(file); err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			bw := bufio.NewWriter(w)
			n := uint64(0)
			if from < cp.Size {
				err = c.Entries(cmd.Context(), from, cp.Size-from, func(_ uint64, data []byte) error {
					n++
					bw.Write(data)
					return bw.WriteByte('\n')
				})
				if err != nil {
					return err
				}
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if fi, err := os.Stat(file); f != nil && err == nil && fi.Mode().IsRegular() {
				if err := f.Sync(); err != nil {
					return err
				}
			}
			if cpFile != "" {
				if err := os.WriteFile(cpFile, []byte(cp.Checkpoint), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "exported %d entries (checkpoint size %d) of ledger %s\nledger key: %s\n", n, cp.Size, k.Origin, k.Key)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "write to this file (default standard output)")
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "also write the covering signed checkpoint to this file")
	cmd.Flags().Uint64Var(&from, "from", 0, "first entry to export")
	return cmd
}

// readKey accepts a key or a file holding one.
func readKey(s string) (string, error) {
	if _, err := audit.NewVerifier(s); err == nil {
		return s, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return "", fmt.Errorf("--key %q is neither a key (name+hash+base64) nor a readable file: %v", s, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func newAuditVerify(g *globals) *cobra.Command {
	var entries, cpFile, key string
	var resetKey bool
	var w witnessFlags
	cmd := &cobra.Command{
		Use:   "verify [--entries FILE --checkpoint FILE --key KEY] [--witness KEY]... [--max-age D]",
		Short: "Verify the ledger: offline from an export, or against the server",
		Long: `Offline (--entries, --checkpoint, --key): re-hash every exported entry, rebuild the Merkle
tree and check it against the signed checkpoint and the public key. Nothing else is trusted.

Against the server: check that its newest checkpoint is signed by the ledger key pinned on
first use, that it is consistent with the checkpoint this CLI saw last time (so history was not
rewritten or truncated in between), and, for admins and auditors, re-hash every entry. The new
checkpoint is remembered for next time.

--witness KEY (repeatable; a witness's cosignature verifier key, or a file holding it) also
requires a valid cosignature by that witness on the checkpoint verified (c2sp.org/tlog-witness):
the witness checked it against every checkpoint of this ledger it cosigned before, so a database
rolled back together with the server's pinned checkpoint is caught even by an auditor who never
ran verify before. Against the server, it waits a few seconds for the newest checkpoint to be
cosigned. --max-age D also requires each cosignature to be at most D old (the server refreshes
them every witness_refresh, 1m by default): a ledger rolled back to an older, cosigned state
can get no fresh one. Exit 0 when everything verifies, 1 otherwise.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if w.maxAge < 0 {
				return usageErr("--max-age must not be negative")
			}
			if w.maxAge > 0 && len(w.keys) == 0 {
				return usageErr("--max-age applies to witness cosignatures: give --witness too")
			}
			keys, err := w.read()
			if err != nil {
				return err
			}
			if entries != "" || cpFile != "" {
				if entries == "" || cpFile == "" || key == "" {
					return usageErr("offline verification needs all of --entries, --checkpoint and --key")
				}
				return verifyOffline(g.output, entries, cpFile, key, keys, w.maxAge)
			}
			return verifyOnline(cmd, g, key, resetKey, api.VerifyOptions{Witnesses: keys, MaxAge: w.maxAge})
		},
	}
	cmd.Flags().StringVar(&entries, "entries", "", "exported entries (JSON lines)")
	cmd.Flags().StringVar(&cpFile, "checkpoint", "", "signed checkpoint file")
	cmd.Flags().StringVar(&key, "key", "", "ledger public key, or a file holding it")
	cmd.Flags().BoolVar(&resetKey, "reset-key", false, "trust the server's current key instead of the pinned one")
	cmd.Flags().StringArrayVar(&w.keys, "witness", nil, "require a valid cosignature by this witness key (or a file holding it); repeatable")
	cmd.Flags().DurationVar(&w.maxAge, "max-age", 0, "with --witness: require each cosignature to be at most this old (0: any age)")
	return cmd
}

// witnessFlags are verify's --witness and --max-age.
type witnessFlags struct {
	keys   []string
	maxAge time.Duration
}

// read returns the witness keys, reading those given as files.
func (w witnessFlags) read() ([]string, error) {
	var out []string
	for _, k := range w.keys {
		if _, err := audit.NewWitnessVerifier(k); err == nil {
			out = append(out, strings.TrimSpace(k))
			continue
		}
		b, err := os.ReadFile(k)
		if err != nil {
			_, perr := audit.NewWitnessVerifier(k)
			return nil, usageErr("--witness %q is neither a witness key nor a readable file: %v", k, perr)
		}
		if _, err := audit.NewWitnessVerifier(string(b)); err != nil {
			return nil, usageErr("--witness %s: %v", k, err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out, nil
}

func verifyOffline(format, entries, cpFile, keyArg string, witnesses []string, maxAge time.Duration) error {
	key, err := readKey(keyArg)
	if err != nil {
		return err
	}
	signed, err := os.ReadFile(cpFile)
	if err != nil {
		return err
	}
	f, err := os.Open(entries)
	if err != nil {
		return err
	}
	defer f.Close()
	var cos []audit.Cosignature
	if len(witnesses) > 0 {
		v, err := audit.NewVerifier(key)
		if err != nil {
			return err
		}
		ws, err := api.WitnessVerifiers(witnesses)
		if err != nil {
			return err
		}
		if _, cos, err = audit.OpenCosigned(signed, v, ws); err != nil {
			return fmt.Errorf("ledger does NOT verify: %w", err)
		}
		if err := api.CheckFresh(cos, maxAge, time.Now()); err != nil {
			return fmt.Errorf("ledger does NOT verify: %w", err)
		}
	}
	tree, cp, err := audit.VerifyExport(f, signed, key)
	if err != nil {
		return fmt.Errorf("ledger does NOT verify: %w", err)
	}
	if cos == nil {
		cos = []audit.Cosignature{}
	}
	return output.Print(os.Stdout, format, map[string]any{
		"origin": cp.Origin, "key": key, "size": cp.Size, "root": fmt.Sprintf("%x", cp.Root), "entries": tree.Size(),
		"uncovered_entries": tree.Size() - cp.Size, "cosignatures": cos,
	}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "OK: %d entries verify against the checkpoint of ledger %s (size %d, root %x)", tree.Size(), cp.Origin, cp.Size, cp.Root)
		if extra := tree.Size() - cp.Size; extra > 0 {
			fmt.Fprintf(tw, "; %d later entries are not covered by this checkpoint", extra)
		}
		fmt.Fprintln(tw)
		for _, c := range cos {
			fmt.Fprintf(tw, "  cosigned by witness %s at %s\n", c.Witness, c.Time.Format(time.RFC3339))
		}
	})
}

func verifyOnline(cmd *cobra.Command, g *globals, keyArg string, resetKey bool, o api.VerifyOptions) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	st, err := clistate.Load()
	if err != nil {
		return err
	}
	s := st.For(g.addr)
	pinned, previous := s.LedgerKey, []byte(s.Checkpoint)
	if keyArg != "" {
		if pinned, err = readKey(keyArg); err != nil {
			return err
		}
	}
	if resetKey {
		pinned, previous = "", nil
	}
	if len(previous) == 0 || (pinned != s.LedgerKey) {
		previous = nil
	}
	rep, err := api.VerifyLedger(cmd.Context(), c, pinned, previous, o)
	if err != nil {
		var kc *api.KeyChangedError
		if errors.As(err, &kc) {
			return err
		}
		return fmt.Errorf("ledger does NOT verify: %w", err)
	}
	firstUse := s.LedgerKey == ""
	s.LedgerKey, s.Checkpoint = rep.Key, string(rep.Signed)
	if err := st.Save(); err != nil {
		return err
	}
	return output.Print(os.Stdout, g.output, map[string]any{
		"origin": rep.Origin, "key": rep.Key, "size": rep.Checkpoint.Size, "root": fmt.Sprintf("%x", rep.Checkpoint.Root),
		"consistent_with_size": previousSize(rep), "entries_rehashed": rep.Full, "cosignatures": rep.Cosignatures,
	}, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "OK: ledger %s verifies.\n", rep.Origin)
		fmt.Fprintf(tw, "  checkpoint:\tsize %d, root %x, signed by %s\n", rep.Checkpoint.Size, rep.Checkpoint.Root, rep.Key)
		switch {
		case rep.Previous != nil:
			fmt.Fprintf(tw, "  consistency:\tproven with the checkpoint of size %d seen before: no history was rewritten\n", rep.Previous.Size)
		case firstUse:
			fmt.Fprintf(tw, "  key:\tpinned now (first use); later runs prove consistency with this checkpoint\n")
		default:
			fmt.Fprintf(tw, "  consistency:\tno earlier checkpoint remembered for this key\n")
		}
		for _, c := range rep.Cosignatures {
			fmt.Fprintf(tw, "  witness:\tcosigned by %s at %s\n", c.Witness, c.Time.Format(time.RFC3339))
		}
		if rep.Full {
			fmt.Fprintf(tw, "  entries:\tall %d re-hashed and match the signed root\n", rep.Checkpoint.Size)
		} else {
			fmt.Fprintf(tw, "  entries:\tnot re-hashed (reading entries needs the admin or auditor group)\n")
		}
	})
}

func previousSize(rep api.LedgerReport) any {
	if rep.Previous == nil {
		return nil
	}
	return rep.Previous.Size
}

func newAuditCheckpoint(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "checkpoint",
		Short: "Print a signed checkpoint covering every committed entry (issued now if needed)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			cp, err := c.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, cp, func(tw *tabwriter.Writer) { fmt.Fprint(tw, cp.Checkpoint) })
		},
	}
}
