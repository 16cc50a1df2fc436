package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/output"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/install"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/scan"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

func newAdmissionCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:         "admission --config FILE",
		Annotations: map[string]string{fixedOutput: "it runs a server, which writes JSON log lines"},
		Short:       "Serve only the Kubernetes admission webhook (kubernetes.admission in the configuration)",
		Long: `Serve the admission webhook alone, on kubernetes.admission.listen with its certificate: a
replica of the control plane that answers the apiserver's admission reviews from the same store
and decision engine (rampart server serves it too when kubernetes.admission.listen is set).
See docs/kubernetes.md.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := serverConfig(configPath)
			if err != nil {
				return err
			}
			in, err := server.Start(cmd.Context(), cfg, server.Options{})
			if err != nil {
				return err
			}
			defer in.Close()
			return in.ServeAdmission(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "server configuration file")
	return cmd
}

func newKubeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kube", Short: "Put Rampart's enforcement into a Kubernetes cluster"}
	var configPath, webhookURL, certDir string
	var hosts []string
	installCmd := &cobra.Command{
		Use:   "install --config FILE --webhook-url https://HOST:PORT [--cert-dir DIR]",
		Short: "Register the admission webhooks (failurePolicy: Fail) and apply the default-deny egress NetworkPolicies",
		Long: `Register Rampart's validating and mutating admission webhooks with the cluster named by the
configuration's kubernetes section (failurePolicy: Fail: when the webhook cannot answer, nothing
is admitted), with the CA that signed the webhook's certificate, and apply the default-deny
egress NetworkPolicy to every governed namespace (the server keeps them there afterwards).

Without kubernetes.admission.cert_file, a CA and a serving certificate for the webhook URL's
host (and every --host) are made in --cert-dir; point kubernetes.admission.cert_file/key_file
at DIR/tls.crt and DIR/tls.key.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" || webhookURL == "" {
				return usageErr("--config and --webhook-url are required")
			}
			cfg, err := server.LoadConfig(configPath)
			if err != nil {
				return err
			}
			client, _, err := cfg.Kubernetes.KubeClient()
			if err != nil {
				return err
			}
			if client == nil {
				return fmt.Errorf("%s has no kubernetes.kubeconfig (or in_cluster): which cluster?", configPath)
			}
			pol, err := policy.Load(os.DirFS(cfg.PolicyDir))
			if err != nil {
				return err
			}
			// The webhook's certificate: made in --cert-dir (default: the folder of
			// kubernetes.admission.cert_file) unless it is already there.
			if certDir == "" && cfg.Kubernetes.Admission.CertFile != "" {
				certDir = filepath.Dir(cfg.Kubernetes.Admission.CertFile)
			}
			if certDir == "" {
				return usageErr("give --cert-dir DIR (or set kubernetes.admission.cert_file) for the webhook's certificate")
			}
			u, err := url.Parse(webhookURL)
			if err != nil || u.Scheme != "https" || u.Hostname() == "" {
				return usageErr("--webhook-url %q: want https://HOST:PORT", webhookURL)
			}
			certs, err := install.SelfIssue(certDir, append([]string{u.Hostname()}, hosts...))
			if err != nil {
				return err
			}
			res := installed{Webhooks: install.WebhookName, WebhookURL: webhookURL, CertFile: certs.CertFile, KeyFile: certs.KeyFile, CAFile: certs.CAFile}
			var msg strings.Builder
			if a := cfg.Kubernetes.Admission; a.CertFile != certs.CertFile || a.KeyFile != certs.KeyFile {
				res.ConfigureCert = true
				fmt.Fprintf(&msg, "Webhook certificate: %s and %s (CA %s). Set kubernetes.admission.cert_file and key_file to them.\n", certs.CertFile, certs.KeyFile, certs.CAFile)
			}
			caFile := certs.CAFile
			caPEM, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("the CA of the webhook's certificate: %w", err)
			}
			s := pol.Kubernetes()
			val, mut, err := install.Webhooks(webhookURL, caPEM, s.Admission.ExemptNamespaces)
			if err != nil {
				return err
			}
			// The NetworkPolicies first: once the webhooks are registered (failurePolicy: Fail),
			// NetworkPolicies too go through the webhook, which may not be serving yet.
			n, err := applyNetworkPolicies(cmd.Context(), client, s)
			if err != nil {
				return err
			}
			res.NetworkPolicies = n
			if err := install.ApplyWebhooks(cmd.Context(), client, val, mut); err != nil {
				return err
			}
			fmt.Fprintf(&msg, "Registered the validating and mutating webhooks %q (failurePolicy: Fail) at %s.\n", install.WebhookName, webhookURL)
			fmt.Fprintf(&msg, "Default-deny egress NetworkPolicy in place in %d namespaces.\n", n)
			return g.done(res, "%s", msg.String())
		},
	}
	installCmd.Flags().StringVar(&configPath, "config", "", "server configuration file (its kubernetes section names the cluster)")
	installCmd.Flags().StringVar(&webhookURL, "webhook-url", "", "where the apiserver reaches the webhook: https://HOST:PORT")
	installCmd.Flags().StringVar(&certDir, "cert-dir", "", "where to make (or find) the webhook's CA and certificate")
	installCmd.Flags().StringSliceVar(&hosts, "host", nil, "more names or addresses for the webhook's certificate (repeatable)")

	var policyDir string
	var namespaces []string
	loadPolicy := func() (*policy.Policy, error) {
		fsys := demo.Policy()
		if policyDir != "" {
			fsys = os.DirFS(policyDir)
		}
		return policy.Load(fsys)
	}
	// Kubernetes objects print as YAML documents (kubectl apply -f - takes them), or under -o
	// json and -o yaml as one List (which kubectl takes as well), a single value as everywhere.
	printYAML := func(objs ...any) error {
		if g.output != output.Table {
			return output.Print(os.Stdout, g.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": objs}, nil)
		}
		for i, o := range objs {
			b, err := yaml.Marshal(o)
			if err != nil {
				return err
			}
			if i > 0 {
				fmt.Println("---")
			}
			fmt.Print(string(b))
		}
		return nil
	}
	render := &cobra.Command{
		Use:   "render netpol|rbac",
		Short: "Print Kubernetes objects Rampart needs, as YAML (apply them with kubectl apply -f -)",
	}
	render.PersistentFlags().StringVar(&policyDir, "policy", "", "policy directory (default: the embedded demo policy)")
	renderNetpol := &cobra.Command{
		Use:   "netpol --namespace NS [--namespace NS…] [--policy DIR]",
		Short: "Print the default-deny egress NetworkPolicy for namespaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(namespaces) == 0 {
				return usageErr("name at least one --namespace")
			}
			pol, err := loadPolicy()
			if err != nil {
				return err
			}
			var objs []any
			for _, ns := range namespaces {
				objs = append(objs, netpol.Render(ns, pol.Kubernetes().Egress))
			}
			return printYAML(objs...)
		},
	}
	renderNetpol.Flags().StringSliceVar(&namespaces, "namespace", nil, "namespace to render for (repeatable)")
	var saNamespace, saName string
	renderRBAC := &cobra.Command{
		Use:   "rbac [--namespace rampart] [--service-account rampart] [--policy DIR]",
		Short: "Print the ServiceAccount the server runs as, and the ClusterRole and binding it needs under the policy",
		Long: `Print the ServiceAccount Rampart's server runs as in the cluster, and the ClusterRole and
ClusterRoleBinding that give it what the RBAC reconciler, the NetworkPolicy keeper and the
admission webhook need under the policy, and no more than RBAC lets one say: it holds the rules
of the policy's roles and may bind the ClusterRoles they name, because Kubernetes lets only
such an identity make those bindings. Re-render and apply it when the policy's roles change.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pol, err := loadPolicy()
			if err != nil {
				return err
			}
			sa, role, binding, err := install.ServerRBAC(pol, saNamespace, saName)
			if err != nil {
				return usageErr("%v", err)
			}
			return printYAML(sa, role, binding)
		},
	}
	renderRBAC.Flags().StringVar(&saNamespace, "namespace", "rampart", "namespace of the server's ServiceAccount")
	renderRBAC.Flags().StringVar(&saName, "service-account", "rampart", "name of the server's ServiceAccount")
	render.AddCommand(renderNetpol, renderRBAC)
	var scanPolicy, scanKubeconfig, scanContext, sarifPath string
	scanCmd := &cobra.Command{
		Use:   "scan [--kubeconfig FILE] [--policy DIR] [--sarif FILE]",
		Short: "Check what runs in the cluster against the admission baseline; exit 3 when anything fails",
		Long: `Check every workload of every governed namespace (Pods not made by a controller, Deployments,
StatefulSets, DaemonSets, ReplicaSets and Jobs not made by a controller, CronJobs) against what
the admission webhook enforces: Pod Security restricted, the research baseline, protected volumes
(asked of the Rampart server with your credentials: an admin, auditor or service token), and the
default-deny egress NetworkPolicy of each namespace. Prints a table (-o json or yaml for
machines) and, with --sarif FILE, a SARIF 2.1.0 log for code-scanning tools. Exit 0 when
nothing fails, 3 when something does. If the Rampart server cannot be reached, protected volumes
are reported as failing (nothing is assumed allowed).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			fsys := demo.Policy()
			if scanPolicy != "" {
				fsys = os.DirFS(scanPolicy)
			}
			pol, err := policy.Load(fsys)
			if err != nil {
				return err
			}
			kc := server.KubernetesConfig{Kubeconfig: scanKubeconfig, Context: scanContext}
			if kc.Kubeconfig == "" {
				kc.Kubeconfig = os.Getenv("KUBECONFIG")
			}
			if kc.Kubeconfig == "" {
				if home, err := os.UserHomeDir(); err == nil {
					kc.Kubeconfig = filepath.Join(home, ".kube", "config")
				}
			}
			client, _, err := kc.KubeClient()
			if err != nil {
				return err
			}
			api, apiErr := g.client()
			decide := func(q authz.Query) authz.Decision {
				if apiErr != nil {
					return authz.Decision{Reason: "the Rampart server cannot be asked (" + apiErr.Error() + ")", Unavailable: true}
				}
				d, err := api.Check(cmd.Context(), q)
				if err != nil {
					return authz.Decision{Reason: "the Rampart server did not answer (" + err.Error() + ")", Unavailable: true}
				}
				return d
			}
			findings, err := scan.Scan(cmd.Context(), client, pol, decide)
			if err != nil {
				return err
			}
			if sarifPath != "" {
				f, err := os.Create(sarifPath)
				if err != nil {
					return err
				}
				if err := scan.WriteSARIF(f, findings); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
			}
			if findings == nil {
				findings = []scan.Finding{}
			}
			if err := output.Print(os.Stdout, g.output, findings, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "OBJECT\tCHECK\tFIELD\tPROBLEM\tFIX")
				for _, f := range findings {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Object(), f.Check, f.Field, f.Message, f.Fix)
				}
			}); err != nil {
				return err
			}
			if len(findings) > 0 {
				if g.output == output.Table {
					fmt.Fprintf(os.Stderr, "%d problems.\n", len(findings))
				}
				return &codeError{code: exitDenied}
			}
			if g.output == output.Table {
				fmt.Fprintln(os.Stderr, "Nothing fails the baseline.")
			}
			return nil
		},
	}
	scanCmd.Flags().StringVar(&scanPolicy, "policy", "", "policy directory (default: the embedded demo policy)")
	scanCmd.Flags().StringVar(&scanKubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, then ~/.kube/config)")
	scanCmd.Flags().StringVar(&scanContext, "context", "", "kubeconfig context (default: its current one)")
	scanCmd.Flags().StringVar(&sarifPath, "sarif", "", "also write a SARIF 2.1.0 log to this file")
	cmd.AddCommand(installCmd, render, scanCmd)
	return cmd
}

// applyNetworkPolicies creates or restores the default-deny policy in every governed namespace.
func applyNetworkPolicies(ctx context.Context, client kubernetes.Interface, s policy.KubernetesSettings) (int, error) {
	list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list namespaces: %w", err)
	}
	n := 0
	for _, ns := range list.Items {
		if !netpol.Governed(ns.Name, s.Admission.ExemptNamespaces) {
			continue
		}
		have, err := client.NetworkingV1().NetworkPolicies(ns.Name).Get(ctx, netpol.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			have = nil
		case err != nil:
			return n, fmt.Errorf("NetworkPolicy %s/%s: %w", ns.Name, netpol.Name, err)
		}
		if _, err := netpol.Ensure(ctx, client, ns.Name, have, s.Egress); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// installed is what kube install prints under -o json or yaml.
type installed struct {
	Webhooks        string `json:"webhooks"`
	WebhookURL      string `json:"webhook_url"`
	CertFile        string `json:"cert_file"`
	KeyFile         string `json:"key_file"`
	CAFile          string `json:"ca_file"`
	ConfigureCert   bool   `json:"configure_cert"`
	NetworkPolicies int    `json:"network_policies"`
}

func newExceptionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "exception", Short: "Ask for a time-bound exception to an admission check, with compensating controls"}
	var ns, workload, check, compensating, duration, reason, cluster string
	var yes bool
	req := &cobra.Command{
		Use:   "request --namespace NS --workload SERVICEACCOUNT --check CHECK --compensating TEXT --reason TEXT [--duration 72h] [--cluster NAME]",
		Short: "Request an exception: an ordinary request, approved under the policy that covers namespaces/NS",
		Long: `Request an exception to one admission check for the pods that run as a service account in a
namespace. It is an ordinary access request — for the least privileged role that allows the action
exempt_<check> on the resource namespaces/NS, with the workload's identity
k8s:<cluster>/<namespace>/<serviceaccount> as the beneficiary — so it needs the approvals of the
policy that covers namespaces/NS, and it expires, renews and is revoked like any grant. While the
grant is active the admission webhook and rampart kube scan both waive that check for those pods,
and both stop at the same instant. The compensating controls are part of the request's reason,
in front of the approvers and in the ledger. Checks on protected data (rampart.protected-volume,
rampart.protected-exec) cannot be waived: they need a grant to read the data.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cluster == "" {
				cluster = os.Getenv("RAMPART_CLUSTER")
			}
			switch {
			case ns == "" || workload == "" || check == "":
				return usageErr("--namespace, --workload (the pods' service account) and --check are required")
			case strings.TrimSpace(compensating) == "":
				return usageErr("--compensating is required: say what makes the exception safe (e.g. \"node pool isolated, egress blocked\")")
			case strings.TrimSpace(reason) == "":
				return usageErr("--reason is required")
			case cluster == "":
				return usageErr("--cluster (or $RAMPART_CLUSTER) is required: the cluster name of the policy's kubernetes.cluster setting")
			}
			if !admission.Waivable(check) {
				return usageErr("no exception can waive check %q; the checks are: %s (protected data needs a grant to read it, never an exception)", check, strings.Join(admission.WaivableChecks(), ", "))
			}
			subject := admission.ServiceAccountSubject(cluster, ns, workload)
			if err := policy.ValidateSubject(subject); err != nil {
				return usageErr("%v", err)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			resource, action := admission.NamespaceResource(ns), admission.ExemptAction(check)
			adv, err := c.Suggest(cmd.Context(), api.SuggestBody{Resource: resource, Actions: []string{action}})
			if err != nil {
				return fmt.Errorf("no role allows an exception to %s in %s (%w); the policy needs a Role with action %s on %s", check, ns, err, action, resource)
			}
			tw := tabwriter.NewWriter(os.Stderr, 0, 4, 2, ' ', 0)
			printAdvice(tw, adv, false)
			tw.Flush()
			if !yes {
				ok, err := confirm(fmt.Sprintf("Request %s for %s? [y/N] ", adv.Role.Role, subject))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("not requested: you did not confirm")
				}
			}
			full := fmt.Sprintf("Exception to %s for %s: %s. Compensating controls: %s", check, subject, strings.TrimSpace(reason), strings.TrimSpace(compensating))
			out, err := c.CreateRequest(cmd.Context(), api.CreateRequestBody{Role: adv.Role.Role, Reason: full, Duration: duration, Beneficiary: subject})
			if err != nil {
				return err
			}
			return output.Print(os.Stdout, g.output, out, func(tw *tabwriter.Writer) {
				r := out.Request
				fmt.Fprintf(tw, "Request %s created: exception to %s for %s (role %s), %s, under approval policy %q.\n", r.ID, check, subject, r.Role, policy.FormatDuration(r.Duration), r.Policy)
				fmt.Fprintf(tw, "It applies once approved, and ends when the grant does. Follow it with: rampart request show %s\n", r.ID)
			})
		},
	}
	req.Flags().StringVar(&ns, "namespace", "", "namespace of the workload")
	req.Flags().StringVar(&workload, "workload", "", "the service account the workload's pods run as")
	req.Flags().StringVar(&check, "check", "", "the check to waive, e.g. baseline.runtime-class")
	req.Flags().StringVar(&compensating, "compensating", "", "the compensating controls that make it safe")
	req.Flags().StringVar(&duration, "duration", "", "how long (default: the approval policy's default)")
	req.Flags().StringVar(&reason, "reason", "", "why it is needed")
	req.Flags().StringVar(&cluster, "cluster", "", "the cluster's name in the policy (kubernetes.cluster; env RAMPART_CLUSTER)")
	req.Flags().BoolVarP(&yes, "yes", "y", false, "request the suggested role without asking")
	cmd.AddCommand(req)
	return cmd
}
