// Package kubetest gives tests a real Kubernetes control plane: an etcd and a kube-apiserver on
// loopback, started by controller-runtime's envtest from binaries built by
// scripts/kube-assets.sh. There is no kubelet, controller-manager or scheduler: objects are stored
// and admitted (RBAC, admission webhooks, encryption at rest all run for real) but pods never run,
// which is what Rampart's enforcement needs to be tested against.
//
// Starting one takes about 5 s and 330 MiB, so a package normally shares one per test binary:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		env := kubetest.Shared(t)
//		ns := env.Namespace(t) // a fresh namespace, so tests can share the control plane
//		...
//	}
//
// A test that needs its own apiserver flags (an encryption configuration, an admission
// configuration) starts a private one with Start(t, APIServerFlag(...)).
//
// The binaries are found in $KUBEBUILDER_ASSETS, else $RAMPART_KUBE_ASSETS, else the folder
// scripts/kube-assets.sh builds into by default. When they are not there the test is skipped,
// or fails under RAMPART_REQUIRE_INTEGRATION=1 (CI), as internal/testenv does for every real
// server.
package kubetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"rampart.dev/rampart/internal/testenv"
)

// Versions that scripts/kube-assets.sh builds; they name its default cache folder.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.6.16"
)

// EtcdPrefix is the key prefix under which the apiserver stores objects in etcd: a Secret
// ns/name is at EtcdPrefix+"/secrets/ns/name".
const EtcdPrefix = "/registry"

// startTimeout bounds each of etcd's and the apiserver's start. envtest's default of 20 s is
// too short on a 2-core machine that is also compiling and running the other test packages.
const startTimeout = 90 * time.Second

// Env is a running control plane.
type Env struct {
	// Config authenticates as an administrator (group system:masters) with a client
	// certificate. Set Config.Impersonate on a copy to act as another user.
	Config *rest.Config
	// Clientset is a client-go clientset built from Config.
	Clientset *kubernetes.Clientset
	// EtcdEndpoint is etcd's client URL (http://127.0.0.1:PORT), for tests that read what the
	// apiserver stored, such as the ciphertext of an encrypted Secret (see EtcdPrefix).
	EtcdEndpoint string
	// KubeconfigFile is a kubeconfig for Config, for driving a real binary (rampart, kubectl).
	KubeconfigFile string

	env      *envtest.Environment
	dir      string
	watchdog *exec.Cmd
	logs     *tailBuffer
}

// Option changes how a control plane is started.
type Option func(*envtest.Environment)

// APIServerFlag sets --name=value on the kube-apiserver, replacing any default for that flag;
// several values are joined with commas by the apiserver's flag parser, e.g.
// APIServerFlag("encryption-provider-config", file) or
// APIServerFlag("enable-admission-plugins", "NodeRestriction", "PodSecurity").
func APIServerFlag(name string, values ...string) Option {
	return func(e *envtest.Environment) {
		e.ControlPlane.GetAPIServer().Configure().Set(name, strings.Join(values, ","))
	}
}

// Start starts a control plane for this test alone, stopped when the test ends. It costs about
// 5 s; prefer Shared unless the test needs its own flags.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	dir := assetsDir(t)
	env, err := start(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.stop(); err != nil {
			t.Errorf("kubetest: stopping the control plane: %v", err)
		}
	})
	return env
}

var shared struct {
	mu   sync.Mutex
	main bool
	opts []Option
	env  *Env
	err  error
}

// Main runs the package's tests and then stops the shared control plane, if a test started one;
// call it from TestMain. The options apply to the shared control plane.
func Main(m *testing.M, opts ...Option) {
	shared.mu.Lock()
	shared.main, shared.opts = true, opts
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	if shared.env != nil {
		if err := shared.env.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stopping the shared control plane: %v\n", err)
		}
		shared.env = nil
	}
	shared.mu.Unlock()
	os.Exit(code)
}

// Shared returns the control plane shared by the tests of this test binary, starting it on first
// use. It needs Main in the package's TestMain, which stops it after the last test. Tests that
// share it should work in their own namespaces (see Namespace) and clean up cluster-scoped
// objects they create.
func Shared(t testing.TB) *Env {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("kubetest.Shared needs `func TestMain(m *testing.M) { kubetest.Main(m) }` in the test package, " +
			"which stops the control plane when the tests end")
	}
	dir := assetsDir(t)
	if shared.env == nil && shared.err == nil {
		shared.env, shared.err = start(dir, shared.opts)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

// Namespace creates a namespace with a generated name for this test and deletes it when the test
// ends (no controller-manager runs, so the namespace's objects are not garbage-collected).
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	ns, err := e.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = e.Clientset.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// assetsDir returns the folder holding kube-apiserver and etcd, or skips (fails in CI) the test.
func assetsDir(t testing.TB) string {
	t.Helper()
	dir, from := os.Getenv("KUBEBUILDER_ASSETS"), "$KUBEBUILDER_ASSETS"
	if dir == "" {
		dir, from = os.Getenv("RAMPART_KUBE_ASSETS"), "$RAMPART_KUBE_ASSETS"
	}
	if dir == "" {
		if cache, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(cache, "rampart", "kube", KubernetesVersion+"-etcd"+EtcdVersion, "bin")
			from = "the default folder of scripts/kube-assets.sh"
		}
	}
	const how = "run ./scripts/test.sh, or build them once (about 15 minutes, then cached) with " +
		"`export KUBEBUILDER_ASSETS=$(./scripts/kube-assets.sh)` from the repository root"
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			testenv.Missing(t, "a Kubernetes control plane (kube-apiserver and etcd)", fmt.Sprintf("no executable %s in %s (%s); %s", bin, dir, from, how))
		}
	}
	return dir
}

func start(assets string, opts []Option) (env *Env, err error) {
	began := time.Now()
	dir, err := os.MkdirTemp("", "rampart-kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	logs := &tailBuffer{max: 64 << 10}
	te := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	api := te.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, "kube-apiserver") // not TEST_ASSET_* from the environment
	api.CertDir = filepath.Join(dir, "apiserver")
	te.ControlPlane.Etcd = &envtest.Etcd{
		Path:    filepath.Join(assets, "etcd"),
		DataDir: filepath.Join(dir, "etcd"),
	}
	for _, d := range []string{api.CertDir, te.ControlPlane.Etcd.DataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("kubetest: %w", err)
		}
	}
	if os.Getenv("KUBEBUILDER_ATTACH_CONTROL_PLANE_OUTPUT") != "true" {
		api.Out, api.Err = logs, logs
		te.ControlPlane.Etcd.Out, te.ControlPlane.Etcd.Err = logs, logs
	}
	// envtest already sets --allow-privileged=true (else privileged pods are refused before any
	// webhook sees them) and --disable-admission-plugins=ServiceAccount (no controller-manager
	// creates default service accounts). It does not pin the advertised address, so the
	// apiserver would pick the host's address, or fail where there is no default route; and
	// advertising loopback needs the endpoint reconciler off, since 127.0.0.1 cannot be an
	// endpoint of the "kubernetes" Service.
	args := api.Configure()
	args.Set("advertise-address", "127.0.0.1")
	args.Set("endpoint-reconciler-type", "none")
	for _, o := range opts {
		o(te)
	}

	before := childPIDs()
	if _, err := te.Start(); err != nil {
		_ = te.Stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("kubetest: starting etcd and kube-apiserver from %s: %w\n--- their output (last %d KiB):\n%s",
			assets, err, logs.max>>10, logs.String())
	}
	env = &Env{
		Config:       te.Config,
		EtcdEndpoint: te.ControlPlane.Etcd.URL.String(),
		env:          te,
		dir:          dir,
		logs:         logs,
	}
	defer func() {
		if err != nil {
			_ = env.stop()
		}
	}()
	env.watchdog = startWatchdog(dir, newPIDs(before, childPIDs()))
	if env.Clientset, err = kubernetes.NewForConfig(te.Config); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	env.KubeconfigFile = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(env.KubeconfigFile, te.KubeConfig, 0o600); err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "kubetest: kube-apiserver %s at %s, etcd at %s, ready in %v\n",
			KubernetesVersion, te.Config.Host, env.EtcdEndpoint, time.Since(began).Round(10*time.Millisecond))
	}
	return env, nil
}

func (e *Env) stop() error {
	if e.watchdog != nil {
		_ = syscall.Kill(-e.watchdog.Process.Pid, syscall.SIGKILL)
		_ = e.watchdog.Wait()
	}
	err := e.env.Stop()
	if rmErr := os.RemoveAll(e.dir); err == nil {
		err = rmErr
	}
	return err
}

// startWatchdog starts a shell that outlives this test process if it dies without stopping the
// control plane (a panic, a -timeout, a kill), and then stops etcd and the apiserver and removes
// their folder. envtest starts them in their own process groups with no parent-death signal, so
// without this they would run on, holding memory, after every crashed test run.
func startWatchdog(dir string, pids []int) *exec.Cmd {
	if len(pids) == 0 {
		return nil
	}
	script := `parent=$1 dir=$2; shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
for p in "$@"; do kill -TERM -- "-$p" 2>/dev/null; done
sleep 5
for p in "$@"; do kill -KILL -- "-$p" 2>/dev/null; done
rm -rf -- "$dir"`
	args := []string{"-c", script, "kubetest-watchdog", strconv.Itoa(os.Getpid()), dir}
	for _, p := range pids {
		args = append(args, strconv.Itoa(p))
	}
	cmd := exec.Command("/bin/sh", args...)
	// Its own process group: a Ctrl-C to the test's group does not stop it before it has
	// cleaned up, and stop can end it together with its sleep.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil // best effort: the control plane works without it
	}
	return cmd
}

// childPIDs lists this process's children (Linux /proc; empty elsewhere).
func childPIDs() map[int]bool {
	pids := map[int]bool{}
	self := os.Getpid()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			pids[pid] = true
		}
	}
	return pids
}

func newPIDs(before, after map[int]bool) []int {
	var pids []int
	for p := range after {
		if !before[p] {
			pids = append(pids, p)
		}
	}
	return pids
}

// tailBuffer keeps the last max bytes written to it: the control plane's output, shown when it
// fails to start.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if len(w.b) > w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.b)
}
