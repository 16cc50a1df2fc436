package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/secrets"
)

// secretName accepts NAME or secrets/NAME, checked before anything is sent.
func secretName(arg string) (string, error) {
	name := strings.TrimPrefix(arg, "secrets/")
	if err := secrets.CheckName(name); err != nil {
		return "", usageErr("%v", err)
	}
	return name, nil
}

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Store and read small secrets (API keys, deploy keys; up to 64 KiB), each read and write under a grant and in the ledger"}
	var file string
	put := &cobra.Command{
		Use:   "put NAME [--file F]",
		Short: "Store a new version of secrets/NAME from standard input or --file, byte for byte (needs write)",
		Long: `Stores a new version of secrets/NAME. The value is read from --file, or from standard input,
exactly as given (printf '%s' "$TOKEN" | rampart secret put ci/deploy-key); it is never an
argument, so it never shows in the process list or the shell's history.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := secretName(args[0])
			if err != nil {
				return err
			}
			var value []byte
			if file != "" {
				value, err = os.ReadFile(file)
			} else {
				value, err = io.ReadAll(io.LimitReader(os.Stdin, secrets.MaxValueSize+1))
			}
			defer clear(value)
			if err != nil {
				return err
			}
			if len(value) > secrets.MaxValueSize {
				return usageErr("the value is over %d bytes (64 KiB); keep larger material in the weights vault", secrets.MaxValueSize)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.PutSecret(cmd.Context(), name, value)
			if err != nil {
				return err
			}
			return g.done(v, "Stored secrets/%s version %d (%d bytes, key %s).\n", v.Name, v.Version, v.Size, v.KeyID)
		},
	}
	put.Flags().StringVar(&file, "file", "", "read the value from this file (default: standard input)")

	var version uint64
	var leaseTTL time.Duration
	var leaseID, outFile string
	get := &cobra.Command{
		Use:   "get NAME [--version N] [--lease-ttl D | --lease ID] [-O FILE]",
		Short: "Print the value of secrets/NAME (needs read); --lease-ttl takes a lease, --lease ID renews one",
		Long: `Prints the value of secrets/NAME to standard output, byte for byte (or writes it to -O FILE,
mode 0600). -o json prints the version, the value in base64 and the lease.

--lease-ttl 15m takes a lease with the read: its id and end are printed on standard error.
--lease ID renews that lease (and reads the same version again); it is refused once the lease
was revoked or has expired, or the grant it was issued under has ended: read again without
--lease for a new one. rampart secret revoke-lease ID ends a lease.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := secretName(args[0])
			if err != nil {
				return err
			}
			if leaseID != "" && (leaseTTL != 0 || version != 0) {
				return usageErr("--lease renews a lease on its own version; it takes neither --lease-ttl nor --version")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var s secrets.Secret
			if leaseID != "" {
				if err := secrets.CheckLeaseID(leaseID); err != nil {
					return usageErr("--lease: %v", err)
				}
				s, err = c.RenewSecretLease(cmd.Context(), leaseID)
				if err == nil && s.Name != name {
					s.Wipe()
					return usageErr("lease %s is on secrets/%s, not secrets/%s", leaseID, s.Name, name)
				}
			} else {
				s, err = c.GetSecret(cmd.Context(), name, version, leaseTTL)
			}
			if err != nil {
				return err
			}
			defer s.Wipe()
			if s.Lease != nil {
				fmt.Fprintf(os.Stderr, "lease %s on secrets/%s version %d until %s (renew: rampart secret get %s --lease %s)\n",
					s.Lease.ID, s.Name, s.Version.Version, s.Lease.ExpiresAt.Local().Format(time.DateTime), s.Name, s.Lease.ID)
			}
			if g.output == output.JSON || g.output == output.YAML {
				return output.Print(os.Stdout, g.output, s, nil)
			}
			if outFile != "" {
				return os.WriteFile(outFile, s.Value, 0o600)
			}
			_, err = os.Stdout.Write(s.Value)
			return err
		},
	}
	get.Flags().Uint64Var(&version, "version", 0, "version to read (default: the newest)")
	get.Flags().DurationVar(&leaseTTL, "lease-ttl", 0, "take a lease of this length with the read (e.g. 15m)")
	get.Flags().StringVar(&leaseID, "lease", "", "renew this lease (sl_…) instead of taking a new read")
	get.Flags().StringVarP(&outFile, "output-file", "O", "", "write the value to this file (mode 0600) instead of standard output")

	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the secrets you may read or write (newest version of each; never values)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, list, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tKEY\tBY\tSTORED")
				for _, v := range list {
					fmt.Fprintf(tw, "secrets/%s\t%d\t%d\t%s\t%s\t%s\n", v.Name, v.Version, v.Size, v.KeyID, v.CreatedBy, v.CreatedAt.Local().Format(time.DateTime))
				}
			})
		},
	}
	versions := &cobra.Command{
		Use:   "versions NAME",
		Short: "List every version of secrets/NAME, deleted ones included (needs read or write)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := secretName(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.SecretVersions(cmd.Context(), name)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, list, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "VERSION\tSTATE\tSIZE\tKEY\tBY\tSTORED\tDELETED")
				for _, v := range list {
					deleted := "-"
					if !v.DeletedAt.IsZero() {
						deleted = v.DeletedAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\n", v.Version, v.State, v.Size, v.KeyID, v.CreatedBy, v.CreatedAt.Local().Format(time.DateTime), deleted)
				}
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete every version of secrets/NAME for good (needs write)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := secretName(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			n, err := c.DeleteSecret(cmd.Context(), name)
			if err != nil {
				return err
			}
			return g.done(map[string]any{"name": name, "deleted": n}, "Deleted %d version(s) of secrets/%s.\n", n, name)
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke-lease ID",
		Short: "End a lease at once (yours, or anyone's for an admin)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := secrets.CheckLeaseID(args[0]); err != nil {
				return usageErr("%v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			l, err := c.RevokeSecretLease(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.done(l, "Revoked lease %s on secrets/%s version %d.\n", l.ID, l.Name, l.Version)
		},
	}
	cmd.AddCommand(put, get, ls, versions, rm, revoke)
	return cmd
}
