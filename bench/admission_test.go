package bench

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
	"rampart.dev/rampart/store/sqlstore"
)

// The admission benchmarks (issue 4, "Tests and performance"): Rampart's admission webhook
// reviewing a pod in process (target p99 < 50 µs), beside OPA evaluating the same checks written
// in Rego (testdata/admission/*.rego) on the same AdmissionReview bytes (target: Rampart >= 5x
// faster); and, in admission_apiserver_test.go, the latency the webhook adds to pod creation
// through a real kube-apiserver (target p99 < 5 ms added at 200 concurrent creators).

const (
	admissionP99Target   = 50 * time.Microsecond
	admissionRatioTarget = 5.0
	// admissionSamples is how many reviews are timed one by one per case (after the b.Loop),
	// fewer (down to 5,000, about 2 s) for slow cases.
	admissionSamples = 20_000
	// The namespaces of the corpus: research is high-risk in the demo policy, research-sandbox is
	// not. Both have Rampart's default-deny egress NetworkPolicy.
	nsHighRisk = "research"
	nsSandbox  = "research-sandbox"
	// admissionDigest pins every image of the compliant pod.
	admissionDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// admissionRego is the Rego peer: the Pod Security restricted profile and the research
// baseline as deny rules over input.request.object.
//
//go:embed testdata/admission/*.rego
var admissionRego embed.FS

// AdmissionQuery is what OPA is asked: the set of deny messages, empty when the pod is admitted.
const AdmissionQuery = "data.rampart.admission.deny"

// ---------------------------------------------------------------------------------------------
// The workloads

func ptrTo[T any](v T) *T { return &v }

// trainingPod is a compliant three-container training pod, as a controller would create it in
// the high-risk research namespace: trainer, metrics sidecar and log shipper, with probes,
// resources, mounts, and the labels and annotations such pods carry (kube/podsec's benchmark pod,
// with the demo policy's registry).
func trainingPod() *corev1.Pod {
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
	}
	mk := func(name string, port int32) corev1.Container {
		return corev1.Container{
			Name:  name,
			Image: "registry.internal.example/research/" + name + ":1.4.2@" + admissionDigest,
			Args:  []string{"--config=/etc/" + name + "/config.yaml"},
			Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "LOG_LEVEL", Value: "info"}},
			Ports:        []corev1.ContainerPort{{Name: name, ContainerPort: port}},
			Resources:    res,
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}, {Name: "cache", MountPath: "/cache"}},
			LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port)}},
				PeriodSeconds: 10},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptrTo(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				RunAsUser:                ptrTo(int64(65532)),
				ReadOnlyRootFilesystem:   ptrTo(true),
			},
		}
	}
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "trainer-5d4f8c7b9-x2k4q", Namespace: nsHighRisk,
			Labels: map[string]string{"app.kubernetes.io/name": "trainer", "app.kubernetes.io/part-of": "frontier-7",
				"pod-template-hash": "5d4f8c7b9", "team": "pretraining"},
			Annotations: map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-26T04:00:00Z",
				"prometheus.io/scrape": "true", "prometheus.io/port": "9090"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:           "trainer",
			AutomountServiceAccountToken: ptrTo(false),
			RuntimeClassName:             ptrTo("gvisor"),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptrTo(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{mk("trainer", 8080), mk("metrics", 9090), mk("logship", 2020)},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "eval-data", ReadOnly: true}}},
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	p.Spec.Containers[1].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
	return p
}

// corpusKinds are the kinds the corpus wraps each pod in, with their group, version and
// resource.
var corpusKinds = []struct{ kind, group, version, resource string }{
	{"Pod", "", "v1", "pods"},
	{"Deployment", "apps", "v1", "deployments"},
	{"CronJob", "batch", "v1", "cronjobs"},
}

// wrap returns the object of the given kind that runs pod p (p itself for "Pod").
func wrap(kind string, p *corev1.Pod) kruntime.Object {
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations}, Spec: p.Spec}
	name := "trainer"
	meta := metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "trainer"}}
	switch kind {
	case "Deployment":
		return &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: meta,
			Spec: appsv1.DeploymentSpec{Replicas: ptrTo(int32(4)), Selector: &metav1.LabelSelector{MatchLabels: p.Labels}, Template: tmpl}}
	case "CronJob":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		return &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: kind}, ObjectMeta: meta,
			Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	}
	return p
}

// reviewOf is the AdmissionReview the apiserver sends to the validating webhook when obj is
// created in namespace ns by a person.
func reviewOf(tb testing.TB, kind string, obj kruntime.Object, ns, name string) []byte {
	tb.Helper()
	k := corpusKinds[0]
	for _, c := range corpusKinds {
		if c.kind == kind {
			k = c
		}
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		tb.Fatal(err)
	}
	gvk := metav1.GroupVersionKind{Group: k.group, Version: k.version, Kind: k.kind}
	gvr := metav1.GroupVersionResource{Group: k.group, Version: k.version, Resource: k.resource}
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "3c3b8f0e-7d1a-4c55-9f43-8a2b6a0d1e77", Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
			Name: name, Namespace: ns, Operation: admissionv1.Create,
			UserInfo: authenticationUser(),
			Object:   kruntime.RawExtension{Raw: raw},
			DryRun:   ptrTo(false),
			Options:  kruntime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply","fieldValidation":"Strict"}`)},
		},
	}
	b, err := json.Marshal(r)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// authenticationUser is who creates the corpus's objects: a person signed in through OIDC.
func authenticationUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "oidc:alice", UID: "alice",
		Groups: []string{"oidc:ml-research", "system:authenticated"}}
}

// ---------------------------------------------------------------------------------------------
// The corpus: the compliant pod, and one variant per kind of violation

// corpusCase is one variant of trainingPod, with the checks Rampart must report on it.
type corpusCase struct {
	name   string
	ns     string // nsHighRisk when empty
	want   []string
	mutate func(p *corev1.Pod)
}

func (c corpusCase) namespace() string {
	if c.ns == "" {
		return nsHighRisk
	}
	return c.ns
}

const apparmorAnnotation = "container.apparmor.security.beta.kubernetes.io/trainer"

// psc, sc0 and caps0 return the pod's, its first container's and that container's capabilities
// settings, made empty first if absent (random combinations may have removed them).
func psc(p *corev1.Pod) *corev1.PodSecurityContext {
	if p.Spec.SecurityContext == nil {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	}
	return p.Spec.SecurityContext
}

func sc0(p *corev1.Pod) *corev1.SecurityContext {
	c := &p.Spec.Containers[0]
	if c.SecurityContext == nil {
		c.SecurityContext = &corev1.SecurityContext{}
	}
	return c.SecurityContext
}

func caps0(p *corev1.Pod) *corev1.Capabilities {
	if sc0(p).Capabilities == nil {
		sc0(p).Capabilities = &corev1.Capabilities{}
	}
	return sc0(p).Capabilities
}

// admissionCorpus has the compliant pod, pods that break exactly one check (each check, in
// several ways), and pods near a check's edge that pass.
var admissionCorpus = []corpusCase{
	{name: "compliant", mutate: func(*corev1.Pod) {}},
	{name: "privileged", want: []string{podsec.CheckPrivileged}, mutate: func(p *corev1.Pod) { sc0(p).Privileged = ptrTo(true) }},
	{name: "privileged false", mutate: func(p *corev1.Pod) { sc0(p).Privileged = ptrTo(false) }},
	{name: "privileged ephemeral", want: []string{podsec.CheckPrivileged}, mutate: func(p *corev1.Pod) {
		c := p.Spec.Containers[0].DeepCopy()
		c.Name, c.SecurityContext = "debug", c.SecurityContext.DeepCopy()
		if c.SecurityContext == nil {
			c.SecurityContext = &corev1.SecurityContext{}
		}
		c.SecurityContext.Privileged = ptrTo(true)
		p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon(*c)}}
	}},
	{name: "hostNetwork", want: []string{podsec.CheckHostNamespaces}, mutate: func(p *corev1.Pod) { p.Spec.HostNetwork = true }},
	{name: "hostPID", want: []string{podsec.CheckHostNamespaces}, mutate: func(p *corev1.Pod) { p.Spec.HostPID = true }},
	{name: "hostIPC", want: []string{podsec.CheckHostNamespaces}, mutate: func(p *corev1.Pod) { p.Spec.HostIPC = true }},
	{name: "hostPath volume", want: []string{podsec.CheckVolumeTypes}, mutate: func(p *corev1.Pod) {
		p.Spec.Volumes[1].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run"}}
	}},
	{name: "nfs beside emptyDir", want: []string{podsec.CheckVolumeTypes}, mutate: func(p *corev1.Pod) {
		p.Spec.Volumes[1].NFS = &corev1.NFSVolumeSource{Server: "nfs.example", Path: "/x"}
	}},
	{name: "volume without a type", want: []string{podsec.CheckVolumeTypes}, mutate: func(p *corev1.Pod) {
		p.Spec.Volumes[1].VolumeSource = corev1.VolumeSource{}
	}},
	{name: "allowed volume types", mutate: func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes,
			corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
			corev1.Volume{Name: "tok", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "t"}}}}}},
			corev1.Volume{Name: "dw", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}})
	}},
	{name: "hostPort", want: []string{podsec.CheckHostPorts}, mutate: func(p *corev1.Pod) { p.Spec.Containers[2].Ports[0].HostPort = 2020 }},
	{name: "no drop ALL", want: []string{podsec.CheckCapabilities}, mutate: func(p *corev1.Pod) { caps0(p).Drop = []corev1.Capability{"NET_RAW"} }},
	{name: "no capabilities", want: []string{podsec.CheckCapabilities}, mutate: func(p *corev1.Pod) { sc0(p).Capabilities = nil }},
	{name: "adds SYS_ADMIN", want: []string{podsec.CheckCapabilities}, mutate: func(p *corev1.Pod) { caps0(p).Add = []corev1.Capability{"SYS_ADMIN"} }},
	{name: "allowPrivilegeEscalation unset", want: []string{podsec.CheckPrivilegeEscalation}, mutate: func(p *corev1.Pod) { sc0(p).AllowPrivilegeEscalation = nil }},
	{name: "allowPrivilegeEscalation true", want: []string{podsec.CheckPrivilegeEscalation}, mutate: func(p *corev1.Pod) { sc0(p).AllowPrivilegeEscalation = ptrTo(true) }},
	{name: "runAsNonRoot nowhere", want: []string{podsec.CheckRunAsNonRoot}, mutate: func(p *corev1.Pod) { psc(p).RunAsNonRoot = nil }},
	{name: "runAsNonRoot false on the pod", want: []string{podsec.CheckRunAsNonRoot}, mutate: func(p *corev1.Pod) { psc(p).RunAsNonRoot = ptrTo(false) }},
	{name: "runAsNonRoot false on a container", want: []string{podsec.CheckRunAsNonRoot}, mutate: func(p *corev1.Pod) { sc0(p).RunAsNonRoot = ptrTo(false) }},
	{name: "runAsNonRoot on every container only", mutate: func(p *corev1.Pod) {
		psc(p).RunAsNonRoot = nil
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].SecurityContext == nil {
				p.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{}
			}
			p.Spec.Containers[i].SecurityContext.RunAsNonRoot = ptrTo(true)
		}
	}},
	{name: "runAsNonRoot on one container only", want: []string{podsec.CheckRunAsNonRoot}, mutate: func(p *corev1.Pod) {
		psc(p).RunAsNonRoot = nil
		sc0(p).RunAsNonRoot = ptrTo(true)
	}},
	{name: "user namespace relaxes root checks", mutate: func(p *corev1.Pod) {
		p.Spec.HostUsers = ptrTo(false)
		psc(p).RunAsNonRoot = nil
		psc(p).RunAsUser = ptrTo(int64(0))
	}},
	{name: "runAsUser 0 on the pod", want: []string{podsec.CheckRunAsUser}, mutate: func(p *corev1.Pod) { psc(p).RunAsUser = ptrTo(int64(0)) }},
	{name: "runAsUser 0 on a container", want: []string{podsec.CheckRunAsUser}, mutate: func(p *corev1.Pod) { sc0(p).RunAsUser = ptrTo(int64(0)) }},
	{name: "seccomp nowhere", want: []string{podsec.CheckSeccomp}, mutate: func(p *corev1.Pod) { psc(p).SeccompProfile = nil }},
	{name: "seccomp Unconfined", want: []string{podsec.CheckSeccomp}, mutate: func(p *corev1.Pod) {
		psc(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
	}},
	{name: "seccomp Unconfined on a container", want: []string{podsec.CheckSeccomp}, mutate: func(p *corev1.Pod) {
		sc0(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
	}},
	{name: "seccomp on every container only", mutate: func(p *corev1.Pod) {
		psc(p).SeccompProfile = nil
		for i := range p.Spec.Containers {
			if p.Spec.Containers[i].SecurityContext == nil {
				p.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{}
			}
			p.Spec.Containers[i].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptrTo("p.json")}
		}
	}},
	{name: "seccomp on one container only", want: []string{podsec.CheckSeccomp}, mutate: func(p *corev1.Pod) {
		psc(p).SeccompProfile = nil
		sc0(p).SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	}},
	{name: "apparmor Unconfined", want: []string{podsec.CheckAppArmor}, mutate: func(p *corev1.Pod) {
		psc(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	}},
	{name: "apparmor Unconfined on a container", want: []string{podsec.CheckAppArmor}, mutate: func(p *corev1.Pod) {
		sc0(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	}},
	{name: "apparmor Localhost", mutate: func(p *corev1.Pod) {
		sc0(p).AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: ptrTo("k8s-default")}
	}},
	{name: "apparmor annotation unconfined", want: []string{podsec.CheckAppArmor}, mutate: func(p *corev1.Pod) { p.Annotations[apparmorAnnotation] = "unconfined" }},
	{name: "apparmor annotation runtime/default", mutate: func(p *corev1.Pod) { p.Annotations[apparmorAnnotation] = "runtime/default" }},
	{name: "selinux type spc_t", want: []string{podsec.CheckSELinux}, mutate: func(p *corev1.Pod) {
		psc(p).SELinuxOptions = &corev1.SELinuxOptions{Type: "spc_t"}
	}},
	{name: "selinux container_init_t", mutate: func(p *corev1.Pod) {
		sc0(p).SELinuxOptions = &corev1.SELinuxOptions{Type: "container_init_t", Level: "s0:c1"}
	}},
	{name: "selinux user", want: []string{podsec.CheckSELinux}, mutate: func(p *corev1.Pod) { sc0(p).SELinuxOptions = &corev1.SELinuxOptions{User: "system_u"} }},
	{name: "selinux role", want: []string{podsec.CheckSELinux}, mutate: func(p *corev1.Pod) { sc0(p).SELinuxOptions = &corev1.SELinuxOptions{Role: "system_r"} }},
	{name: "procMount Unmasked", want: []string{podsec.CheckProcMount}, mutate: func(p *corev1.Pod) { sc0(p).ProcMount = ptrTo(corev1.UnmaskedProcMount) }},
	{name: "procMount Default", mutate: func(p *corev1.Pod) { sc0(p).ProcMount = ptrTo(corev1.DefaultProcMount) }},
	{name: "unsafe sysctl", want: []string{podsec.CheckSysctls}, mutate: func(p *corev1.Pod) {
		psc(p).Sysctls = []corev1.Sysctl{{Name: "net.ipv4.tcp_syncookies", Value: "1"}, {Name: "kernel.msgmax", Value: "65536"}}
	}},
	{name: "safe sysctl", mutate: func(p *corev1.Pod) {
		psc(p).Sysctls = []corev1.Sysctl{{Name: "net.ipv4.ip_local_port_range", Value: "1024 65535"}}
	}},
	{name: "probe with host", want: []string{podsec.CheckHostProbes}, mutate: func(p *corev1.Pod) { p.Spec.Containers[0].LivenessProbe.HTTPGet.Host = "169.254.169.254" }},
	{name: "tcp probe with host", want: []string{podsec.CheckHostProbes}, mutate: func(p *corev1.Pod) { p.Spec.Containers[1].ReadinessProbe.TCPSocket.Host = "10.0.0.1" }},
	{name: "lifecycle hook with host", want: []string{podsec.CheckHostProbes}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[2].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Host: "metadata", Port: intstr.FromInt32(80)}}}
	}},
	{name: "windows HostProcess", want: []string{podsec.CheckWindowsHostProcess}, mutate: func(p *corev1.Pod) {
		p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		psc(p).WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptrTo(true)}
	}},
	{name: "windows HostProcess container", want: []string{podsec.CheckWindowsHostProcess}, mutate: func(p *corev1.Pod) {
		sc0(p).WindowsOptions = &corev1.WindowsSecurityContextOptions{HostProcess: ptrTo(true)}
	}},
	{name: "windows pod skips linux-only checks", mutate: func(p *corev1.Pod) {
		p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
		psc(p).SeccompProfile = nil
		sc0(p).Capabilities, sc0(p).AllowPrivilegeEscalation = nil, nil
	}},
	{name: "image from Docker Hub by tag", want: []string{podsec.CheckRegistry, podsec.CheckDigest}, mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "python:3.12" }},
	{name: "image from a look-alike host", want: []string{podsec.CheckRegistry}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "registry.internal.example.evil.com/research/trainer@" + admissionDigest
	}},
	{name: "image from another port", want: []string{podsec.CheckRegistry}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "registry.internal.example:5000/research/trainer@" + admissionDigest
	}},
	{name: "image through index.docker.io", want: []string{podsec.CheckRegistry}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "index.docker.io/registry.internal.example/trainer@" + admissionDigest
	}},
	{name: "registry host in capitals", mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "REGISTRY.Internal.Example/research/trainer@" + admissionDigest
	}},
	{name: "repository in capitals", want: []string{podsec.CheckRegistry, podsec.CheckDigest}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "registry.internal.example/research/Trainer@" + admissionDigest
	}},
	{name: "image by tag", want: []string{podsec.CheckDigest}, mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "registry.internal.example/research/trainer:1.4.2" }},
	{name: "short digest", want: []string{podsec.CheckRegistry, podsec.CheckDigest}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "registry.internal.example/research/trainer@sha256:0123"
	}},
	{name: "sha512 digest", want: []string{podsec.CheckDigest}, mutate: func(p *corev1.Pod) {
		p.Spec.Containers[0].Image = "registry.internal.example/research/trainer@sha512:" + strings.Repeat("0123456789abcdef", 8)
	}},
	{name: "empty image", want: []string{podsec.CheckRegistry, podsec.CheckDigest}, mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }},
	{name: "bad image volume", want: []string{podsec.CheckRegistry}, mutate: func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "model", VolumeSource: corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "docker.io/library/model@" + admissionDigest}}})
	}},
	{name: "bad init container image", want: []string{podsec.CheckRegistry, podsec.CheckDigest}, mutate: func(p *corev1.Pod) {
		c := p.Spec.Containers[0].DeepCopy()
		c.Name, c.Image = "fetch", "curlimages/curl"
		c.LivenessProbe, c.ReadinessProbe, c.Ports = nil, nil, nil
		p.Spec.InitContainers = []corev1.Container{*c}
	}},
	{name: "automount unset", want: []string{podsec.CheckAutomount}, mutate: func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = nil }},
	{name: "automount true", mutate: func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = ptrTo(true) }},
	{name: "high-risk without runtime class", want: []string{podsec.CheckRuntimeClass}, mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = nil }},
	{name: "high-risk under runc", want: []string{podsec.CheckRuntimeClass}, mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptrTo("runc") }},
	{name: "sandbox without runtime class", ns: nsSandbox, mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = nil }},
	{name: "sandbox under runc", ns: nsSandbox, mutate: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptrTo("runc") }},
	{name: "high-risk label in the sandbox", ns: nsSandbox, want: []string{podsec.CheckRuntimeClass}, mutate: func(p *corev1.Pod) {
		p.Spec.RuntimeClassName = nil
		p.Labels["rampart.dev/risk"] = "high"
	}},
	{name: "everything wrong", want: []string{podsec.CheckPrivileged, podsec.CheckHostNamespaces, podsec.CheckCapabilities, podsec.CheckPrivilegeEscalation,
		podsec.CheckRunAsNonRoot, podsec.CheckSeccomp, podsec.CheckRegistry, podsec.CheckDigest, podsec.CheckAutomount, podsec.CheckRuntimeClass},
		mutate: refusedPod},
}

// refusedPod breaks many checks at once: what a careless manifest looks like.
func refusedPod(p *corev1.Pod) {
	p.Spec.HostNetwork = true
	p.Spec.SecurityContext = nil
	p.Spec.AutomountServiceAccountToken = nil
	p.Spec.RuntimeClassName = nil
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{Privileged: ptrTo(true)}
		p.Spec.Containers[i].Image = "nginx:latest"
	}
}

// corpusReview is the review of corpus case c's pod wrapped in kind.
func corpusReview(tb testing.TB, c corpusCase, kind string) []byte {
	p := trainingPod()
	p.Namespace = c.namespace()
	c.mutate(p)
	obj := wrap(kind, p)
	return reviewOf(tb, kind, obj, c.namespace(), obj.(metav1.Object).GetName())
}

// ---------------------------------------------------------------------------------------------
// The two engines

// admissionEnv is Rampart's webhook as `rampart server` builds it (decision index over a real
// SQLite store, demo policy), and OPA prepared over the Rego peer.
type admissionEnv struct {
	dir     string
	store   *sqlstore.DB
	policy  *policy.Policy
	index   *authz.Index
	stop    context.CancelFunc
	webhook *admission.Webhook
	handler http.Handler
	cfg     podsec.Config
	opa     rego.PreparedEvalQuery
	// bodies are the measured AdmissionReviews, by case name.
	bodies map[string][]byte
	// captured says, by case name, whether the body is one the apiserver sent (see
	// admission_apiserver_test.go) rather than one built by reviewOf.
	captured map[string]bool
}

var (
	admissionOnce sync.Once
	admissionE    *admissionEnv
	admissionErr  error
)

func admissionEnvFor(tb testing.TB) *admissionEnv {
	tb.Helper()
	admissionOnce.Do(func() { admissionE, admissionErr = newAdmissionEnv(tb) })
	if admissionErr != nil {
		tb.Fatal(admissionErr)
	}
	return admissionE
}

// fixedCluster is the cluster as the webhook reads it: every namespace of the corpus has the
// default-deny egress policy `rampart kube install` applies.
type fixedCluster map[string][]*networkingv1.NetworkPolicy

func (c fixedCluster) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	return nil, fmt.Errorf("pod %s/%s not found", ns, name)
}

func (c fixedCluster) NetworkPolicies(ns string) ([]*networkingv1.NetworkPolicy, error) {
	return c[ns], nil
}

// The corpus has no Services, volumes or snapshots: pod reviews never read them.

func (c fixedCluster) Service(_ context.Context, ns, name string) (*corev1.Service, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("services"), name)
}

func (c fixedCluster) EndpointPods(context.Context, string, string) ([]string, error) {
	return nil, nil
}

func (c fixedCluster) Pods(context.Context, string, labels.Selector) ([]corev1.Pod, error) {
	return nil, nil
}

func (c fixedCluster) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumes"), name)
}

func (c fixedCluster) PersistentVolumeClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return nil, apierrors.NewNotFound(corev1.Resource("persistentvolumeclaims"), name)
}

func (c fixedCluster) VolumeSnapshotSource(_ context.Context, ns, name string) (string, error) {
	return "", apierrors.NewNotFound(corev1.Resource("volumesnapshots"), name)
}

// ledgerRecorder appends to the store's ledger, as the server's webhook does.
func ledgerRecorder(st *sqlstore.DB) func(ctx context.Context, e audit.Event) error {
	return func(ctx context.Context, e audit.Event) error {
		return st.Update(ctx, func(tx access.Tx) error {
			_, err := tx.Append(ctx, e)
			return err
		})
	}
}

func newAdmissionEnv(tb testing.TB) (_ *admissionEnv, err error) {
	ctx := context.Background()
	env := &admissionEnv{bodies: map[string][]byte{}, captured: map[string]bool{}}
	defer func() {
		if err != nil {
			env.close()
		}
	}()
	if env.policy, err = policy.Load(os.DirFS("../internal/demo/policy")); err != nil {
		return nil, fmt.Errorf("demo policy: %w", err)
	}
	if env.dir, err = os.MkdirTemp("", "rampart-bench-admission-"); err != nil {
		return nil, err
	}
	if env.store, err = sqlite.Open(ctx, filepath.Join(env.dir, "rampart.db")); err != nil {
		return nil, err
	}
	env.index = authz.New(env.store, env.policy, authz.Options{})
	if err := env.index.Load(ctx); err != nil {
		return nil, err
	}
	// The server keeps the index in sync every 500 ms; without it the index would fail closed
	// after its 5 s staleness bound.
	var rctx context.Context
	rctx, env.stop = context.WithCancel(ctx)
	go env.index.Run(rctx, 500*time.Millisecond)
	settings := env.policy.Kubernetes()
	cluster := fixedCluster{}
	for i, ns := range []string{nsHighRisk, nsSandbox} {
		// As the webhook's watch hands it out: stored, so with a uid and a resourceVersion.
		np := netpol.Render(ns, settings.Egress)
		np.UID, np.ResourceVersion = types.UID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)), strconv.Itoa(1000+i)
		cluster[ns] = []*networkingv1.NetworkPolicy{np}
	}
	env.webhook = &admission.Webhook{Policy: env.index.Policy, Decide: env.index, Cluster: cluster}
	env.handler = env.webhook.Handler()
	a := settings.Admission
	env.cfg = podsec.Config{AllowedRegistries: a.AllowedRegistries, RequireDigest: a.RequireDigest, RuntimeClass: a.RuntimeClass,
		HighRiskNamespaces: a.HighRiskNamespaces, HighRiskLabels: a.HighRiskLabels}
	if env.opa, err = prepareAdmissionOPA(ctx, env.cfg); err != nil {
		return nil, err
	}

	// The measured reviews: the compliant pod and Deployment as the apiserver sent them (when
	// captured; see admission_apiserver_test.go), else as reviewOf builds them; and a refused pod.
	for _, c := range []struct{ name, kind, file string }{{"pod", "Pod", "review-pod.json"}, {"deployment", "Deployment", "review-deployment.json"}} {
		if b, err := os.ReadFile(filepath.Join("testdata", "admission", c.file)); err == nil {
			env.bodies[c.name], env.captured[c.name] = b, true
			continue
		}
		env.bodies[c.name] = corpusReview(tb, admissionCorpus[0], c.kind)
	}
	// The same pod as reviewOf writes it: without the apiserver's defaults and managedFields,
	// less than half the size (what kube/podsec's own benchmark measures).
	env.bodies["pod-bare"] = corpusReview(tb, admissionCorpus[0], "Pod")
	env.bodies["pod-refused"] = corpusReview(tb, admissionCorpus[len(admissionCorpus)-1], "Pod")
	return env, nil
}

// closeAdmissionEnv releases the admission benchmarks' store and its files, if they were made
// (for TestMain, after the benchmarks).
func closeAdmissionEnv() {
	if admissionE != nil {
		admissionE.close()
	}
}

func (env *admissionEnv) close() {
	if env.stop != nil {
		env.stop()
	}
	if env.store != nil {
		env.store.Close()
	}
	if env.dir != "" {
		os.RemoveAll(env.dir)
	}
}

// prepareAdmissionOPA compiles the Rego peer and prepares AdmissionQuery once, with the baseline
// settings as data in OPA's in-memory store (AST values, its faster mode).
func prepareAdmissionOPA(ctx context.Context, cfg podsec.Config) (rego.PreparedEvalQuery, error) {
	rc := cfg.RuntimeClass
	if rc == "" {
		rc = podsec.DefaultRuntimeClass
	}
	labels := map[string]any{}
	for k, v := range cfg.HighRiskLabels {
		labels[k] = v
	}
	data := map[string]any{"rampart": map[string]any{"config": map[string]any{
		"allowed_registries":   toAny(cfg.AllowedRegistries),
		"require_digest":       cfg.RequireDigest,
		"runtime_class":        rc,
		"high_risk_namespaces": toAny(cfg.HighRiskNamespaces),
		"high_risk_labels":     labels,
	}}}
	opts := []func(*rego.Rego){rego.Query(AdmissionQuery),
		rego.Store(inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))),
		rego.StoreReadAST(true)}
	files, err := fs.Glob(admissionRego, "testdata/admission/*.rego")
	if err != nil || len(files) == 0 {
		return rego.PreparedEvalQuery{}, fmt.Errorf("no Rego files embedded (%v)", err)
	}
	for _, f := range files {
		src, err := admissionRego.ReadFile(f)
		if err != nil {
			return rego.PreparedEvalQuery{}, err
		}
		opts = append(opts, rego.Module(f, string(src)))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return rego.PreparedEvalQuery{}, fmt.Errorf("prepare %s: %w", AdmissionQuery, err)
	}
	return pq, nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// opaDeny evaluates the Rego peer on an AdmissionReview body: OPA parses the JSON itself, as
// `opa run --server` does with a request's input (ast.ValueFromReader: encoding/json with
// UseNumber, then the AST conversion), and returns the deny messages.
func (env *admissionEnv) opaDeny(ctx context.Context, body []byte) ([]string, error) {
	input, err := ast.ValueFromReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("OPA cannot parse the review: %w", err)
	}
	rs, err := env.opa.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return nil, fmt.Errorf("%s gave %d results; want exactly one", AdmissionQuery, len(rs))
	}
	set, ok := rs[0].Expressions[0].Value.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %T, not a set", AdmissionQuery, rs[0].Expressions[0].Value)
	}
	out := make([]string, len(set))
	for i, m := range set {
		out[i], _ = m.(string)
	}
	return out, nil
}

// validate posts body to the webhook's /validate in process and returns the raw answer.
func (env *admissionEnv) validate(body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	env.handler.ServeHTTP(rec, req)
	return rec
}

var checkID = regexp.MustCompile(`(?m)^(?:- )?\[([a-z0-9.-]+)\]`)

// checkIDs returns the sorted, distinct check ids named at the start of lines (Rampart's
// refusal message) or of messages (the Rego peer's).
func checkIDs(texts ...string) []string {
	var out []string
	for _, t := range texts {
		for _, m := range checkID.FindAllStringSubmatch(t, -1) {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// rampartChecks reviews body through the webhook and returns whether it was admitted and the
// checks its refusal names.
func (env *admissionEnv) rampartChecks(tb testing.TB, body []byte) (bool, []string) {
	tb.Helper()
	rec := env.validate(body)
	if rec.Code != http.StatusOK {
		tb.Fatalf("webhook answered %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		tb.Fatalf("webhook answer %s: %v", rec.Body, err)
	}
	if out.Response.Allowed {
		return true, nil
	}
	return false, checkIDs(out.Response.Result.Message)
}

// ---------------------------------------------------------------------------------------------
// Agreement

// TestAdmissionAgreement: for every corpus case, as a Pod, a Deployment and a CronJob, Rampart's
// webhook refuses exactly when the Rego peer denies, for the same checks, and those are the
// checks the case was built to break; then the same for 1,500 pods with random combinations of
// the cases' changes.
func TestAdmissionAgreement(t *testing.T) {
	env := admissionEnvFor(t)
	ctx := context.Background()
	compare := func(name string, body []byte, want []string, knowWant bool) bool {
		allowed, got := env.rampartChecks(t, body)
		msgs, err := env.opaDeny(ctx, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		regoChecks := checkIDs(msgs...)
		ok := true
		if allowed != (len(msgs) == 0) || !slices.Equal(got, regoChecks) {
			t.Errorf("%s: Rampart admitted=%v checks %v; Rego denies %v", name, allowed, got, msgs)
			ok = false
		}
		if allowed && len(got) > 0 {
			t.Errorf("%s: admitted while naming checks %v", name, got)
		}
		if knowWant && !slices.Equal(got, want) {
			t.Errorf("%s: Rampart reports %v; the case breaks %v", name, got, want)
			ok = false
		}
		return ok && !allowed
	}
	refused, cases := 0, 0
	for _, c := range admissionCorpus {
		want := slices.Clone(c.want)
		slices.Sort(want)
		for _, k := range corpusKinds {
			cases++
			if compare(c.name+" as "+k.kind, corpusReview(t, c, k.kind), want, true) {
				refused++
			}
		}
	}
	// Random combinations of up to four changes, over the kinds and both namespaces.
	rng := rand.New(rand.NewPCG(4, 2026))
	const combos = 1500
	combRefused := 0
	for i := range combos {
		p := trainingPod()
		ns := nsHighRisk
		if rng.IntN(3) == 0 {
			ns = nsSandbox
		}
		p.Namespace = ns
		var names []string
		for range 1 + rng.IntN(4) {
			c := admissionCorpus[1+rng.IntN(len(admissionCorpus)-1)]
			c.mutate(p)
			names = append(names, c.name)
		}
		k := corpusKinds[rng.IntN(len(corpusKinds))]
		obj := wrap(k.kind, p)
		body := reviewOf(t, k.kind, obj, ns, obj.(metav1.Object).GetName())
		if compare(fmt.Sprintf("combination %d (%s; %s in %s)", i, strings.Join(names, " + "), k.kind, ns), body, nil, false) {
			combRefused++
		}
	}
	// And the reviews the benchmarks measure (as kube-apiserver sent them, when captured).
	for name, body := range env.bodies {
		if got := compare(name+" (measured review)", body, nil, false); got != (name == "pod-refused") {
			t.Errorf("%s: refused=%v", name, got)
		}
	}
	t.Logf("%d corpus reviews (%d refused), %d random combinations (%d refused) and the %d measured reviews: Rampart refuses exactly when the Rego denies, for the same checks",
		cases, refused, combos, combRefused, len(env.bodies))
	if refused == 0 || refused == cases || combRefused == 0 || combRefused == combos {
		t.Fatalf("the corpus should hold both admitted and refused reviews")
	}
}

// ---------------------------------------------------------------------------------------------
// Benchmarks

// admissionLines is the summary of the admission benchmarks; guarded by resultsMu.
var admissionLines []string

func admissionLine(format string, args ...any) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	admissionLines = append(admissionLines, fmt.Sprintf(format, args...))
}

// printAdmission prints and clears the summary, with how busy the machine was since mach0, and
// how much of it this process (since own0) and etcd and kube-apiserver (kube ticks) took.
func printAdmission(title string, mach0 cpuTicks, own0, kube int64) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	fmt.Printf("\n=== %s ===\n", title)
	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), loadAverage())
	for _, l := range admissionLines {
		fmt.Println(l)
	}
	admissionLines = nil
	if mach1, own1 := machineCPU(), ownCPU(); mach1.total > mach0.total {
		total, busy, own := float64(mach1.total-mach0.total), mach1.busy-mach0.busy, own1-own0
		kubePart := ""
		if kube > 0 {
			kubePart = fmt.Sprintf(", etcd and kube-apiserver %.0f%%", 100*float64(kube)/total)
		}
		fmt.Printf("machine CPU during this benchmark: %.0f%% busy, of which this process %.0f%%%s and other processes %.0f%%; %.1f%% stolen by the hypervisor\n",
			100*float64(busy)/total, 100*float64(own)/total, kubePart, 100*float64(max(0, busy-own-kube))/total, 100*float64(mach1.steal-mach0.steal)/total)
	}
	fmt.Println()
}

// admissionTiming is what timeReviews measured for one case.
type admissionTiming struct {
	nsPerOp float64
	// lat: individually timed reviews with the garbage collector as it is (GOGC=100);
	// noGC: the same with the collector kept from running while they are timed (it runs
	// between batches of 500), to show how much of the tail is collection; gogc400: with
	// GOGC=400, a setting a webhook server could ship with.
	lat, noGC, gogc400 Latencies
	// gcEvery is how many reviews ran per collection cycle while lat was sampled.
	gcEvery float64
}

var admissionResults = map[string]admissionTiming{} // guarded by resultsMu

// timeReviews runs review in the benchmark loop, then (once per key) times up to
// admissionSamples calls one by one, with the collector as it is, without it, and (withGOGC400)
// at GOGC=400.
func timeReviews(b *testing.B, key string, withGOGC400 bool, review func()) admissionTiming {
	b.ReportAllocs()
	for b.Loop() {
		review()
	}
	t := admissionTiming{nsPerOp: float64(b.Elapsed().Nanoseconds()) / float64(b.N)}
	resultsMu.Lock()
	prev, sampled := admissionResults[key]
	resultsMu.Unlock()
	if sampled {
		t.lat, t.noGC, t.gogc400, t.gcEvery = prev.lat, prev.noGC, prev.gogc400, prev.gcEvery
	} else {
		var c0, c1 [1]metrics.Sample
		c0[0].Name, c1[0].Name = "/gc/cycles/total:gc-cycles", "/gc/cycles/total:gc-cycles"
		n := int(min(admissionSamples, max(5000, 2e9/t.nsPerOp)))
		metrics.Read(c0[:])
		t.lat = sampleReviews(n, review)
		metrics.Read(c1[:])
		if cycles := c1[0].Value.Uint64() - c0[0].Value.Uint64(); cycles > 0 {
			t.gcEvery = float64(n) / float64(cycles)
		}
		t.noGC = sampleReviewsNoGC(n, review)
		if withGOGC400 {
			old := debug.SetGCPercent(400)
			t.gogc400 = sampleReviews(n, review)
			debug.SetGCPercent(old)
		}
	}
	b.ReportMetric(float64(t.lat.P50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(t.lat.P99.Nanoseconds()), "p99-ns")
	resultsMu.Lock()
	admissionResults[key] = t
	resultsMu.Unlock()
	return t
}

// sampleReviews times n calls of review one by one.
func sampleReviews(n int, review func()) Latencies {
	d := make([]time.Duration, n)
	for i := range d {
		t0 := time.Now()
		review()
		d[i] = time.Since(t0)
	}
	return Summarize(d)
}

// sampleReviewsNoGC times n calls with the collector off, collecting between batches of 500
// (outside the timing) so that memory stays bounded.
func sampleReviewsNoGC(n int, review func()) Latencies {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	d := make([]time.Duration, 0, n)
	for len(d) < n {
		runtime.GC()
		for range min(500, n-len(d)) {
			t0 := time.Now()
			review()
			d = append(d, time.Since(t0))
		}
	}
	runtime.GC()
	return Summarize(d)
}

// admissionResultsWith returns the recorded timings whose key starts with prefix.
func admissionResultsWith(prefix string) map[string]admissionTiming {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	out := map[string]admissionTiming{}
	for k, v := range admissionResults {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// String formats ns/op, p50 and p99, and the p99s without collection and at GOGC=400 when measured.
func (t admissionTiming) String() string {
	s := fmt.Sprintf("%6.1f µs/op  p50 %-9s p99 %-9s", t.nsPerOp/1e3, t.lat.P50.Round(100*time.Nanosecond), t.lat.P99.Round(100*time.Nanosecond))
	s += fmt.Sprintf(" (p99 without GC %s", t.noGC.P99.Round(100*time.Nanosecond))
	if t.gogc400.N > 0 {
		s += fmt.Sprintf(", at GOGC=400 %s", t.gogc400.P99.Round(100*time.Nanosecond))
	}
	if t.gcEvery > 0 {
		s += fmt.Sprintf("; a GC cycle every %.0f reviews", t.gcEvery)
	}
	return s + ")"
}

// BenchmarkAdmission measures one review in process, on the same AdmissionReview bytes:
//
//   - rampart-http: the webhook's POST /validate (kube/admission Webhook.Handler) through
//     httptest: read the body, decode the review and the object strictly, Pod Security
//     restricted and the research baseline, a decision-engine query per check for exceptions,
//     protected volumes, the namespace's NetworkPolicy, encode the answer;
//   - rampart-func: the pure path: podsec.DecodeReview, Check and Mutate;
//   - opa: ast.ValueFromReader (OPA's own JSON parse) and the prepared deny query.
func BenchmarkAdmission(b *testing.B) {
	env := admissionEnvFor(b)
	ctx := context.Background()
	mach0, own0 := machineCPU(), ownCPU()
	cases := []struct {
		name    string
		allowed bool
	}{{"pod", true}, {"deployment", true}, {"pod-bare", true}, {"pod-refused", false}}
	for _, c := range cases {
		body := env.bodies[c.name]
		want := []byte(fmt.Sprintf(`"allowed":%v`, c.allowed))
		b.Run(c.name+"/rampart-http", func(b *testing.B) {
			timeReviews(b, "admission/"+c.name+"/rampart-http", c.name == "pod", func() {
				rec := env.validate(body)
				if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), want) {
					b.Fatalf("webhook answered %d %s; want %s", rec.Code, rec.Body, want)
				}
			})
		})
		b.Run(c.name+"/rampart-func", func(b *testing.B) {
			timeReviews(b, "admission/"+c.name+"/rampart-func", false, func() {
				r, w, err := podsec.DecodeReview(body)
				if err != nil {
					b.Fatal(err)
				}
				vs := podsec.Check(w, r.Request.Namespace, env.cfg, nil)
				_ = podsec.Mutate(w, r.Request.Namespace, env.cfg)
				if (len(vs) == 0) != c.allowed {
					b.Fatalf("podsec found %d violations", len(vs))
				}
			})
		})
		b.Run(c.name+"/opa", func(b *testing.B) {
			timeReviews(b, "admission/"+c.name+"/opa", false, func() {
				msgs, err := env.opaDeny(ctx, body)
				if err != nil || (len(msgs) == 0) != c.allowed {
					b.Fatalf("OPA denies %v (err %v)", msgs, err)
				}
			})
		})
	}
	// Reference, not a comparison: OPA's evaluation alone, on input parsed once beforehand.
	b.Run("pod/ref-opa-eval-only", func(b *testing.B) {
		input, err := ast.ValueFromReader(bytes.NewReader(env.bodies["pod"]))
		if err != nil {
			b.Fatal(err)
		}
		timeReviews(b, "admission/pod/ref-opa-eval-only", false, func() {
			rs, err := env.opa.Eval(ctx, rego.EvalParsedInput(input))
			if err != nil || len(rs) != 1 {
				b.Fatalf("OPA: %v", err)
			}
		})
	})
	// A refusal is also a ledger entry: the same refused pod with the webhook recording to the
	// SQLite ledger, as the server wires it (a write transaction per refusal).
	b.Run("pod-refused/rampart-http+ledger", func(b *testing.B) {
		w := env.webhook
		hook := &admission.Webhook{Policy: w.Policy, Decide: w.Decide, Cluster: w.Cluster, Record: ledgerRecorder(env.store)}
		h := hook.Handler()
		body := env.bodies["pod-refused"]
		timeReviews(b, "admission/pod-refused/rampart-http+ledger", false, func() {
			req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || !bytes.Contains(rec.Body.Bytes(), []byte(`"allowed":false`)) {
				b.Fatalf("webhook answered %d %s", rec.Code, rec.Body)
			}
		})
	})
	summarizeAdmission(env)
	printAdmission("Admission: one review in process (Rampart vs OPA)", mach0, own0, 0)
}

// summarizeAdmission writes the summary lines of BenchmarkAdmission from the recorded results.
func summarizeAdmission(env *admissionEnv) {
	res := admissionResultsWith("admission/")
	for _, name := range []string{"pod", "deployment", "pod-bare", "pod-refused"} {
		h, f, o := res["admission/"+name+"/rampart-http"], res["admission/"+name+"/rampart-func"], res["admission/"+name+"/opa"]
		if h.nsPerOp == 0 || o.nsPerOp == 0 {
			continue
		}
		src := "built by reviewOf: no defaults, no managedFields"
		if env.captured[name] {
			src = "as kube-apiserver sent it"
		}
		admissionLine("%s (%d-byte AdmissionReview, %s):", name, len(env.bodies[name]), src)
		admissionLine("  rampart-http  %s", h)
		if name != "pod-refused" {
			admissionLine("                target p99 < %s: %s", admissionP99Target, verdict(h.lat.P99 < admissionP99Target))
		}
		if f.nsPerOp > 0 {
			admissionLine("  rampart-func  %s", f)
		}
		admissionLine("  opa           %s", o)
		ratio := o.nsPerOp / h.nsPerOp
		admissionLine("  OPA ÷ Rampart (http): %.1fx per review (mean), %.1fx at p50, %.1fx at p99 (target >= %.0fx: %s)", ratio,
			float64(o.lat.P50)/float64(h.lat.P50), float64(o.lat.P99)/float64(h.lat.P99), admissionRatioTarget, verdict(ratio >= admissionRatioTarget))
	}
	if l := res["admission/pod/ref-opa-eval-only"]; l.nsPerOp > 0 {
		admissionLine("reference: OPA's evaluation alone on pod (input parsed beforehand): %s", l)
	}
	if l := res["admission/pod-refused/rampart-http+ledger"]; l.nsPerOp > 0 {
		admissionLine("pod-refused with the refusal appended to the SQLite ledger (as the server does): %s", l)
	}
}
