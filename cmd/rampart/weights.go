package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/kmsplugin"
	"rampart.dev/rampart/weights"
)

// weightsName accepts NAME or weights/NAME.
func weightsName(arg string) string { return strings.TrimPrefix(arg, "weights/") }

func newWeightsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "weights", Short: "Store and fetch model weights in the vault (encrypted; every transfer needs an active grant)"}
	put := &cobra.Command{
		Use:   "put NAME FILE",
		Short: "Encrypt and store FILE as a new version of weights/NAME (needs write on it)",
		Args:  exactArgs("NAME", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			start := time.Now()
			o, err := c.PutWeights(cmd.Context(), weightsName(args[0]), f, st.Size())
			if err != nil {
				return err
			}
			return g.done(o, "Stored weights/%s version %d: %d bytes, SHA-256 %s, in %s (%s).\n", o.Name, o.Version, o.Size, o.SHA256,
				time.Since(start).Round(time.Millisecond), rate(o.Size, time.Since(start)))
		},
	}
	var outPath string
	var version uint64
	get := &cobra.Command{
		Use:   "get NAME -o FILE [--version N]",
		Short: "Fetch and decrypt weights/NAME (needs read); FILE appears only once the whole object verified",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outPath == "" {
				return usageErr("-o FILE is required (the file is written only after the whole object verified)")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			dir := filepath.Dir(outPath)
			tmp, err := os.CreateTemp(dir, "."+filepath.Base(outPath)+".partial-*")
			if err != nil {
				return fmt.Errorf("create a temporary file beside %s: %w", outPath, err)
			}
			keep := false
			defer func() {
				if !keep {
					tmp.Close()
					os.Remove(tmp.Name())
				}
			}()
			start := time.Now()
			o, err := c.GetWeights(cmd.Context(), weightsName(args[0]), version, tmp)
			if err != nil {
				return fmt.Errorf("%w; nothing was written to %s", err, outPath)
			}
			if err := tmp.Sync(); err != nil {
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), outPath); err != nil {
				return err
			}
			keep = true
			return g.done(fetched{Object: o, File: outPath}, "Fetched weights/%s version %d into %s: %d bytes, SHA-256 %s verified, in %s (%s).\n", o.Name, o.Version, outPath, o.Size, o.SHA256,
				time.Since(start).Round(time.Millisecond), rate(o.Size, time.Since(start)))
		},
	}
	get.Flags().StringVarP(&outPath, "output-file", "O", "", "where to write the decrypted file")
	get.Flags().Uint64Var(&version, "version", 0, "version to fetch (default: the newest)")
	// -o is the global output format; for get it names the file (also -O/--output-file). This
	// replaces the root's check of -o for this command only.
	get.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		if outPath == "" && g.output != output.Table && g.output != output.JSON && g.output != output.YAML {
			outPath, g.output = g.output, output.Table
		}
		if outPath == "" && cmd.Flags().Changed("output") {
			return usageErr("-o names the file to write: rampart weights get NAME -o FILE")
		}
		return nil
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the stored versions you may read or write",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			list, err := c.ListWeights(cmd.Context())
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, list, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "NAME\tVERSION\tSIZE\tSHA-256\tKEY\tUPLOADED BY\tUPLOADED\tSTATE")
				for _, o := range list {
					fmt.Fprintf(tw, "weights/%s\t%d\t%d\t%.16s…\t%s\t%s\t%s\t%s\n", o.Name, o.Version, o.Size, o.SHA256, o.KeyID, o.UploadedBy,
						o.CreatedAt.Local().Format(time.DateTime), o.State)
				}
			})
		},
	}
	var rmVersion uint64
	rm := &cobra.Command{
		Use:   "rm NAME [--version N]",
		Short: "Delete a version of weights/NAME, or every version (needs delete; write is not enough)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			gone, err := c.DeleteWeights(cmd.Context(), weightsName(args[0]), rmVersion)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, gone, func(tw *tabwriter.Writer) {
				for _, o := range gone {
					fmt.Fprintf(tw, "Deleted weights/%s version %d.\n", o.Name, o.Version)
				}
			})
		},
	}
	rm.Flags().Uint64Var(&rmVersion, "version", 0, "version to delete (default: all)")
	var vVersion uint64
	verify := &cobra.Command{
		Use:   "verify NAME [--version N]",
		Short: "Decrypt a version on the server and check it against its signed manifest (needs read)",
		Args:  exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.VerifyWeights(cmd.Context(), weightsName(args[0]), vVersion)
			if err != nil {
				return err
			}
			if err := output.Print(os.Stdout, g.output, res, func(tw *tabwriter.Writer) {
				if !res.OK {
					fmt.Fprintf(tw, "object:\tweights/%s version %d\nresult:\tFAILED: %s is corrupt\nproblem:\t%s\n", res.Object.Name, res.Object.Version, res.Part, res.Problem)
					return
				}
				fmt.Fprintf(tw, "object:\tweights/%s version %d\nresult:\tOK\nsize:\t%d\nsha256:\t%s\nmanifest:\tsigned by the ledger key\n", res.Object.Name, res.Object.Version, res.Size, res.SHA256)
			}); err != nil {
				return err
			}
			if !res.OK {
				return &codeError{code: 1, err: errors.New("verification failed")}
			}
			return nil
		},
	}
	verify.Flags().Uint64Var(&vVersion, "version", 0, "version to verify (default: the newest)")
	var rkVersion uint64
	rekey := &cobra.Command{
		Use:   "rekey NAME [--version N]",
		Short: "Re-encrypt weights/NAME under new data keys, so that keys released before decrypt nothing stored (needs write)",
		Long: `Re-encrypts a version of weights/NAME (every version without --version) under a new data key.
A data key released to a workload (POST /v1/weights/NAME/key) decrypts that version's
ciphertext for as long as it is stored: vault rotate re-wraps data keys but does not change
them. After a rekey, the ciphertext under the old data key is gone, and only a new key release
opens the version. The version keeps its number, its content and its signed manifest.

Use it after releasing a key to a workload that is no longer trusted (a compromised node, a
finished contract), on a schedule for keys released in routine use, and after a rotation when
policy wants data keys themselves to change. It reads and rewrites the whole version, on the
server; a failure or crash leaves the version readable, and running it again finishes the job.
See docs/vault.md.`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			start := time.Now()
			done, err := c.RekeyWeights(cmd.Context(), weightsName(args[0]), rkVersion)
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, done, func(tw *tabwriter.Writer) {
				for _, o := range done {
					fmt.Fprintf(tw, "Re-encrypted weights/%s version %d under a new data key (%d bytes): data keys released before no longer decrypt it.\n", o.Name, o.Version, o.Size)
				}
				fmt.Fprintf(tw, "Done in %s.\n", time.Since(start).Round(time.Millisecond))
			})
		},
	}
	rekey.Flags().Uint64Var(&rkVersion, "version", 0, "version to re-encrypt (default: every version)")
	cmd.AddCommand(put, get, ls, rm, verify, rekey)
	return cmd
}

// fetched is what weights get prints under -o json or yaml.
type fetched struct {
	weights.Object
	File string `json:"file"`
}

// keyringKey names a local keyring and its current (or new) key.
type keyringKey struct {
	Keyring string `json:"keyring"`
	KeyID   string `json:"key_id"`
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/1e6/d.Seconds())
}

func newVaultCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "vault", Short: "The vault's keys: create the local keyring, rotate, retire"}
	init := &cobra.Command{
		Use:   "init KEYRING",
		Short: "Create a local keyring file with one key-encryption key (mode 0600; back it up: without it nothing decrypts)",
		Args:  exactArgs("KEYRING"),
		RunE: func(cmd *cobra.Command, args []string) error {
			kp, err := vault.InitLocalKeyring(args[0])
			if err != nil {
				return err
			}
			cur, _ := kp.Current(cmd.Context())
			return g.done(keyringKey{Keyring: args[0], KeyID: cur}, "Created %s with key %s. Point the server's vault.keyring at it.\n", args[0], cur)
		},
	}
	var rotateKeyring, retireKeyring string
	rotate := &cobra.Command{
		Use:   "rotate [--keyring FILE]",
		Short: "Add a key-encryption key and re-wrap every data key under it (admins; data keys and data do not change)",
		Long: `Without --keyring: asks the server to add a key-encryption key to the vault's keyring and
re-wrap every object's data key under it (admins). The data is not rewritten, and the data keys
stay the same: a data key released to a workload still decrypts its object. To change data
keys, rampart weights rekey NAME.

With --keyring FILE: adds a key to that keyring file directly and makes it current, for a
keyring no server re-wraps, such as the one rampart kms-plugin uses: the plugin reports the new
key_id at the apiserver's next status call (about a minute), and the apiserver seals new data
keys under it. Old keys keep decrypting until retired; retire one only after every object
sealed under it was rewritten (for Kubernetes Secrets:
kubectl get secrets -A -o json | kubectl replace -f -).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if rotateKeyring != "" {
				kp, err := vault.OpenLocalKeyring(rotateKeyring)
				if err != nil {
					return err
				}
				kid, err := kp.Rotate()
				if err != nil {
					return err
				}
				return g.done(keyringKey{Keyring: rotateKeyring, KeyID: kid}, "Current key of %s is now %s. Older keys still unwrap until retired (rampart vault retire KEY --keyring %s).\n", rotateKeyring, kid, rotateKeyring)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			kid, n, err := c.RotateVault(cmd.Context())
			if err != nil {
				return err
			}
			return g.done(map[string]any{"key_id": kid, "rewrapped": n}, "Current key is %s; %d data keys re-wrapped. Older keys still unwrap until retired (rampart vault retire KEY).\n", kid, n)
		},
	}
	rotate.Flags().StringVar(&rotateKeyring, "keyring", "", "rotate this keyring file directly instead of asking the server")
	retire := &cobra.Command{
		Use:   "retire KEY [--keyring FILE]",
		Short: "Retire a key-encryption key that no object uses any more (admins)",
		Long: `Without --keyring: asks the server to retire the key; it refuses while an object's data key
is still wrapped under it. With --keyring FILE: marks the key retired in that file directly;
nothing can check what still uses it, so retire only after a rotation was completed.`,
		Args: exactArgs("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if retireKeyring != "" {
				kp, err := vault.OpenLocalKeyring(retireKeyring)
				if err != nil {
					return err
				}
				if err := kp.Retire(args[0]); err != nil {
					return err
				}
				return g.done(map[string]any{"keyring": retireKeyring, "key_id": args[0], "retired": true}, "Key %s of %s retired.\n", args[0], retireKeyring)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RetireVaultKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			return g.done(map[string]any{"key_id": args[0], "retired": true}, "Key %s retired.\n", args[0])
		},
	}
	retire.Flags().StringVar(&retireKeyring, "keyring", "", "retire in this keyring file directly instead of asking the server")
	cmd.AddCommand(init, rotate, retire)
	return cmd
}

func newKMSPluginCmd() *cobra.Command {
	var socket, keyring string
	var verbose bool
	cmd := &cobra.Command{
		Use:         "kms-plugin --socket PATH --keyring FILE",
		Annotations: map[string]string{fixedOutput: "it runs a server, which writes JSON log lines"},
		Short:       "Serve the Kubernetes KMS v2 API on a unix socket, so the apiserver encrypts Secrets under Rampart's keys",
		Long: `Serve the Kubernetes KMS v2 gRPC API (Status, Encrypt, Decrypt) on a unix socket with the
key-encryption keys of a local keyring (create it with rampart vault init FILE). Point the
kube-apiserver's EncryptionConfiguration at it:

  resources:
    - resources: [secrets]
      providers:
        - kms: {apiVersion: v2, name: rampart, endpoint: unix:///PATH, timeout: 3s}
        - identity: {}

key_id is the keyring's current key; rampart vault rotate --keyring FILE changes it, and the
plugin picks the change up at the apiserver's next status call. See docs/vault.md.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if socket == "" || keyring == "" {
				return usageErr("--socket and --keyring are required")
			}
			kp, err := vault.OpenLocalKeyring(keyring)
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			svc := kmsplugin.New(kp)
			svc.Log = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			svc.Reload = kmsplugin.KeyringReloader(keyring)
			cur, _ := kp.Current(cmd.Context())
			svc.Log.Info("kms plugin serving", "socket", socket, "keyring", keyring, "key_id", cur)
			return kmsplugin.Serve(cmd.Context(), socket, svc)
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "unix socket to listen on (the EncryptionConfiguration's endpoint)")
	cmd.Flags().StringVar(&keyring, "keyring", "", "local keyring file (rampart vault init FILE)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every encrypt call")
	return cmd
}
