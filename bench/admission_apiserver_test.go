package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/install"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
)

// BenchmarkAdmissionAPIServer: the latency Rampart's webhook adds to creating a pod through a
// real kube-apiserver (target: p99 < 5 ms added at 200 concurrent creators).
//
// etcd and kube-apiserver v1.37.2 run on loopback under controller-runtime's envtest, started as
// internal/kubetest starts them (it cannot be imported from this module); there is no kubelet,
// so a created pod is only stored. The webhook is kube/admission's Handler served over TLS in
// this process, with what `rampart server` gives it: the decision index over SQLite, the demo
// policy, the namespace's NetworkPolicies from a watch (admission.NewKubeCluster), refusals
// recorded in the ledger; it is registered by kube/install (validating and mutating,
// failurePolicy Fail) with a certificate from install.SelfIssue.
//
// The pods are the compliant training pod of the in-process benchmark, created in the high-risk
// namespace "research" (a RuntimeClass gvisor and the default-deny NetworkPolicy exist). The
// same creations are timed in three modes, in alternating slices so that a burst from another
// process hits all alike: "off" (the webhook configurations deleted), "every-pod" (registered
// without the mutating webhook's match condition, so the apiserver calls /mutate and then
// /validate for every pod, as before the condition) and "webhook" (registered as rampart kube
// install does: these pods name their runtime class, so only /validate is called). Each switch
// waits until the apiserver acts on it (a dry-run
// privileged pod is refused, and a dry-run pod without a runtime class comes back with gvisor,
// exactly when a webhook is installed). Three loads:
//
//   - one creator: the latency the webhook calls add when nothing queues (4 × 200 pods);
//   - 200 creators in a closed loop (each creates its next pod as soon as the last is answered):
//     the issue's "200 concurrent", which saturates this machine, so that the added latency is
//     the webhook's CPU cost queued behind 200 requests;
//   - an open loop at a quarter and at half of the slower mode's closed-loop throughput, at most
//     200 in flight, each creation timed from when it was due.
//
// Each run prints the CPU per pod of this process (load generator and webhook) and of etcd and
// kube-apiserver, and the time spent in Rampart's handler per review.
//
// Environment: RAMPART_BENCH_ADMISSION_PODS (default 1500) pods per closed-loop slice,
// RAMPART_BENCH_ADMISSION_SLICES (default 3) slices per mode, RAMPART_BENCH_ADMISSION_CREATORS
// (default 200) concurrent creators, RAMPART_BENCH_ADMISSION_PACED_SECONDS (default 3) seconds
// per open-loop slice. RAMPART_BENCH_ADMISSION_CAPTURE=1 writes the reviews the apiserver sent
// for the pod and for a Deployment to testdata/admission/review-{pod,deployment}.json, which the
// in-process benchmarks measure.

const (
	apiserverAddedTarget = 5 * time.Millisecond
	kubeVersion          = "v1.37.2"
	etcdVersion          = "v3.6.16"
)

// kubeAssets finds kube-apiserver and etcd as internal/kubetest does, or skips the benchmark
// saying how to get them (fails under RAMPART_REQUIRE_INTEGRATION=1).
func kubeAssets(b *testing.B) string {
	dir, from := os.Getenv("KUBEBUILDER_ASSETS"), "$KUBEBUILDER_ASSETS"
	if dir == "" {
		dir, from = os.Getenv("RAMPART_KUBE_ASSETS"), "$RAMPART_KUBE_ASSETS"
	}
	if dir == "" {
		if cache, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(cache, "rampart", "kube", kubeVersion+"-etcd"+etcdVersion, "bin")
			from = "the default folder of scripts/kube-assets.sh"
		}
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if fi, err := os.Stat(filepath.Join(dir, bin)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			msg := fmt.Sprintf("BenchmarkAdmissionAPIServer needs a Kubernetes control plane: no executable %s in %s (%s); "+
				"build it once (about 15 minutes, then cached) with `export KUBEBUILDER_ASSETS=$(../scripts/kube-assets.sh)` from bench/", bin, dir, from)
			if os.Getenv("RAMPART_REQUIRE_INTEGRATION") == "1" {
				b.Fatal(msg)
			}
			b.Skip(msg)
		}
	}
	return dir
}

// controlPlane is etcd and kube-apiserver under envtest.
type controlPlane struct {
	env      *envtest.Environment
	dir      string
	logs     *tailBuffer
	pids     []int
	watchdog *exec.Cmd
}

// startControlPlane starts etcd and kube-apiserver with internal/kubetest's flags: envtest's
// own (--allow-privileged=true, the ServiceAccount admission plugin off), the advertised address
// pinned to loopback with the endpoint reconciler off, and a 90 s start timeout.
func startControlPlane(assets string) (*controlPlane, error) {
	dir, err := os.MkdirTemp("", "rampart-bench-kube-")
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{dir: dir, logs: &tailBuffer{max: 64 << 10}}
	te := &envtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 90 * time.Second, ControlPlaneStopTimeout: 30 * time.Second}
	api := te.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(assets, "kube-apiserver")
	api.CertDir = filepath.Join(dir, "apiserver")
	te.ControlPlane.Etcd = &envtest.Etcd{Path: filepath.Join(assets, "etcd"), DataDir: filepath.Join(dir, "etcd")}
	for _, d := range []string{api.CertDir, te.ControlPlane.Etcd.DataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	api.Out, api.Err = cp.logs, cp.logs
	te.ControlPlane.Etcd.Out, te.ControlPlane.Etcd.Err = cp.logs, cp.logs
	args := api.Configure()
	args.Set("advertise-address", "127.0.0.1")
	args.Set("endpoint-reconciler-type", "none")
	before := childProcs()
	if _, err := te.Start(); err != nil {
		_ = te.Stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting etcd and kube-apiserver from %s: %w\n--- their output:\n%s", assets, err, cp.logs.String())
	}
	cp.env = te
	for p := range childProcs() {
		if !before[p] {
			cp.pids = append(cp.pids, p)
		}
	}
	cp.watchdog = startKubeWatchdog(dir, cp.pids)
	return cp, nil
}

func (cp *controlPlane) stop() error {
	if cp.watchdog != nil {
		_ = syscall.Kill(-cp.watchdog.Process.Pid, syscall.SIGKILL)
		_ = cp.watchdog.Wait()
	}
	err := cp.env.Stop()
	os.RemoveAll(cp.dir)
	return err
}

// cpuTicks returns the CPU time (user+system, clock ticks) of etcd and kube-apiserver.
func (cp *controlPlane) cpuTicks() int64 {
	var n int64
	for _, p := range cp.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		for _, x := range f[11:13] {
			v, _ := strconv.ParseInt(x, 10, 64)
			n += v
		}
	}
	return n
}

// startKubeWatchdog stops etcd and the apiserver if this process dies without stopping them
// (a panic, -timeout): envtest starts them in their own process groups (internal/kubetest does
// the same).
func startKubeWatchdog(dir string, pids []int) *exec.Cmd {
	if len(pids) == 0 {
		return nil
	}
	script := `parent=$1 dir=$2; shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
for p in "$@"; do kill -TERM -- "-$p" 2>/dev/null; done
sleep 5
for p in "$@"; do kill -KILL -- "-$p" 2>/dev/null; done
rm -rf -- "$dir"`
	args := []string{"-c", script, "rampart-bench-watchdog", strconv.Itoa(os.Getpid()), dir}
	for _, p := range pids {
		args = append(args, strconv.Itoa(p))
	}
	cmd := exec.Command("/bin/sh", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Start() != nil {
		return nil
	}
	return cmd
}

// childProcs lists this process's children.
func childProcs() map[int]bool {
	out := map[int]bool{}
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 1 && f[1] == self {
			out[pid] = true
		}
	}
	return out
}

// tailBuffer keeps the last max bytes of the control plane's output.
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

// servedWebhook is the webhook's handler served over TLS on loopback, counting the reviews it
// answers and keeping the first body of each kind it is sent.
type servedWebhook struct {
	srv      *http.Server
	url      string
	caPEM    []byte
	reviews  atomic.Int64
	capture  atomic.Bool // keep the bodies (only until the reviews to measure are captured)
	mu       sync.Mutex
	captured map[string][]byte          // "validate Pod", "validate Deployment", …
	handled  map[string][]time.Duration // time in the handler, by path, since the last take
}

// take returns and clears the handler times recorded for path.
func (s *servedWebhook) take(path string) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.handled[path]
	delete(s.handled, path)
	return d
}

func serveWebhook(h http.Handler, dir string) (*servedWebhook, error) {
	certs, err := install.SelfIssue(filepath.Join(dir, "webhook"), []string{"127.0.0.1"})
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(certs.CAFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certs.CertFile, certs.KeyFile)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &servedWebhook{url: "https://" + ln.Addr().String(), caPEM: ca, captured: map[string][]byte{}, handled: map[string][]time.Duration{}}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.reviews.Add(1)
			if s.capture.Load() {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				s.keep(r.URL.Path, body)
				r.Body = io.NopCloser(bytes.NewReader(body))
			}
			t0 := time.Now()
			h.ServeHTTP(w, r)
			d := time.Since(t0)
			s.mu.Lock()
			s.handled[r.URL.Path] = append(s.handled[r.URL.Path], d)
			s.mu.Unlock()
		})}
	s.capture.Store(true)
	go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	return s, nil
}

// keep remembers the first review body for each path and kind, leaving out the dry runs that
// probe whether the webhook is installed.
func (s *servedWebhook) keep(path string, body []byte) {
	if bytes.Contains(body, []byte(`"dryRun":true`)) {
		return
	}
	kind := "?"
	if i := bytes.Index(body, []byte(`"kind":{"group":`)); i >= 0 {
		if j := bytes.Index(body[i:], []byte(`"kind":"`)); j >= 0 {
			rest := body[i+j+len(`"kind":"`):]
			if k := bytes.IndexByte(rest, '"'); k >= 0 {
				kind = string(rest[:k])
			}
		}
	}
	key := strings.TrimPrefix(path, "/") + " " + kind
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.captured[key]; !ok {
		s.captured[key] = bytes.Clone(body)
	}
}

// creation is the latency of one pod create and whether it succeeded.
type creation struct {
	d   time.Duration
	err error
}

// createPods creates n pods named prefix-0 … prefix-(n-1) from creators goroutines, timing each
// call.
func createPods(ctx context.Context, cs kubernetes.Interface, ns, prefix string, n, creators int) []creation {
	out := make([]creation, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range creators {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				p := trainingPod()
				p.Name, p.Namespace = fmt.Sprintf("%s-%d", prefix, i), ns
				t0 := time.Now()
				_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				out[i] = creation{time.Since(t0), err}
			}
		})
	}
	wg.Wait()
	return out
}

// createPaced creates n pods at a fixed rate (an open loop: arrivals do not wait for answers),
// with at most creators in flight, timing each from when it was due, so that a wait for a free
// creator counts.
func createPaced(ctx context.Context, cs kubernetes.Interface, ns, prefix string, n int, rate float64, creators int) []creation {
	out := make([]creation, n)
	sem := make(chan struct{}, creators)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		time.Sleep(time.Until(due))
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p := trainingPod()
			p.Name, p.Namespace = fmt.Sprintf("%s-%d", prefix, i), ns
			_, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			out[i] = creation{time.Since(due), err}
		})
	}
	wg.Wait()
	return out
}

// modeStats accumulates the slices of one mode.
type modeStats struct {
	lat      []time.Duration
	elapsed  time.Duration
	cpu      int64 // this process, clock ticks
	kubeCPU  int64 // etcd and the apiserver
	failures int
	slices   []string
}

// BenchmarkAdmissionAPIServer measures pod creation through kube-apiserver with and without
// Rampart's webhook; see the comment at the top of this file.
func BenchmarkAdmissionAPIServer(b *testing.B) {
	assets := kubeAssets(b)
	if b.N > 1 {
		b.Skip("runs once (b.N = 1): each slice creates pods, and the apiserver keeps them")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before the control plane stops: the NetworkPolicy watch ends first
	mach0, own0 := machineCPU(), ownCPU()
	pods, slicesPerMode, creators := envInt("RAMPART_BENCH_ADMISSION_PODS", 1500), envInt("RAMPART_BENCH_ADMISSION_SLICES", 3), envInt("RAMPART_BENCH_ADMISSION_CREATORS", 200)
	began := time.Now()
	cp, err := startControlPlane(assets)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		cancel()
		if err := cp.stop(); err != nil {
			b.Errorf("stopping the control plane: %v", err)
		}
	}()
	ready := time.Since(began)

	// The load client: no client-side rate limit, as many connections as HTTP/2 needs.
	cfg := rest.CopyConfig(cp.env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	env := admissionEnvFor(b)
	settings := env.policy.Kubernetes()
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsHighRisk}}, metav1.CreateOptions{})
	must(err)
	_, err = cs.NodeV1().RuntimeClasses().Create(ctx, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "gvisor"}, Handler: "runsc"}, metav1.CreateOptions{})
	must(err)
	_, err = cs.NetworkingV1().NetworkPolicies(nsHighRisk).Create(ctx, netpol.Render(nsHighRisk, settings.Egress), metav1.CreateOptions{})
	must(err)

	// The webhook as the server wires it, reading NetworkPolicies from a watch and recording
	// refusals in the ledger.
	cluster, err := admission.NewKubeCluster(ctx, cs)
	must(err)
	hook := &admission.Webhook{Policy: env.index.Policy, Decide: env.index, Cluster: cluster, Record: ledgerRecorder(env.store)}
	served, err := serveWebhook(hook.Handler(), cp.dir)
	must(err)
	defer served.srv.Close()
	val, mut, err := install.Webhooks(served.url, served.caPEM, install.Exempt(settings))
	must(err)

	// setHooks installs or deletes both configurations and waits until the apiserver acts on
	// the change: a dry-run privileged pod is refused exactly when the webhook is installed, and
	// a dry-run pod without a runtime class comes back with gvisor exactly then.
	everyPod := mut.DeepCopy()
	everyPod.Webhooks[0].MatchConditions = nil
	setHooks := func(m *admissionregistrationv1.MutatingWebhookConfiguration) {
		b.Helper()
		on := m != nil
		if on {
			must(install.ApplyWebhooks(ctx, cs, val.DeepCopy(), m.DeepCopy()))
		} else {
			if err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, val.Name, metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
				must(err)
			}
			if err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mut.Name, metav1.DeleteOptions{}); !apierrors.IsNotFound(err) {
				must(err)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			priv := trainingPod()
			priv.Name, priv.Spec.Containers[0].SecurityContext = "probe-privileged", &corev1.SecurityContext{Privileged: ptrTo(true)}
			_, perr := cs.CoreV1().Pods(nsHighRisk).Create(ctx, priv, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			plain := trainingPod()
			plain.Name, plain.Spec.RuntimeClassName = "probe-mutate", nil
			got, merr := cs.CoreV1().Pods(nsHighRisk).Create(ctx, plain, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			validating := perr != nil && strings.Contains(perr.Error(), podsec.CheckPrivileged)
			mutating := merr == nil && got.Spec.RuntimeClassName != nil && *got.Spec.RuntimeClassName == "gvisor"
			if merr != nil && !on {
				b.Fatalf("without the webhook a plain pod was refused: %v", merr)
			}
			if validating == on && mutating == on {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("the apiserver did not act on the webhook being %v within 30 s (privileged pod: %v; mutated: %v, %v)", on, perr, mutating, merr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The modes compared: no webhook; the webhook registered without the mutating webhook's
	// match condition (install.RuntimeClassUnset), so that the apiserver calls it twice per pod
	// as it did before the condition; the webhook as rampart kube install registers it.
	modes := []struct {
		name  string
		mut   *admissionregistrationv1.MutatingWebhookConfiguration
		calls int // reviews per pod
	}{{"off", nil, 0}, {"every-pod", everyPod, 2}, {"webhook", mut, 1}}
	setMode := func(i int) {
		b.Helper()
		setHooks(modes[i].mut)
	}

	// Capture what the apiserver sends, for the in-process benchmarks.
	setMode(1)
	dep := wrap("Deployment", trainingPod())
	_, err = cs.AppsV1().Deployments(nsHighRisk).Create(ctx, dep.(*appsv1.Deployment), metav1.CreateOptions{})
	must(err)
	for m := range modes {
		setMode(m)
		for _, c := range createPods(ctx, cs, nsHighRisk, "warm-"+modes[m].name, 300, creators) {
			must(c.err)
		}
	}
	served.mu.Lock()
	podReview, depReview := served.captured["validate Pod"], served.captured["validate Deployment"]
	served.mu.Unlock()
	served.capture.Store(false)
	if os.Getenv("RAMPART_BENCH_ADMISSION_CAPTURE") != "" {
		for name, body := range map[string][]byte{"review-pod.json": podReview, "review-deployment.json": depReview} {
			must(os.WriteFile(filepath.Join("testdata", "admission", name), body, 0o644))
		}
	}
	takeHandler := func() string {
		m, v := Summarize(served.take("/mutate")), Summarize(served.take("/validate"))
		return fmt.Sprintf("/mutate p50 %s p99 %s, /validate p50 %s p99 %s", m.P50.Round(time.Microsecond), m.P99.Round(time.Microsecond),
			v.P50.Round(time.Microsecond), v.P99.Round(time.Microsecond))
	}
	takeHandler()

	// One creator: the latency the two webhook calls add when nothing queues.
	single := make([][]time.Duration, len(modes))
	handlerSingle := make([]string, len(modes))
	for round := range 4 {
		for m := range modes {
			setMode(m)
			for _, c := range createPods(ctx, cs, nsHighRisk, fmt.Sprintf("one-%d-%s", round, modes[m].name), 200, 1) {
				must(c.err)
				single[m] = append(single[m], c.d)
			}
			if round == 3 {
				handlerSingle[m] = takeHandler()
			}
		}
	}

	// Closed loop: alternating slices of pods created by `creators` goroutines.
	stats := make([]*modeStats, len(modes))
	handlerClosed := make([]string, len(modes))
	for m := range modes {
		stats[m] = &modeStats{}
	}
	for s := range slicesPerMode {
		for m := range modes {
			setMode(m)
			takeHandler()
			reviews0, own0s, kube0 := served.reviews.Load(), ownCPU(), cp.cpuTicks()
			t0 := time.Now()
			res := createPods(ctx, cs, nsHighRisk, fmt.Sprintf("s%d-%s", s, modes[m].name), pods, creators)
			el := time.Since(t0)
			st := stats[m]
			st.elapsed += el
			st.cpu += ownCPU() - own0s
			st.kubeCPU += cp.cpuTicks() - kube0
			var lat []time.Duration
			for _, c := range res {
				if c.err != nil {
					st.failures++
					if st.failures <= 3 {
						b.Errorf("pod create (%s): %v", modes[m].name, c.err)
					}
					continue
				}
				lat = append(lat, c.d)
			}
			st.lat = append(st.lat, lat...)
			l := Summarize(lat)
			st.slices = append(st.slices, fmt.Sprintf("%.0f/s p99 %s", float64(len(res))/el.Seconds(), l.P99.Round(time.Millisecond)))
			if n := served.reviews.Load() - reviews0; n != int64(modes[m].calls*pods) {
				b.Errorf("slice %d, %s: the webhook answered %d reviews for %d pods; want %d per pod", s, modes[m].name, n, pods, modes[m].calls)
			}
			handlerClosed[m] = takeHandler()
		}
	}

	// Open loop: the same pods arriving at a fixed rate, a quarter and half of what the slowest
	// mode sustained above, so that the machine is not saturated; at most `creators` in flight.
	capacity := math.Inf(1)
	for _, st := range stats {
		capacity = min(capacity, float64(len(st.lat))/st.elapsed.Seconds())
	}
	type pacedRun struct {
		rate    float64
		pods    int
		lat     [][]time.Duration
		fail    int
		handler []string
	}
	var pacedRuns []pacedRun
	for _, share := range []float64{0.25, 0.5} {
		pr := pacedRun{rate: share * capacity, lat: make([][]time.Duration, len(modes)), handler: make([]string, len(modes))}
		pr.pods = int(pr.rate * float64(envInt("RAMPART_BENCH_ADMISSION_PACED_SECONDS", 3)))
		takeHandler()
		for s := range max(2, slicesPerMode-1) {
			for m := range modes {
				setMode(m)
				for _, c := range createPaced(ctx, cs, nsHighRisk, fmt.Sprintf("paced%.0f-%d-%s", 100*share, s, modes[m].name), pr.pods, pr.rate, creators) {
					if c.err != nil {
						pr.fail++
						continue
					}
					pr.lat[m] = append(pr.lat[m], c.d)
				}
				pr.handler[m] = takeHandler()
			}
		}
		pacedRuns = append(pacedRuns, pr)
	}

	// Summary.
	tick := float64(time.Second) / 100 // USER_HZ
	admissionLine("kube-apiserver %s and etcd %s (envtest, loopback) ready in %s; the webhook over TLS in this process (every-pod: called twice per pod, mutate and validate; webhook: validate only, the pods naming their runtime class)",
		kubeVersion, etcdVersion, ready.Round(10*time.Millisecond))
	admissionLine("reviews as sent by the apiserver: Pod %d bytes, Deployment %d bytes (the in-process benchmarks use %s)", len(podReview), len(depReview),
		map[bool]string{true: "these (captured)", false: "reviewOf's (no capture in testdata/admission)"}[env.captured["pod"]])
	added := func(l []Latencies, m int) string {
		return fmt.Sprintf("added p50 %s p99 %s", (l[m].P50 - l[0].P50).Round(10*time.Microsecond), (l[m].P99 - l[0].P99).Round(10*time.Microsecond))
	}
	verdictAt := func(l []Latencies, m int) string {
		return verdict(l[m].P99-l[0].P99 < apiserverAddedTarget)
	}
	sl := make([]Latencies, len(modes))
	for m := range modes {
		sl[m] = Summarize(single[m])
	}
	admissionLine("1 creator (%d pods per mode, in 4 rounds):", sl[0].N)
	for m := range modes {
		line := fmt.Sprintf("  %-9s p50 %-9s p99 %-9s", modes[m].name, sl[m].P50.Round(10*time.Microsecond), sl[m].P99.Round(10*time.Microsecond))
		if m > 0 {
			line += "  " + added(sl, m) + "; handler per review: " + handlerSingle[m]
		}
		admissionLine("%s", line)
	}
	cl := make([]Latencies, len(modes))
	admissionLine("%d creators, closed loop (%d slices of %d pods per mode):", creators, slicesPerMode, pods)
	for m, st := range stats {
		cl[m] = Summarize(st.lat)
		n := float64(len(st.lat) + st.failures)
		line := fmt.Sprintf("  %-9s %4.0f pods/s  p50 %-9s p99 %-9s CPU per pod: this process %4.0f µs, apiserver+etcd %4.0f µs; slices %s; failures %d",
			modes[m].name, n/st.elapsed.Seconds(), cl[m].P50.Round(time.Millisecond), cl[m].P99.Round(time.Millisecond),
			float64(st.cpu)*tick/n/1e3, float64(st.kubeCPU)*tick/n/1e3, strings.Join(st.slices, ", "), st.failures)
		admissionLine("%s", line)
		if m > 0 {
			admissionLine("            %s (target p99 < %s added: %s); handler per review: %s", added(cl, m), apiserverAddedTarget, verdictAt(cl, m), handlerClosed[m])
		}
	}
	for _, pr := range pacedRuns {
		pl := make([]Latencies, len(modes))
		admissionLine("open loop at %.0f pods/s (%.0f%% of the slowest mode's closed-loop throughput, ≤ %d in flight), %d pods per slice, %d slices per mode, failures %d:",
			pr.rate, 100*pr.rate/capacity, creators, pr.pods, len(pr.lat[0])/max(1, pr.pods), pr.fail)
		for m := range modes {
			pl[m] = Summarize(pr.lat[m])
			line := fmt.Sprintf("  %-9s p50 %-9s p99 %-9s", modes[m].name, pl[m].P50.Round(10*time.Microsecond), pl[m].P99.Round(10*time.Microsecond))
			if m > 0 {
				line += fmt.Sprintf("  %s (target p99 < %s added: %s); handler per review: %s", added(pl, m), apiserverAddedTarget, verdictAt(pl, m), pr.handler[m])
			}
			admissionLine("%s", line)
		}
	}
	b.ReportMetric(float64((cl[1].P99 - cl[0].P99).Microseconds()), "added-p99-µs")
	printAdmission("Admission through kube-apiserver: pod create with and without Rampart's webhook", mach0, own0, cp.cpuTicks())
}
