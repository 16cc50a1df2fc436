package podsec

import (
	admissionv1 "k8s.io/api/admission/v1"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// realisticPod is a compliant 3-container training pod as a Deployment's
// ReplicaSet would create it: trainer, metrics sidecar, log shipper, with
// probes, resources, mounts and the labels and annotations such pods carry.
func realisticPod() *corev1.Pod {
	p := compliantPod()
	p.Labels = map[string]string{"app.kubernetes.io/name": "trainer", "app.kubernetes.io/part-of": "frontier-7", "pod-template-hash": "5d4f8c7b9", "team": "pretraining"}
	p.Annotations = map[string]string{"kubectl.kubernetes.io/restartedAt": "2026-11-26T04:00:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "9090"}
	p.Spec.RuntimeClassName = ptr("gvisor")
	p.Spec.ServiceAccountName = "trainer"
	p.Spec.InitContainers = nil
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
	}
	mk := func(name string, port int32) corev1.Container {
		c := restrictedContainer(name)
		c.Image = "registry.internal.example/research/" + name + ":1.4.2@" + testDigest
		c.Args = []string{"--config=/etc/" + name + "/config.yaml"}
		c.Env = []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}, {Name: "LOG_LEVEL", Value: "info"}}
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: port}}
		c.Resources = res
		c.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data", ReadOnly: true}, {Name: "cache", MountPath: "/cache"}}
		c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(port)}}, PeriodSeconds: 10}
		c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(port)}}}
		c.SecurityContext.RunAsUser = ptr(int64(65532))
		c.SecurityContext.ReadOnlyRootFilesystem = ptr(true)
		return c
	}
	p.Spec.Containers = []corev1.Container{mk("trainer", 8080), mk("metrics", 9090), mk("logship", 2020)}
	p.Spec.Containers[1].SecurityContext.Capabilities.Add = []corev1.Capability{"NET_BIND_SERVICE"}
	return p
}

var benchConfig = Config{
	AllowedRegistries:  []string{"mirror.internal.example/", "registry.internal.example/research/"},
	RequireDigest:      true,
	HighRiskNamespaces: []string{"weights", "frontier"},
	HighRiskLabels:     map[string]string{"rampart.dev/risk": "high", "app.kubernetes.io/part-of": "frontier-7"},
}

var sink int

// BenchmarkCheckPod times Check on a compliant 3-container pod (the common
// case: nothing to report), beside the upstream restricted evaluator on the
// same pod (the restricted checks only, so upstream does less work), and
// Check on a pod with many violations (messages are built only then).
func BenchmarkCheckPod(b *testing.B) {
	p := realisticPod()
	w := podWorkload(b, p)
	if vs := Check(w, "weights", benchConfig, nil); len(vs) != 0 {
		b.Fatalf("benchmark pod is not compliant: %v", summary(vs))
	}
	b.Run("rampart", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sink += len(Check(w, "weights", benchConfig, nil))
		}
	})
	b.Run("upstream-psa-restricted", func(b *testing.B) {
		ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
		if err != nil {
			b.Fatal(err)
		}
		lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
		b.ReportAllocs()
		for b.Loop() {
			sink += len(ev.EvaluatePod(lv, &p.ObjectMeta, &p.Spec))
		}
	})
	b.Run("rampart-violating", func(b *testing.B) {
		bad := realisticPod()
		bad.Spec.HostNetwork = true
		bad.Spec.SecurityContext = nil
		bad.Spec.AutomountServiceAccountToken = nil
		bad.Spec.RuntimeClassName = nil
		for i := range bad.Spec.Containers {
			bad.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{Privileged: ptr(true)}
			bad.Spec.Containers[i].Image = "nginx:latest"
		}
		bw := podWorkload(b, bad)
		n := len(Check(bw, "weights", benchConfig, nil))
		b.ReportMetric(float64(n), "violations")
		b.ReportAllocs()
		for b.Loop() {
			sink += len(Check(bw, "weights", benchConfig, nil))
		}
	})
}

// BenchmarkReview times what the webhook does per request: decode the
// AdmissionReview and its object, check it, compute the patch; on a
// realistic pod, and on the review kube-apiserver sent for the benchmark's
// compliant pod (testdata/review-pod.json: 10 KB, half of it managedFields).
func BenchmarkReview(b *testing.B) {
	captured, _ := capturedReviews(b)
	for name, body := range map[string][]byte{"realistic": reviewJSON(b, realisticPod(), "Pod"), "captured": captured} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r, w, err := DecodeReview(body)
				if err != nil {
					b.Fatal(err)
				}
				sink += len(Check(w, r.Request.Namespace, benchConfig, nil)) + len(Mutate(w, r.Request.Namespace, benchConfig))
			}
		})
	}
}

// BenchmarkDecodeReview compares DecodeReview with the reference decoder
// (sigs.k8s.io/json, review then object) on the captured review.
func BenchmarkDecodeReview(b *testing.B) {
	body, _ := capturedReviews(b)
	for _, d := range []struct {
		name   string
		decode func([]byte) (*admissionv1.AdmissionReview, Workload, error)
	}{{"DecodeReview", DecodeReview}, {"reference", referenceDecode}} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, w, err := d.decode(body); err != nil || w.Spec == nil {
					b.Fatal(err)
				}
			}
		})
	}
}
