package podsec

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	testDigest = "sha256:" + strings.Repeat("0123456789abcdef", 4)
	testImage  = "registry.internal.example/research/trainer@" + testDigest
	testConfig = Config{
		AllowedRegistries:  []string{"registry.internal.example/"},
		RequireDigest:      true,
		HighRiskNamespaces: []string{"weights"},
		HighRiskLabels:     map[string]string{"rampart.dev/risk": "high"},
	}
)

func restrictedContainer(name string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: testImage,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// compliantPod passes every check under testConfig in namespace "research".
func compliantPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "trainer", Namespace: "research", Labels: map[string]string{"app": "trainer"}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{restrictedContainer("init")},
			Containers:     []corev1.Container{restrictedContainer("app"), restrictedContainer("sidecar")},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
}

func podWorkload(t testing.TB, p *corev1.Pod) Workload {
	t.Helper()
	w, err := WorkloadFromObject(p)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// summary renders violations as "check@field" for comparison.
func summary(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Check+"@"+v.Field)
	}
	return out
}

func TestCompliantPodPasses(t *testing.T) {
	p := compliantPod()
	if vs := Check(podWorkload(t, p), "research", testConfig, nil); len(vs) != 0 {
		t.Fatalf("compliant pod has violations:\n%s", strings.Join(summary(vs), "\n"))
	}
	// Also in a high-risk namespace once it runs under gVisor.
	p.Spec.RuntimeClassName = ptr("gvisor")
	if vs := Check(podWorkload(t, p), "weights", testConfig, nil); len(vs) != 0 {
		t.Fatalf("compliant gVisor pod in high-risk namespace has violations: %v", summary(vs))
	}
	// And with the zero Config: only the automount rule applies, and is met.
	if vs := Check(podWorkload(t, compliantPod()), "", Config{}, nil); len(vs) != 0 {
		t.Fatalf("zero Config: %v", summary(vs))
	}
}

func TestCheckFindsEachViolation(t *testing.T) {
	sc := func(p *corev1.Pod, i int) *corev1.SecurityContext { return p.Spec.Containers[i].SecurityContext }
	tests := []struct {
		name      string
		namespace string // default "research"
		mutate    func(p *corev1.Pod)
		want      []string // check@field, in order
	}{
		// restricted.privileged
		{name: "privileged container", mutate: func(p *corev1.Pod) { sc(p, 1).Privileged = ptr(true) },
			want: []string{"restricted.privileged@spec.containers[1].securityContext.privileged"}},
		{name: "privileged false is fine", mutate: func(p *corev1.Pod) { sc(p, 1).Privileged = ptr(false) }},
		{name: "privileged init container", mutate: func(p *corev1.Pod) { p.Spec.InitContainers[0].SecurityContext.Privileged = ptr(true) },
			want: []string{"restricted.privileged@spec.initContainers[0].securityContext.privileged"}},
		{name: "privileged ephemeral container", mutate: func(p *corev1.Pod) {
			c := restrictedContainer("debug")
			c.SecurityContext.Privileged = ptr(true)
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon(c)}}
		}, want: []string{"restricted.privileged@spec.ephemeralContainers[0].securityContext.privileged"}},

		// restricted.host-namespaces
		{name: "hostNetwork", mutate: func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			want: []string{"restricted.host-namespaces@spec.hostNetwork"}},
		{name: "hostPID and hostIPC", mutate: func(p *corev1.Pod) { p.Spec.HostPID, p.Spec.HostIPC = true, true },
			want: []string{"restricted.host-namespaces@spec.hostPID", "restricted.host-namespaces@spec.hostIPC"}},

		// restricted.volume-types
		{name: "hostPath volume", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes[1].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/docker.sock"}}
		}, want: []string{"restricted.volume-types@spec.volumes[1].hostPath"}},
		{name: "nfs volume", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}}
		}, want: []string{"restricted.volume-types@spec.volumes[0].nfs"}},
		{name: "volume with no source", mutate: func(p *corev1.Pod) { p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{} },
			want: []string{"restricted.volume-types@spec.volumes[0]"}},
		{name: "emptyDir and hostPath in one volume (stricter than upstream)", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes[1].HostPath = &corev1.HostPathVolumeSource{Path: "/"}
		}, want: []string{"restricted.volume-types@spec.volumes[1].hostPath"}},
		{name: "every allowed volume type", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes = nil
			for i := range 9 {
				p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v", VolumeSource: volumeSource(i)})
			}
			p.Spec.Volumes[5].Image.Reference = testImage
		}},

		// restricted.host-ports
		{name: "hostPort", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 443, HostPort: 443}}
		}, want: []string{"restricted.host-ports@spec.containers[0].ports[1].hostPort"}},

		// restricted.capabilities
		{name: "no capabilities", mutate: func(p *corev1.Pod) { sc(p, 0).Capabilities = nil },
			want: []string{"restricted.capabilities@spec.containers[0].securityContext.capabilities.drop"}},
		{name: "drop lowercase all", mutate: func(p *corev1.Pod) { sc(p, 0).Capabilities.Drop = []corev1.Capability{"all"} },
			want: []string{"restricted.capabilities@spec.containers[0].securityContext.capabilities.drop"}},
		{name: "add NET_BIND_SERVICE is fine", mutate: func(p *corev1.Pod) { sc(p, 0).Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"} }},
		{name: "add SYS_ADMIN", mutate: func(p *corev1.Pod) {
			sc(p, 0).Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE", "SYS_ADMIN"}
		}, want: []string{"restricted.capabilities@spec.containers[0].securityContext.capabilities.add[1]"}},
		{name: "add CHOWN (baseline's default set is not enough)", mutate: func(p *corev1.Pod) {
			sc(p, 0).Capabilities.Add = []corev1.Capability{"CHOWN"}
		}, want: []string{"restricted.capabilities@spec.containers[0].securityContext.capabilities.add[0]"}},

		// restricted.privilege-escalation
		{name: "allowPrivilegeEscalation unset", mutate: func(p *corev1.Pod) { sc(p, 1).AllowPrivilegeEscalation = nil },
			want: []string{"restricted.privilege-escalation@spec.containers[1].securityContext.allowPrivilegeEscalation"}},
		{name: "allowPrivilegeEscalation true", mutate: func(p *corev1.Pod) { sc(p, 1).AllowPrivilegeEscalation = ptr(true) },
			want: []string{"restricted.privilege-escalation@spec.containers[1].securityContext.allowPrivilegeEscalation"}},
		{name: "container without securityContext", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].SecurityContext = nil },
			want: []string{
				"restricted.capabilities@spec.containers[0].securityContext.capabilities.drop",
				"restricted.privilege-escalation@spec.containers[0].securityContext.allowPrivilegeEscalation",
			}},
		{name: "windows pod skips capabilities, privilege escalation, seccomp", mutate: func(p *corev1.Pod) {
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			p.Spec.SecurityContext.SeccompProfile = nil
			p.Spec.Containers[0].SecurityContext = nil
		}},

		// restricted.run-as-non-root
		{name: "pod runAsNonRoot false", mutate: func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsNonRoot = ptr(false) },
			want: []string{"restricted.run-as-non-root@spec.securityContext.runAsNonRoot"}},
		{name: "runAsNonRoot set nowhere", mutate: func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsNonRoot = nil },
			want: []string{"restricted.run-as-non-root@spec.securityContext.runAsNonRoot"}},
		{name: "runAsNonRoot set on one container only", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.RunAsNonRoot = nil
			sc(p, 0).RunAsNonRoot = ptr(true)
		}, want: []string{
			"restricted.run-as-non-root@spec.initContainers[0].securityContext.runAsNonRoot",
			"restricted.run-as-non-root@spec.containers[1].securityContext.runAsNonRoot",
		}},
		{name: "container runAsNonRoot false", mutate: func(p *corev1.Pod) { sc(p, 1).RunAsNonRoot = ptr(false) },
			want: []string{"restricted.run-as-non-root@spec.containers[1].securityContext.runAsNonRoot"}},
		{name: "user namespace relaxes runAsNonRoot and runAsUser", mutate: func(p *corev1.Pod) {
			p.Spec.HostUsers = ptr(false)
			p.Spec.SecurityContext.RunAsNonRoot = ptr(false)
			p.Spec.SecurityContext.RunAsUser = ptr(int64(0))
		}},

		// restricted.run-as-user
		{name: "pod runAsUser 0", mutate: func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsUser = ptr(int64(0)) },
			want: []string{"restricted.run-as-user@spec.securityContext.runAsUser"}},
		{name: "container runAsUser 0", mutate: func(p *corev1.Pod) { sc(p, 0).RunAsUser = ptr(int64(0)) },
			want: []string{"restricted.run-as-user@spec.containers[0].securityContext.runAsUser"}},
		{name: "runAsUser 1000 is fine", mutate: func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsUser = ptr(int64(1000)) }},

		// restricted.seccomp
		{name: "pod seccomp Unconfined", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.SeccompProfile.Type = corev1.SeccompProfileTypeUnconfined
		}, want: []string{"restricted.seccomp@spec.securityContext.seccompProfile.type"}},
		{name: "seccomp set nowhere", mutate: func(p *corev1.Pod) { p.Spec.SecurityContext.SeccompProfile = nil },
			want: []string{"restricted.seccomp@spec.securityContext.seccompProfile.type"}},
		{name: "seccomp on one container only", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.SeccompProfile = nil
			sc(p, 0).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptr("x.json")}
		}, want: []string{
			"restricted.seccomp@spec.initContainers[0].securityContext.seccompProfile.type",
			"restricted.seccomp@spec.containers[1].securityContext.seccompProfile.type",
		}},
		{name: "container seccomp Unconfined overrides pod", mutate: func(p *corev1.Pod) {
			sc(p, 1).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
		}, want: []string{"restricted.seccomp@spec.containers[1].securityContext.seccompProfile.type"}},

		// restricted.apparmor
		{name: "pod AppArmor Unconfined", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		}, want: []string{"restricted.apparmor@spec.securityContext.appArmorProfile.type"}},
		{name: "container AppArmor Unconfined", mutate: func(p *corev1.Pod) {
			sc(p, 0).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		}, want: []string{"restricted.apparmor@spec.containers[0].securityContext.appArmorProfile.type"}},
		{name: "AppArmor annotations", mutate: func(p *corev1.Pod) {
			p.Annotations = map[string]string{
				"container.apparmor.security.beta.kubernetes.io/sidecar": "unconfined",
				"container.apparmor.security.beta.kubernetes.io/app":     "runtime/default",
				"container.apparmor.security.beta.kubernetes.io/init":    "localhost/custom",
				"container.apparmor.security.beta.kubernetes.io/a":       "unconfined",
			}
		}, want: []string{
			"restricted.apparmor@metadata.annotations[container.apparmor.security.beta.kubernetes.io/a]",
			"restricted.apparmor@metadata.annotations[container.apparmor.security.beta.kubernetes.io/sidecar]",
		}},

		// restricted.selinux
		{name: "SELinux type, user, role", mutate: func(p *corev1.Pod) {
			sc(p, 0).SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t", User: "system_u", Role: "system_r", Level: "s0"}
		}, want: []string{
			"restricted.selinux@spec.containers[0].securityContext.seLinuxOptions.type",
			"restricted.selinux@spec.containers[0].securityContext.seLinuxOptions.user",
			"restricted.selinux@spec.containers[0].securityContext.seLinuxOptions.role",
		}},
		{name: "SELinux container_engine_t and level are fine", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "container_engine_t", Level: "s0:c1,c2"}
		}},
		{name: "pod SELinux type", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.SELinuxOptions = &corev1.SELinuxOptions{Type: "unconfined_t"}
		}, want: []string{"restricted.selinux@spec.securityContext.seLinuxOptions.type"}},

		// restricted.proc-mount
		{name: "procMount Unmasked", mutate: func(p *corev1.Pod) { sc(p, 1).ProcMount = ptr(corev1.UnmaskedProcMount) },
			want: []string{"restricted.proc-mount@spec.containers[1].securityContext.procMount"}},
		{name: "procMount Unmasked in a user namespace is still refused", mutate: func(p *corev1.Pod) {
			p.Spec.HostUsers = ptr(false)
			sc(p, 1).ProcMount = ptr(corev1.UnmaskedProcMount)
		}, want: []string{"restricted.proc-mount@spec.containers[1].securityContext.procMount"}},

		// restricted.sysctls
		{name: "unsafe sysctl", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.Sysctls = []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}, {Name: "kernel.msgmax", Value: "1"}}
		}, want: []string{"restricted.sysctls@spec.securityContext.sysctls[1].name"}},

		// restricted.host-probes
		{name: "probe and hook hosts", mutate: func(p *corev1.Pod) {
			c := &p.Spec.Containers[0]
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Host: "169.254.169.254"}}}
			c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}
			c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Host: "10.0.0.1"}}}
		}, want: []string{
			"restricted.host-probes@spec.containers[0].livenessProbe.httpGet.host",
			"restricted.host-probes@spec.containers[0].lifecycle.preStop.tcpSocket.host",
		}},

		// restricted.windows-host-process
		{name: "windows hostProcess", mutate: func(p *corev1.Pod) {
			p.Spec.SecurityContext.WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}
			sc(p, 1).WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptr(true)}
		}, want: []string{
			"restricted.windows-host-process@spec.securityContext.windowsOptions.hostProcess",
			"restricted.windows-host-process@spec.containers[1].securityContext.windowsOptions.hostProcess",
		}},

		// baseline.registry and baseline.digest
		{name: "Docker Hub short name", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx" },
			want: []string{"baseline.registry@spec.containers[0].image", "baseline.digest@spec.containers[0].image"}},
		{name: "look-alike registry host", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "registry.internal.example.evil.com/research/trainer@" + testDigest
		}, want: []string{"baseline.registry@spec.containers[0].image"}},
		{name: "allowed host on another port", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "registry.internal.example:5000/research/trainer@" + testDigest
		}, want: []string{"baseline.registry@spec.containers[0].image"}},
		{name: "allowed host in upper case", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "Registry.Internal.Example/research/trainer@" + testDigest
		}},
		{name: "upper-case repository is not a valid reference", mutate: func(p *corev1.Pod) {
			p.Spec.InitContainers[0].Image = "registry.internal.example/Research/trainer@" + testDigest
		}, want: []string{"baseline.registry@spec.initContainers[0].image", "baseline.digest@spec.initContainers[0].image"}},
		{name: "empty image", mutate: func(p *corev1.Pod) { p.Spec.Containers[1].Image = "" },
			want: []string{"baseline.registry@spec.containers[1].image", "baseline.digest@spec.containers[1].image"}},
		{name: "tag only", mutate: func(p *corev1.Pod) { p.Spec.Containers[1].Image = "registry.internal.example/research/trainer:1.0" },
			want: []string{"baseline.digest@spec.containers[1].image"}},
		{name: "tag and digest", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "registry.internal.example/research/trainer:1.0@" + testDigest
		}},
		{name: "sha512 digest is not sha256", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "registry.internal.example/research/trainer@sha512:" + strings.Repeat("ab", 64)
		}, want: []string{"baseline.digest@spec.containers[1].image"}},
		{name: "upper-case digest is invalid", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[1].Image = "registry.internal.example/research/trainer@" + strings.ToUpper(testDigest)
		}, want: []string{"baseline.registry@spec.containers[1].image", "baseline.digest@spec.containers[1].image"}},
		{name: "ephemeral container image", mutate: func(p *corev1.Pod) {
			c := restrictedContainer("debug")
			c.Image = "busybox@" + testDigest
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon(c)}}
		}, want: []string{"baseline.registry@spec.ephemeralContainers[0].image"}},

		{name: "image volume from another registry, unpinned", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "models", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "ghcr.io/evil/weights:latest"}}})
		}, want: []string{"baseline.registry@spec.volumes[2].image.reference", "baseline.digest@spec.volumes[2].image.reference"}},
		{name: "image volume from the allowed registry, pinned", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "models", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: testImage}}})
		}},

		// baseline.automount
		{name: "automount unset", mutate: func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = nil },
			want: []string{"baseline.automount@spec.automountServiceAccountToken"}},
		{name: "automount explicit opt-in", mutate: func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = ptr(true) }},

		// baseline.runtime-class
		{name: "high-risk namespace without runtime class", namespace: "weights", mutate: func(p *corev1.Pod) {},
			want: []string{"baseline.runtime-class@spec.runtimeClassName"}},
		{name: "high-risk label with empty runtime class", mutate: func(p *corev1.Pod) {
			p.Labels["rampart.dev/risk"] = "high"
			p.Spec.RuntimeClassName = ptr("")
		}, want: []string{"baseline.runtime-class@spec.runtimeClassName"}},
		{name: "high-risk with another runtime class", namespace: "weights", mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr("runc") },
			want: []string{"baseline.runtime-class@spec.runtimeClassName"}},
		{name: "label value differs: not high-risk", mutate: func(p *corev1.Pod) { p.Labels["rampart.dev/risk"] = "low" }},
		{name: "not high-risk may pick any runtime class", mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr("runc") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compliantPod()
			tt.mutate(p)
			ns := tt.namespace
			if ns == "" {
				ns = "research"
			}
			vs := Check(podWorkload(t, p), ns, testConfig, nil)
			if got := summary(vs); !slices.Equal(got, tt.want) {
				t.Fatalf("violations:\n got %q\nwant %q", got, tt.want)
			}
			for _, v := range vs {
				if !strings.Contains(v.Message, v.Field) || v.Fix == "" {
					t.Errorf("violation does not name its field or has no fix: %+v", v)
				}
				parent := v.Field[:max(strings.LastIndexAny(v.Field, ".["), 0)]
				if !strings.Contains(v.Fix, v.Field) && !strings.Contains(v.Fix, parent) {
					t.Errorf("fix does not say what to change: %+v", v)
				}
			}
		})
	}
}

func TestCheckNamespaceFallsBackToObject(t *testing.T) {
	p := compliantPod()
	p.Namespace = "weights"
	w := podWorkload(t, p)
	if got := summary(Check(w, "", testConfig, nil)); !slices.Equal(got, []string{"baseline.runtime-class@spec.runtimeClassName"}) {
		t.Fatalf("empty namespace argument: %v", got)
	}
	if got := Check(w, "research", testConfig, nil); len(got) != 0 {
		t.Fatalf("the argument wins over metadata.namespace: %v", summary(got))
	}
	if len(Mutate(w, "", testConfig)) != 1 {
		t.Fatal("Mutate does not fall back to metadata.namespace")
	}
}

func TestExemptWaivesOnlyThatCheck(t *testing.T) {
	p := compliantPod()
	p.Spec.Containers[0].SecurityContext.Privileged = ptr(true)
	p.Spec.HostNetwork = true
	asked := map[string]int{}
	exempt := func(check string) bool {
		asked[check]++
		return check == CheckPrivileged
	}
	got := summary(Check(podWorkload(t, p), "research", testConfig, exempt))
	if want := []string{"restricted.host-namespaces@spec.hostNetwork"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Asked once about each check that failed, never about those that passed.
	for _, c := range Checks() {
		want := 0
		if c.ID == CheckPrivileged || c.ID == "restricted.host-namespaces" {
			want = 1
		}
		if asked[c.ID] != want {
			t.Errorf("exempt asked %d times about %s, want %d", asked[c.ID], c.ID, want)
		}
	}
}

func TestViolationOrderIsDeterministic(t *testing.T) {
	p := compliantPod()
	p.Annotations = map[string]string{}
	for _, c := range "abcdefghijklmnop" {
		p.Annotations["container.apparmor.security.beta.kubernetes.io/"+string(c)] = "unconfined"
	}
	p.Spec.HostPID = true
	p.Spec.Containers[0].Image = "nginx"
	p.Spec.Containers[1].SecurityContext = nil
	p.Spec.RuntimeClassName = ptr("runc")
	w := podWorkload(t, p)
	cfg := testConfig
	cfg.HighRiskLabels = map[string]string{"a": "1", "b": "2", "app": "trainer", "z": "3"}
	first := Check(w, "research", cfg, nil)
	for range 50 {
		if again := Check(w, "research", cfg, nil); !slices.Equal(again, first) {
			t.Fatalf("order changed:\n%v\n%v", summary(first), summary(again))
		}
	}
	// Ordered by check, in Checks() order.
	rank := map[string]int{}
	for i, c := range Checks() {
		rank[c.ID] = i
	}
	for i := 1; i < len(first); i++ {
		if rank[first[i-1].Check] > rank[first[i].Check] {
			t.Fatalf("violations not ordered by check: %v", summary(first))
		}
	}
}

func TestChecksAreUniqueAndDescribed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Checks() {
		if seen[c.ID] || c.Summary == "" {
			t.Errorf("check %q duplicated or undescribed", c.ID)
		}
		seen[c.ID] = true
		if strings.HasPrefix(c.ID, "restricted.") != (c.Upstream != "") {
			t.Errorf("check %q: restricted checks, and only they, name an upstream check", c.ID)
		}
	}
}

func TestHighRiskReason(t *testing.T) {
	cfg := Config{HighRiskNamespaces: []string{"weights"}, HighRiskLabels: map[string]string{"b": "1", "a": "1"}}
	for range 20 {
		if high, why := cfg.HighRisk("other", map[string]string{"a": "1", "b": "1"}); !high || why != "pod label a=1 marks it high-risk" {
			t.Fatalf("HighRisk = %v, %q", high, why)
		}
	}
	if high, why := cfg.HighRisk("weights", nil); !high || !strings.Contains(why, `"weights"`) {
		t.Fatalf("HighRisk = %v, %q", high, why)
	}
	if high, _ := cfg.HighRisk("other", map[string]string{"a": "2"}); high {
		t.Fatal("label with another value made the pod high-risk")
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{
		AllowedRegistries:  []string{"registry.internal.example/", "registry.internal.example:5000/research/", "localhost/x", "docker.io/library", "[::1]:5000"},
		RuntimeClass:       "gvisor",
		HighRiskNamespaces: []string{"weights"},
		HighRiskLabels:     map[string]string{"rampart.dev/risk": "high"},
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (&Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		cfg  Config
		want string
	}{
		{Config{AllowedRegistries: []string{""}}, "allowedRegistries[0]"},
		{Config{AllowedRegistries: []string{"library/"}}, `for Docker Hub write "docker.io/library"`},
		{Config{AllowedRegistries: []string{"registry.internal.example/Team"}}, "not a valid repository path"},
		{Config{AllowedRegistries: []string{"reg_istry.example/"}}, "not a valid registry host"},
		{Config{RuntimeClass: "gVisor"}, "runtimeClass"},
		{Config{HighRiskNamespaces: []string{"Weights"}}, "highRiskNamespaces[0]"},
		{Config{HighRiskLabels: map[string]string{"risk": "very high"}}, "highRiskLabels[risk]"},
		{Config{HighRiskLabels: map[string]string{"-risk": "high"}}, `key "-risk"`},
	}
	for _, b := range bad {
		err := b.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", b.cfg, err, b.want)
		}
	}
}

func TestCheckNilSafety(t *testing.T) {
	if vs := Check(Workload{}, "", testConfig, nil); vs != nil {
		t.Fatalf("empty workload: %v", vs)
	}
	// A spec without metadata.
	w := Workload{Spec: &corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}}}, SpecPath: "spec"}
	Check(w, "weights", testConfig, nil)
	Mutate(w, "weights", testConfig)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func mustUnmarshal(b []byte, v any) {
	if err := json.Unmarshal(b, v); err != nil {
		panic(err)
	}
}

func podJSON(t testing.TB, meta *metav1.ObjectMeta, spec *corev1.PodSpec) string {
	t.Helper()
	return string(mustJSON(corev1.Pod{ObjectMeta: *meta, Spec: *spec}))
}
