package server

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/internal/strictyaml"
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

// startKube starts the RBAC reconciler when a cluster is configured.
func (in *Instance) startKube(ctx context.Context) error {
	kc := in.cfg.Kubernetes
	client, _, err := kc.KubeClient()
	if err != nil || client == nil {
		return err
	}
	if kc.RBAC != nil && !*kc.RBAC {
		return nil
	}
	r := &rbac.Reconciler{Client: client, Policy: in.Index.Policy, Grants: in.Index.ActiveGrants,
		Record: recorder(in.Store), Now: in.now, Log: in.log}
	in.Access.OnGrantChange(func([]access.Grant) { r.Trigger() })
	in.KubeRBAC = r
	in.every(ctx, "kube rbac", 0, func(ctx context.Context) error {
		if err := r.Run(ctx); err != nil {
			in.log.Error("kube rbac reconciler stopped", "err", err)
		}
		return nil
	})
	return nil
}
