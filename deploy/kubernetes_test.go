package deploy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/internal/kubetest"
	"rampart.dev/rampart/kube/install"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/server"
)

// manifests are the objects of deploy/kubernetes, decoded strictly (unknown or duplicate fields
// fail), in the order kustomization.yaml lists their files.
type manifests struct {
	kust struct {
		Namespace string   `yaml:"namespace"`
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name, NewName, NewTag string `yaml:",omitempty"`
		} `yaml:"images"`
	}
	objects    []runtime.Object
	ns         *corev1.Namespace
	config     *corev1.ConfigMap
	deployment *appsv1.Deployment
	services   []*corev1.Service
	pdb        *policyv1.PodDisruptionBudget
}

func load(t *testing.T) *manifests {
	t.Helper()
	m := &manifests{}
	b, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &m.kust); err != nil {
		t.Fatal(err)
	}
	strict := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	for _, file := range m.kust.Resources {
		b, err := os.ReadFile(filepath.Join("kubernetes", file))
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			obj, _, err := strict.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s, document %d: %v", file, i+1, err)
			}
			m.objects = append(m.objects, obj)
			switch o := obj.(type) {
			case *corev1.Namespace:
				m.ns = o
			case *corev1.ConfigMap:
				m.config = o
			case *appsv1.Deployment:
				m.deployment = o
			case *corev1.Service:
				m.services = append(m.services, o)
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			default:
				t.Fatalf("%s: unexpected %T", file, obj)
			}
			if o, ok := obj.(metav1.Object); ok && o.GetNamespace() != m.kust.Namespace && obj.GetObjectKind().GroupVersionKind().Kind != "Namespace" {
				t.Errorf("%s: %s is in namespace %q, not the kustomization's %q", file, o.GetName(), o.GetNamespace(), m.kust.Namespace)
			}
		}
	}
	if m.ns == nil || m.config == nil || m.deployment == nil || len(m.services) != 2 || m.pdb == nil {
		t.Fatalf("the manifests lack something: %d objects", len(m.objects))
	}
	return m
}

// The pieces refer to each other correctly: labels and selectors, named ports, the
// configuration's paths and ports, the ServiceAccount rampart kube render rbac makes, the image
// kustomize replaces.
func TestManifestsHangTogether(t *testing.T) {
	m := load(t)
	d := m.deployment
	tmpl := d.Spec.Template
	for _, sel := range []map[string]string{d.Spec.Selector.MatchLabels, m.pdb.Spec.Selector.MatchLabels, m.services[0].Spec.Selector, m.services[1].Spec.Selector} {
		for k, v := range sel {
			if tmpl.Labels[k] != v {
				t.Errorf("selector %v does not match the pod labels %v", sel, tmpl.Labels)
			}
		}
	}
	c := tmpl.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			if _, ok := ports[p.TargetPort.StrVal]; !ok {
				t.Errorf("service %s targets port %q, which the container does not name", s.Name, p.TargetPort.StrVal)
			}
		}
	}
	if want := "rampart"; tmpl.Spec.ServiceAccountName != want {
		t.Errorf("serviceAccountName %q, want %q as rampart kube render rbac makes it", tmpl.Spec.ServiceAccountName, want)
	}
	if _, _, _, err := install.ServerRBAC(mustDemo(t), d.Namespace, tmpl.Spec.ServiceAccountName); err != nil {
		t.Error(err)
	}
	if len(m.kust.Images) != 1 || m.kust.Images[0].Name != c.Image {
		t.Errorf("kustomize replaces image %+v, the container runs %q", m.kust.Images, c.Image)
	}
	// Every mount has its volume, every path the configuration names is under a mount, and the
	// ports it listens on are the container's.
	mounts := map[string]string{}
	volumes := map[string]bool{}
	for _, v := range tmpl.Spec.Volumes {
		volumes[v.Name] = true
	}
	for _, vm := range c.VolumeMounts {
		if !volumes[vm.Name] {
			t.Errorf("mount %s has no volume", vm.Name)
		}
		mounts[vm.MountPath] = vm.Name
	}
	mounted := func(p string) bool {
		for mp := range mounts {
			if strings.HasPrefix(p, mp+"/") || p == mp {
				return true
			}
		}
		return false
	}
	cfg := loadConfig(t, m, "")
	for what, p := range map[string]string{"--config": c.Args[len(c.Args)-1], "data_dir": cfg.DataDir, "policy_dir": cfg.PolicyDir,
		"ledger.signing_key_file": cfg.Ledger.SigningKeyFile, "tls.cert_file": cfg.TLS.CertFile, "tls.key_file": cfg.TLS.KeyFile,
		"kubernetes.admission.cert_file": cfg.Kubernetes.Admission.CertFile, "kubernetes.admission.key_file": cfg.Kubernetes.Admission.KeyFile} {
		if !mounted(p) {
			t.Errorf("%s %s is on no volume", what, p)
		}
	}
	for name, listen := range map[string]string{"api": cfg.Listen, "webhook": cfg.Kubernetes.Admission.Listen} {
		_, port, _ := net.SplitHostPort(listen)
		if fmt.Sprint(ports[name]) != port {
			t.Errorf("the server listens on %s for %s; the container port is %d", listen, name, ports[name])
		}
	}
	if !cfg.Kubernetes.InCluster || cfg.Store.Driver != "postgres" {
		t.Errorf("config: in_cluster %v, store %q", cfg.Kubernetes.InCluster, cfg.Store.Driver)
	}
	if *d.Spec.Replicas < 2 || m.pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Errorf("replicas %d, PDB minAvailable %v: the webhook (failurePolicy Fail) needs one up", *d.Spec.Replicas, m.pdb.Spec.MinAvailable)
	}
}

// Rampart's own pod passes Pod Security restricted as Rampart checks it (and the research
// baseline's automount rule), and the real apiserver stores every object without a warning,
// with Pod Security admission warning on the restricted profile in the namespace.
func TestManifestsAgainstTheAPIServer(t *testing.T) {
	m := load(t)
	w, err := podsec.WorkloadFromObject(m.deployment)
	if err != nil {
		t.Fatal(err)
	}
	if vs := podsec.Check(w, m.deployment.Namespace, podsec.Config{}, nil); len(vs) > 0 {
		t.Fatalf("Rampart's own pod breaks the baseline: %+v", vs)
	}
	env := kubetest.Start(t)
	cfg := rest.CopyConfig(env.Config)
	warnings := &recorder{}
	cfg.WarningHandler = warnings
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := m.ns.DeepCopy()
	ns.Labels["pod-security.kubernetes.io/warn"] = "restricted" // Pod Security admission warns on templates
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, obj := range m.objects {
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			_, err = cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *policyv1.PodDisruptionBudget:
			_, err = cs.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			continue
		}
		if err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	if got := warnings.all(); len(got) > 0 {
		t.Fatalf("the apiserver warned: %q", got)
	}
	// And the probe works: a pod that breaks restricted draws a warning here.
	bad := m.deployment.DeepCopy()
	bad.Name = "probe"
	bad.Spec.Template.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	if _, err := cs.AppsV1().Deployments(bad.Namespace).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if len(warnings.all()) == 0 {
		t.Fatal("no Pod Security warning for a template that breaks restricted: the check above proves nothing")
	}
}

// The configuration in the ConfigMap loads with the server's own loader, and the policy loads
// from a directory laid out as the kubelet mounts a ConfigMap (files as links into ..data).
func TestConfigAndPolicyAsMounted(t *testing.T) {
	m := load(t)
	dir := t.TempDir()
	files := map[string][]byte{}
	src := demo.Policy()
	entries, err := readDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range entries {
		files[name] = b
	}
	policyDir := filepath.Join(dir, "policy")
	mountLikeKubelet(t, policyDir, files)
	cfg := loadConfig(t, m, policyDir)
	if _, err := policy.Load(os.DirFS(cfg.PolicyDir)); err != nil {
		t.Fatalf("the policy as a ConfigMap mounts it: %v", err)
	}
}

// loadConfig writes the ConfigMap's rampart.yaml (with policy_dir moved to policyDir, if given)
// and loads it as rampart server would.
func loadConfig(t *testing.T, m *manifests, policyDir string) server.Config {
	t.Helper()
	text, ok := m.config.Data["rampart.yaml"]
	if !ok {
		t.Fatal("ConfigMap rampart-config has no rampart.yaml")
	}
	if policyDir != "" {
		text = strings.Replace(text, "policy_dir: /etc/rampart/policy", "policy_dir: "+policyDir, 1)
	}
	p := filepath.Join(t.TempDir(), "rampart.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RAMPART_POSTGRES_DSN", "postgres://rampart@db.internal:5432/rampart?sslmode=verify-full")
	cfg, err := server.LoadConfig(p)
	if err != nil {
		t.Fatalf("the ConfigMap's rampart.yaml: %v", err)
	}
	return cfg
}

// mountLikeKubelet lays files out as the kubelet mounts a ConfigMap: the data in a timestamped
// directory, ..data a link to it, and each key a link to ..data/key.
func mountLikeKubelet(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts := filepath.Join(dir, "..2026_11_26_07_00_00.000000001")
	if err := os.MkdirAll(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ts, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func mustDemo(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Load(demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// recorder keeps the apiserver's warnings.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) HandleWarningHeader(code int, agent, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, text)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}
