package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/iac"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

func newIACCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "iac", Short: "Check infrastructure as code against the admission baseline, and the live cluster against the code"}
	var policyDir, namespace, sarifPath string
	check := &cobra.Command{
		Use:   "check DIR [--policy DIR] [--sarif FILE] [--addr URL]",
		Short: "Check the Kubernetes objects a repository declares, offline; exit 3 when anything fails",
		Long: `Render DIR (a kustomization, built as kustomize builds it, or every .yaml, .yml and .json
file under it) and check every object with the admission webhook's own checks: Pod Security
restricted, the research baseline, gVisor for high-risk pods, protected data, images pinned by
digest; every governed namespace has Rampart's default-deny egress NetworkPolicy and none
widens it; no binding to a protected ClusterRole; no Secret with data.

Exceptions are active grants. With --addr (or RAMPART_ADDR) the server is asked which are
active (your login, or RAMPART_TOKEN: an admin, auditor or service token), and findings they
waive are shown as excepted with their expiry; without, nothing is granted, so no exception
applies and every reference to protected data fails.

Prints a table (-o json or yaml for machines) and, with --sarif FILE, a SARIF 2.1.0 log for
code scanning. Exit 0 when nothing fails (excepted findings do not), 3 when something does,
1 when DIR cannot be read or rendered. See docs/iac.md.`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := iacPolicy(policyDir)
			if err != nil {
				return err
			}
			objs, err := iac.Render(args[0])
			if err != nil {
				return err
			}
			opts := iac.Options{Policy: pol, DefaultNamespace: namespace}
			if cmd.Flags().Changed("addr") || os.Getenv("RAMPART_ADDR") != "" {
				api, err := g.client()
				if err != nil {
					return err
				}
				opts.Decide = cachedDecide(func(q authz.Query) (authz.Decision, error) { return api.Check(cmd.Context(), q) })
			}
			findings := iac.Check(cmd.Context(), objs, opts)
			if sarifPath != "" {
				if err := writeFile(sarifPath, func(f *os.File) error { return iac.WriteSARIF(f, findings) }); err != nil {
					return err
				}
			}
			if findings == nil {
				findings = []iac.Finding{}
			}
			if err := output.Print(os.Stdout, g.output, findings, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "SOURCE\tOBJECT\tCHECK\tFIELD\tPROBLEM\tFIX")
				for _, f := range findings {
					check := f.Check
					if f.Excepted != nil {
						check += " (excepted until " + f.Excepted.ExpiresAt.UTC().Format(time.RFC3339) + ", " + f.Excepted.GrantID + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Source, f.Object(), check, f.Field, f.Message, f.Fix)
				}
			}); err != nil {
				return err
			}
			failing := len(iac.Failing(findings))
			if g.output == output.Table {
				fmt.Fprintf(os.Stderr, "%d objects checked: %d problems, %d excepted.\n", len(objs), failing, len(findings)-failing)
			}
			if failing > 0 {
				return &codeError{code: exitDenied}
			}
			return nil
		},
	}
	check.Flags().StringVar(&policyDir, "policy", "", "policy directory (default: the embedded demo policy)")
	check.Flags().StringVar(&namespace, "namespace", "default", "namespace of namespaced objects that name none")
	check.Flags().StringVar(&sarifPath, "sarif", "", "also write a SARIF 2.1.0 log to this file")
	cmd.AddCommand(check, newIACDriftCmd(g))
	return cmd
}

// iacPolicy loads the policy directory, or the demo policy when dir is "".
func iacPolicy(dir string) (*policy.Policy, error) {
	fsys := demo.Policy()
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	return policy.Load(fsys)
}

// cachedDecide asks check once per query: a repository asks the same few questions (one
// service account's exceptions) for many objects. An error is a decision that fails closed.
func cachedDecide(check func(authz.Query) (authz.Decision, error)) func(authz.Query) authz.Decision {
	var mu sync.Mutex
	seen := map[authz.Query]authz.Decision{}
	return func(q authz.Query) authz.Decision {
		mu.Lock()
		d, ok := seen[q]
		mu.Unlock()
		if ok {
			return d
		}
		d, err := check(q)
		if err != nil {
			d = authz.Decision{Reason: "the Rampart server did not answer (" + err.Error() + ")", Unavailable: true}
		}
		mu.Lock()
		seen[q] = d
		mu.Unlock()
		return d
	}
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newIACDriftCmd(g *globals) *cobra.Command {
	var kubeconfig, kubeContext, namespace string
	cmd := &cobra.Command{
		Use:   "drift DIR [--kubeconfig FILE] [--context NAME]",
		Short: "Compare the objects a repository declares with the live cluster; exit 3 on drift",
		Long: `Render DIR as iac check does and compare each declared object with the cluster: the
apiserver applies it in dry-run (server-side apply, field manager rampart-iac-drift), and what
it answers is compared with what it holds, so defaults and fields the server owns (status,
managedFields, resourceVersion) are not drift. Reports objects missing from the cluster,
changed (the paths that differ, never their values), refused by the apiserver (invalid), and
extra: in a namespace the repository manages, declared nowhere (controllers' objects, the
default ServiceAccount and kube-root-ca.crt, and Rampart's own NetworkPolicy and grant
RoleBindings left out). Writes nothing to the cluster: it needs get and list on what the
repository declares, and patch (a dry run is authorized like the real thing).

Exit 0 when the cluster matches, 3 when anything drifted, 1 when DIR or the cluster cannot be
read. See docs/iac.md.`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := iac.Render(args[0])
			if err != nil {
				return err
			}
			kc := server.KubernetesConfig{Kubeconfig: kubeconfig, Context: kubeContext}
			if kc.Kubeconfig == "" {
				kc.Kubeconfig = os.Getenv("KUBECONFIG")
			}
			if kc.Kubeconfig == "" {
				if home, err := os.UserHomeDir(); err == nil {
					kc.Kubeconfig = filepath.Join(home, ".kube", "config")
				}
			}
			_, cfg, err := kc.KubeClient()
			if err != nil {
				return err
			}
			drift, err := iac.Drift(cmd.Context(), cfg, objs, iac.DriftOptions{DefaultNamespace: namespace})
			if err != nil {
				return err
			}
			if drift == nil {
				drift = []iac.DriftFinding{}
			}
			if err := output.Print(os.Stdout, g.output, drift, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "STATE\tOBJECT\tSOURCE\tDETAIL")
				for _, d := range drift {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.State, d.Object(), d.Source, d.Message)
				}
			}); err != nil {
				return err
			}
			if g.output == output.Table {
				fmt.Fprintf(os.Stderr, "%d declared objects compared: %d drifted.\n", len(objs), len(drift))
			}
			if len(drift) > 0 {
				return &codeError{code: exitDenied}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, then ~/.kube/config)")
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context (default: its current one)")
	cmd.Flags().StringVar(&namespace, "namespace", "default", "namespace of namespaced objects that name none")
	return cmd
}
