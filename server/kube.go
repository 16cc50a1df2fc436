package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/strictyaml"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/evict"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/rbac"
)

// KubernetesConfig connects the control plane to a cluster it enforces grants in.
type KubernetesConfig struct {
	// Kubeconfig is a kubeconfig file for the cluster; InCluster uses the pod's service
	// account instead. Without either, nothing is enforced in Kubernetes.
	Kubeconfig string `yaml:"kubeconfig"`
	InCluster  bool   `yaml:"in_cluster"`
	// Context selects a context of Kubeconfig (default: its current context).
	Context string `yaml:"context"`
	// RBAC keeps RoleBindings equal to the active grants of roles with a kubernetes section
	// (default true when a cluster is configured).
	RBAC *bool `yaml:"rbac"`
	// NetworkPolicies keeps the default-deny egress NetworkPolicy in every governed namespace
	// (default true when a cluster is configured).
	NetworkPolicies *bool `yaml:"network_policies"`
	// PodRevocation deletes the pods that use protected data once their service account's
	// grant to read it has ended (kube/evict; default true when a cluster is configured).
	PodRevocation *bool `yaml:"pod_revocation"`
	// Admission serves the admission webhook (rampart server when listen is set, and
	// rampart admission).
	Admission AdmissionConfig `yaml:"admission"`
}

// AdmissionConfig is the webhook's TLS listener.
type AdmissionConfig struct {
	// Listen is the address the webhook serves HTTPS on, e.g. 0.0.0.0:8443.
	Listen string `yaml:"listen"`
	// CertFile and KeyFile are its serving certificate (rampart kube install --cert-dir makes
	// one, and writes its CA into the webhook configuration).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (c *Config) validateKubernetes(doc *strictyaml.Document) {
	k := c.Kubernetes
	if k.Kubeconfig != "" && k.InCluster {
		doc.Errorf("kubernetes", "give kubeconfig or in_cluster, not both")
	}
	if k.Kubeconfig != "" {
		if _, err := os.Stat(k.Kubeconfig); err != nil {
			doc.Errorf("kubernetes.kubeconfig", "%v", err)
		}
	}
	if a := k.Admission; a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			doc.Errorf("kubernetes.admission.listen", "%q is not host:port", a.Listen)
		}
		if a.CertFile == "" || a.KeyFile == "" {
			doc.Errorf("kubernetes.admission", "the webhook serves HTTPS only: set cert_file and key_file (rampart kube install --cert-dir DIR makes them)")
		}
		if k.Kubeconfig == "" && !k.InCluster {
			doc.Errorf("kubernetes.admission", "the webhook reads the cluster: set kubeconfig or in_cluster")
		}
	}
	if k.Context != "" && k.Kubeconfig == "" {
		doc.Errorf("kubernetes.context", "context selects a context of kubeconfig; set kubeconfig too")
	}
}

// KubeClient returns a client for the configured cluster, or nil when none is configured.
func (c KubernetesConfig) KubeClient() (kubernetes.Interface, *rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case c.InCluster:
		cfg, err = rest.InClusterConfig()
	case c.Kubeconfig != "":
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.Context}).ClientConfig()
	default:
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: %w", err)
	}
	cfg.UserAgent = "rampart"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: %w", err)
	}
	return cs, cfg, nil
}

// startKube starts the RBAC reconciler, the NetworkPolicy keeper, pod revocation and the
// admission webhook's view of the cluster when a cluster is configured.
func (in *Instance) startKube(ctx context.Context) error {
	kc := in.cfg.Kubernetes
	client, _, err := kc.KubeClient()
	if err != nil || client == nil {
		return err
	}
	in.Kube = client
	if kc.NetworkPolicies == nil || *kc.NetworkPolicies {
		k := &netpol.Keeper{Client: client, Policy: in.Index.Policy, Record: recorder(in.Store), Log: in.log, Now: in.now,
			RecordOnce: in.recordOnce,
			Excepted: func(ns, name string) (bool, bool) {
				d, ok := admission.NetworkPolicyException(in.Index.Check, in.Index.Policy().Kubernetes().Cluster, ns, name)
				return ok, ok || !d.Unavailable
			}}
		in.every(ctx, "kube netpol", 0, func(ctx context.Context) error {
			if err := k.Run(ctx); err != nil {
				in.log.Error("kube NetworkPolicy keeper stopped", "err", err)
			}
			return nil
		})
	}
	if kc.Admission.Listen != "" {
		cluster, err := admission.NewKubeCluster(ctx, client)
		if err != nil {
			return err
		}
		in.Webhook = &admission.Webhook{Policy: in.Index.Policy, Decide: in.Index, Cluster: cluster, Record: recorder(in.Store), Refused: in.Refusals.Record,
			Log: in.log, Now: in.now}
	}
	if kc.PodRevocation == nil || *kc.PodRevocation {
		e := &evict.Evictor{Client: client, Policy: in.Index.Policy, Decide: in.Index.Check, Grants: in.Index.ActiveGrants,
			Record: recorder(in.Store), Now: in.now, Log: in.log}
		in.Access.OnGrantChange(func([]access.Grant) { e.Trigger() })
		in.hooks.add(e.Trigger)
		in.every(ctx, "kube pods", 0, func(ctx context.Context) error {
			if err := e.Run(ctx); err != nil {
				in.log.Error("kube pod revocation stopped", "err", err)
			}
			return nil
		})
	}
	if kc.RBAC != nil && !*kc.RBAC {
		return nil
	}
	r := &rbac.Reconciler{Client: client, Policy: in.Index.Policy, Grants: in.Index.ActiveGrants,
		Record: recorder(in.Store), Now: in.now, Log: in.log,
		RecordOnce: in.recordOnce}
	in.Access.OnGrantChange(func([]access.Grant) { r.Trigger() })
	in.hooks.add(r.Trigger)
	in.KubeRBAC = r
	in.every(ctx, "kube rbac", 0, func(ctx context.Context) error {
		if err := r.Run(ctx); err != nil {
			in.log.Error("kube rbac reconciler stopped", "err", err)
		}
		return nil
	})
	return nil
}

// recordOnce appends e to the ledger unless an entry was appended under key before.
func (in *Instance) recordOnce(ctx context.Context, key string, e audit.Event) error {
	_, err := in.Store.AppendOnce(ctx, key, e)
	return err
}

// ServeAdmission serves the admission webhook over TLS on kubernetes.admission.listen until ctx
// ends.
func (in *Instance) ServeAdmission(ctx context.Context) error {
	a := in.cfg.Kubernetes.Admission
	if in.Webhook == nil || a.Listen == "" {
		return fmt.Errorf("no admission webhook configured: set kubernetes.admission.listen, cert_file and key_file, and kubernetes.kubeconfig")
	}
	srv := &http.Server{Addr: a.Listen, Handler: in.Webhook.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(in.log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS(a.CertFile, a.KeyFile) }()
	in.log.Info("admission webhook serving", "listen", a.Listen)
	select {
	case err := <-errc:
		return fmt.Errorf("admission webhook on %s: %w", a.Listen, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
