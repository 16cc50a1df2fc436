package podsec

import (
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// The upstream library k8s.io/pod-security-admission is the oracle for the
// restricted.* checks: a random PodSpec fails our check X exactly when it
// fails the upstream check X implements.

// oracle evaluates the upstream restricted profile at its latest version,
// check by check, so failures can be compared by id.
type oracle struct {
	checks []oracleCheck
	eval   policy.Evaluator
}

type oracleCheck struct {
	id policy.CheckID
	fn policy.CheckPodFn
}

func newOracle(t testing.TB) *oracle {
	t.Helper()
	all := policy.DefaultChecks()
	// At the restricted level, a restricted check's overrides replace the
	// baseline checks they name (capabilities, hostPath, seccomp,
	// procMount). Latest = each check's last version.
	overridden := map[policy.CheckID]bool{}
	for _, c := range all {
		if c.Level == psaapi.LevelRestricted {
			for _, id := range c.Versions[len(c.Versions)-1].OverrideCheckIDs {
				overridden[id] = true
			}
		}
	}
	o := &oracle{}
	for _, c := range all {
		if !overridden[c.ID] {
			o.checks = append(o.checks, oracleCheck{c.ID, c.Versions[len(c.Versions)-1].CheckPod})
		}
	}
	ev, err := policy.NewEvaluator(all, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.eval = ev
	return o
}

// failing returns the sorted upstream ids of the failing checks. It also
// holds the per-check emulation to the library's own evaluator: both must
// agree on the number of failures.
func (o *oracle) failing(t testing.TB, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	t.Helper()
	var ids []string
	for _, c := range o.checks {
		if !c.fn(meta, spec).Allowed {
			ids = append(ids, string(c.id))
		}
	}
	n := 0
	for _, r := range o.eval.EvaluatePod(psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}, meta, spec) {
		if !r.Allowed {
			n++
		}
	}
	if n != len(ids) {
		t.Fatalf("oracle emulation is wrong: per-check failures %v, evaluator failures %d", ids, n)
	}
	sort.Strings(ids)
	return ids
}

// upstreamOf maps our restricted check ids to upstream's.
var upstreamOf = func() map[string]string {
	m := map[string]string{}
	for _, c := range Checks() {
		if c.Upstream != "" {
			m[c.ID] = c.Upstream
		}
	}
	return m
}()

// ourFailing returns the sorted upstream ids of our failing restricted checks.
func ourFailing(meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	w := Workload{Kind: "Pod", Meta: meta, PodMeta: meta, Spec: spec, MetaPath: "metadata", SpecPath: "spec"}
	set := sets.New[string]()
	for _, v := range Check(w, "ns", Config{}, nil) {
		if up, ok := upstreamOf[v.Check]; ok {
			set.Insert(up)
		}
	}
	return sets.List(set)
}

// expectedDivergence returns the upstream ids our check adds on purpose:
// a volume with an allowed source and a restricted one (refused by API
// validation anyway) is refused by us and accepted by upstream.
func expectedDivergence(spec *corev1.PodSpec) []string {
	for i := range spec.Volumes {
		v := &spec.Volumes[i].VolumeSource
		if !allowedVolumeSource(v) {
			continue
		}
		for _, r := range restrictedVolumeSources {
			if r.set(v) {
				return []string{"restrictedVolumes"}
			}
		}
	}
	return nil
}

// compareWithUpstream fails t when our restricted verdict differs from
// upstream's for the pod, and returns upstream's failing ids.
func compareWithUpstream(t testing.TB, o *oracle, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []string {
	t.Helper()
	up := o.failing(t, meta, spec)
	want := sets.List(sets.New(up...).Insert(expectedDivergence(spec)...))
	got := ourFailing(meta, spec)
	if !slices.Equal(got, want) {
		w := Workload{Kind: "Pod", Meta: meta, PodMeta: meta, Spec: spec, MetaPath: "metadata", SpecPath: "spec"}
		var lines []string
		for _, v := range Check(w, "ns", Config{}, nil) {
			lines = append(lines, "  "+v.Field+": "+v.Message)
		}
		t.Fatalf("restricted verdict differs from k8s.io/pod-security-admission:\nupstream fails %v\nwe fail       %v\nour violations:\n%s\npod: %s",
			up, got, strings.Join(lines, "\n"), podJSON(t, meta, spec))
	}
	return up
}

// chooser makes the generator's decisions: choice 0 is always the
// compliant or "unset" option, so an exhausted fuzz input yields a
// compliant pod.
type chooser interface{ intn(n int) int }

// rngChooser picks a non-zero option with probability p.
type rngChooser struct {
	r *rand.Rand
	p float64
}

func (c *rngChooser) intn(n int) int {
	if n <= 1 || c.r.Float64() >= c.p {
		return 0
	}
	return c.r.IntN(n)
}

// byteChooser reads one byte per decision, for coverage-guided fuzzing.
type byteChooser struct{ data []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.data) == 0 || n <= 1 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b) % n
}

// podGen builds PodSpecs that vary every field the restricted checks read.
type podGen struct{ c chooser }

func pick[T any](g *podGen, opts ...T) T { return opts[g.c.intn(len(opts))] }

func ptr[T any](v T) *T { return &v }

func (g *podGen) boolPtr(good bool) *bool {
	return pick(g, ptr(good), nil, ptr(!good))
}

func (g *podGen) seccomp(def *corev1.SeccompProfile) *corev1.SeccompProfile {
	return pick(g, def, nil,
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("p.json")},
		&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		&corev1.SeccompProfile{Type: ""},
		&corev1.SeccompProfile{Type: "runtime/default"})
}

func (g *podGen) appArmor() *corev1.AppArmorProfile {
	return pick(g, nil,
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault},
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptr("p")},
		&corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
		&corev1.AppArmorProfile{Type: ""})
}

func (g *podGen) seLinux() *corev1.SELinuxOptions {
	if g.c.intn(2) == 0 {
		return nil
	}
	return &corev1.SELinuxOptions{
		Type:  pick(g, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t", "spc_t", "unconfined_t", "Container_t"),
		User:  pick(g, "", "system_u"),
		Role:  pick(g, "", "system_r"),
		Level: pick(g, "", "s0:c1,c2"),
	}
}

func (g *podGen) windowsOptions() *corev1.WindowsSecurityContextOptions {
	return pick(g, nil,
		&corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)},
		&corev1.WindowsSecurityContextOptions{HostProcess: ptr(false)},
		&corev1.WindowsSecurityContextOptions{RunAsUserName: ptr("ContainerUser")})
}

func (g *podGen) probe() *corev1.Probe {
	h := pick(g, "", "10.0.0.1", "localhost")
	return pick(g, nil,
		&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: h}}},
		&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Host: h}}},
		&corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}},
		&corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 1}}})
}

func (g *podGen) handler() *corev1.LifecycleHandler {
	h := pick(g, "", "169.254.169.254")
	return pick(g, nil,
		&corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: h}},
		&corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Host: h}},
		&corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}})
}

func (g *podGen) container(name string) corev1.Container {
	c := corev1.Container{Name: name, Image: "registry.internal.example/app@sha256:" + strings.Repeat("a", 64)}
	if g.c.intn(8) != 0 {
		c.SecurityContext = nil
	} else {
		sc := &corev1.SecurityContext{
			AllowPrivilegeEscalation: g.boolPtr(false),
			Privileged:               pick(g, nil, ptr(false), ptr(true)),
			RunAsNonRoot:             pick(g, nil, ptr(true), ptr(false)),
			RunAsUser:                pick(g, nil, ptr(int64(1000)), ptr(int64(0))),
			SeccompProfile:           g.seccomp(nil),
			AppArmorProfile:          g.appArmor(),
			SELinuxOptions:           g.seLinux(),
			WindowsOptions:           g.windowsOptions(),
			ProcMount:                pick(g, nil, ptr(corev1.DefaultProcMount), ptr(corev1.UnmaskedProcMount), ptr(corev1.ProcMountType(""))),
		}
		caps := &corev1.Capabilities{
			Drop: pick(g, []corev1.Capability{"ALL"}, nil, []corev1.Capability{"all"}, []corev1.Capability{"NET_RAW"}, []corev1.Capability{"NET_RAW", "ALL"}),
			Add: pick(g, nil, []corev1.Capability{"NET_BIND_SERVICE"}, []corev1.Capability{"CHOWN"}, []corev1.Capability{"SYS_ADMIN"},
				[]corev1.Capability{"NET_BIND_SERVICE", "NET_RAW"}, []corev1.Capability{""}, []corev1.Capability{"net_bind_service"}),
		}
		sc.Capabilities = pick(g, caps, nil)
		c.SecurityContext = sc
	}
	for range g.c.intn(3) {
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: 8080, HostPort: pick(g, int32(0), int32(80))})
	}
	c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = g.probe(), g.probe(), g.probe()
	if g.c.intn(2) == 1 {
		c.Lifecycle = &corev1.Lifecycle{PostStart: g.handler(), PreStop: g.handler()}
	}
	return c
}

// volumeSources makes one of every volume source, by index; the last
// index is a volume with no source.
func volumeSource(i int) corev1.VolumeSource {
	var v corev1.VolumeSource
	switch i {
	case 0:
		v.EmptyDir = &corev1.EmptyDirVolumeSource{}
	case 1:
		v.ConfigMap = &corev1.ConfigMapVolumeSource{}
	case 2:
		v.CSI = &corev1.CSIVolumeSource{Driver: "d"}
	case 3:
		v.DownwardAPI = &corev1.DownwardAPIVolumeSource{}
	case 4:
		v.Ephemeral = &corev1.EphemeralVolumeSource{}
	case 5:
		v.Image = &corev1.ImageVolumeSource{Reference: "x"}
	case 6:
		v.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}
	case 7:
		v.Projected = &corev1.ProjectedVolumeSource{}
	case 8:
		v.Secret = &corev1.SecretVolumeSource{}
	case 9:
		v.HostPath = &corev1.HostPathVolumeSource{Path: "/"}
	case 10:
		v.GCEPersistentDisk = &corev1.GCEPersistentDiskVolumeSource{}
	case 11:
		v.AWSElasticBlockStore = &corev1.AWSElasticBlockStoreVolumeSource{}
	case 12:
		v.GitRepo = &corev1.GitRepoVolumeSource{}
	case 13:
		v.NFS = &corev1.NFSVolumeSource{}
	case 14:
		v.ISCSI = &corev1.ISCSIVolumeSource{}
	case 15:
		v.Glusterfs = &corev1.GlusterfsVolumeSource{}
	case 16:
		v.RBD = &corev1.RBDVolumeSource{}
	case 17:
		v.FlexVolume = &corev1.FlexVolumeSource{}
	case 18:
		v.Cinder = &corev1.CinderVolumeSource{}
	case 19:
		v.CephFS = &corev1.CephFSVolumeSource{}
	case 20:
		v.Flocker = &corev1.FlockerVolumeSource{}
	case 21:
		v.FC = &corev1.FCVolumeSource{}
	case 22:
		v.AzureFile = &corev1.AzureFileVolumeSource{}
	case 23:
		v.VsphereVolume = &corev1.VsphereVirtualDiskVolumeSource{}
	case 24:
		v.Quobyte = &corev1.QuobyteVolumeSource{}
	case 25:
		v.AzureDisk = &corev1.AzureDiskVolumeSource{}
	case 26:
		v.PhotonPersistentDisk = &corev1.PhotonPersistentDiskVolumeSource{}
	case 27:
		v.PortworxVolume = &corev1.PortworxVolumeSource{}
	case 28:
		v.ScaleIO = &corev1.ScaleIOVolumeSource{}
	case 29:
		v.StorageOS = &corev1.StorageOSVolumeSource{}
	}
	return v
}

const volumeSourceCount = 31 // 30 sources and "none"

// merge returns a with b's non-nil sources added (for multi-source volumes).
func merge(a, b corev1.VolumeSource) corev1.VolumeSource {
	ja, jb := mustJSON(a), mustJSON(b)
	var m map[string]any
	mustUnmarshal(ja, &m)
	var mb map[string]any
	mustUnmarshal(jb, &mb)
	for k, v := range mb {
		m[k] = v
	}
	var out corev1.VolumeSource
	mustUnmarshal(mustJSON(m), &out)
	return out
}

func (g *podGen) pod() (*metav1.ObjectMeta, *corev1.PodSpec) {
	meta := &metav1.ObjectMeta{Name: "p", Annotations: map[string]string{}}
	spec := &corev1.PodSpec{
		AutomountServiceAccountToken: ptr(false),
		HostNetwork:                  g.c.intn(2) == 1,
		HostPID:                      g.c.intn(2) == 1,
		HostIPC:                      g.c.intn(2) == 1,
		HostUsers:                    pick(g, nil, ptr(true), ptr(false)),
		OS:                           pick(g, nil, &corev1.PodOS{Name: corev1.Linux}, &corev1.PodOS{Name: corev1.Windows}, &corev1.PodOS{Name: ""}),
	}
	if g.c.intn(8) != 7 {
		psc := &corev1.PodSecurityContext{
			RunAsNonRoot:    g.boolPtr(true),
			RunAsUser:       pick(g, nil, ptr(int64(1000)), ptr(int64(0))),
			SeccompProfile:  g.seccomp(&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}),
			AppArmorProfile: g.appArmor(),
			SELinuxOptions:  g.seLinux(),
			WindowsOptions:  g.windowsOptions(),
		}
		for range g.c.intn(3) {
			psc.Sysctls = append(psc.Sysctls, corev1.Sysctl{Name: pick(g, "net.ipv4.tcp_syncookies", "kernel.shm_rmid_forced",
				"net.ipv4.tcp_notsent_lowat", "net.ipv4.tcp_rmem", "kernel.msgmax", "net.core.somaxconn", "", "NET.IPV4.TCP_SYNCOOKIES", "net/ipv4/tcp_syncookies"), Value: "1"})
		}
		spec.SecurityContext = psc
	}
	// Containers: usually one or two, sometimes none.
	for i := range pick(g, 1, 2, 3, 0) {
		spec.Containers = append(spec.Containers, g.container("c"+string(rune('0'+i))))
	}
	for i := range g.c.intn(3) {
		spec.InitContainers = append(spec.InitContainers, g.container("i"+string(rune('0'+i))))
	}
	if g.c.intn(4) == 3 {
		e := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(g.container("e0"))}
		spec.EphemeralContainers = append(spec.EphemeralContainers, e)
	}
	for i := range g.c.intn(4) {
		src := volumeSource(g.c.intn(volumeSourceCount))
		if g.c.intn(6) == 5 {
			src = merge(src, volumeSource(g.c.intn(volumeSourceCount)))
		}
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "v" + string(rune('0'+i)), VolumeSource: src})
	}
	for range g.c.intn(3) {
		key := pick(g, "container.apparmor.security.beta.kubernetes.io/c0", "container.apparmor.security.beta.kubernetes.io/nosuch",
			"container.seccomp.security.alpha.kubernetes.io/c0", "seccomp.security.alpha.kubernetes.io/pod", "example.com/other")
		meta.Annotations[key] = pick(g, "runtime/default", "localhost/p", "unconfined", "", "docker/default", "Localhost/x")
	}
	return meta, spec
}

func TestRestrictedMatchesUpstream(t *testing.T) {
	o := newOracle(t)
	if len(o.checks) != len(upstreamOf) {
		t.Fatalf("upstream's restricted profile has %d checks, we implement %d: %v", len(o.checks), len(upstreamOf), o.checks)
	}
	for _, c := range o.checks {
		found := false
		for _, up := range upstreamOf {
			found = found || up == string(c.id)
		}
		if !found {
			t.Errorf("upstream check %q has no Rampart check", c.id)
		}
	}
	n := 4000
	if testing.Short() {
		n = 500
	}
	failures := map[string]int{}
	passed := 0
	for seed, p := range []float64{0.02, 0.08, 0.2, 0.5} {
		g := &podGen{c: &rngChooser{r: rand.New(rand.NewPCG(uint64(seed), 42)), p: p}}
		for range n {
			meta, spec := g.pod()
			up := compareWithUpstream(t, o, meta, spec)
			for _, id := range up {
				failures[id]++
			}
			if len(up) == 0 {
				passed++
			}
		}
	}
	// The test can fail only if the generator reaches every check, both ways.
	for _, c := range o.checks {
		if failures[string(c.id)] < 20 {
			t.Errorf("upstream check %q failed only %d times: the generator does not exercise it", c.id, failures[string(c.id)])
		}
	}
	if passed < n/10 {
		t.Errorf("only %d generated pods passed the restricted profile: the generator does not exercise passing pods", passed)
	}
	t.Logf("%d pods, %d passed; failures by upstream check: %v", 4*n, passed, failures)
}

// FuzzRestrictedMatchesUpstream drives the generator from the fuzz input,
// one byte per decision, so coverage guidance steers it.
func FuzzRestrictedMatchesUpstream(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Add([]byte("\x00\x00\x00\x00\x01\x00\x02\x00\x00\x03\x00\x05\x00\x07\x09\x01\x01\x01\xff\xfe\x80\x40"))
	o := newOracle(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &podGen{c: &byteChooser{data: data}}
		meta, spec := g.pod()
		compareWithUpstream(t, o, meta, spec)
	})
}
