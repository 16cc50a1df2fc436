package podsec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// workloadObjects wraps a pod template in each supported kind, with the
// path prefix its pod's fields must be reported under.
func workloadObjects(tmpl corev1.PodTemplateSpec) []struct {
	kind, metaPath, specPath string
	obj                      runtime.Object
} {
	om := metav1.ObjectMeta{Name: "w", Namespace: "research"}
	return []struct {
		kind, metaPath, specPath string
		obj                      runtime.Object
	}{
		{"Pod", "metadata", "spec", &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: func() metav1.ObjectMeta { m := tmpl.ObjectMeta; m.Name, m.Namespace = "w", "research"; return m }(), Spec: tmpl.Spec}},
		{"Deployment", "spec.template.metadata", "spec.template.spec", &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: om, Spec: appsv1.DeploymentSpec{Template: tmpl}}},
		{"StatefulSet", "spec.template.metadata", "spec.template.spec", &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Template: tmpl}}},
		{"DaemonSet", "spec.template.metadata", "spec.template.spec", &appsv1.DaemonSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
			ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Template: tmpl}}},
		{"ReplicaSet", "spec.template.metadata", "spec.template.spec", &appsv1.ReplicaSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ReplicaSet"},
			ObjectMeta: om, Spec: appsv1.ReplicaSetSpec{Template: tmpl}}},
		{"Job", "spec.template.metadata", "spec.template.spec", &batchv1.Job{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
			ObjectMeta: om, Spec: batchv1.JobSpec{Template: tmpl}}},
		{"CronJob", "spec.jobTemplate.spec.template.metadata", "spec.jobTemplate.spec.template.spec", &batchv1.CronJob{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
			ObjectMeta: om, Spec: batchv1.CronJobSpec{Schedule: "@daily", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}},
		{"ReplicationController", "spec.template.metadata", "spec.template.spec", &corev1.ReplicationController{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ReplicationController"},
			ObjectMeta: om, Spec: corev1.ReplicationControllerSpec{Template: &tmpl}}},
	}
}

func TestWorkloadPathsPerKind(t *testing.T) {
	p := compliantPod()
	p.Spec.Containers[1].SecurityContext.Privileged = ptr(true)
	p.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}
	p.Annotations = map[string]string{"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"rampart.dev/risk": "high"}, Annotations: p.Annotations}, Spec: p.Spec}
	for _, o := range workloadObjects(tmpl) {
		t.Run(o.kind, func(t *testing.T) {
			w, err := WorkloadOf(o.kind, mustJSON(o.obj))
			if err != nil {
				t.Fatal(err)
			}
			if w.Kind != o.kind || w.MetaPath != o.metaPath || w.SpecPath != o.specPath || w.Meta.Name != "w" || w.PodMeta.Labels["rampart.dev/risk"] != "high" {
				t.Fatalf("workload = %s %s %s %q %v", w.Kind, w.MetaPath, w.SpecPath, w.Meta.Name, w.PodMeta.Labels)
			}
			got := summary(Check(w, "research", testConfig, nil))
			want := []string{
				"restricted.privileged@" + o.specPath + ".containers[1].securityContext.privileged",
				"restricted.volume-types@" + o.specPath + ".volumes[0].hostPath",
				"restricted.apparmor@" + o.metaPath + ".annotations[container.apparmor.security.beta.kubernetes.io/app]",
				"baseline.runtime-class@" + o.specPath + ".runtimeClassName",
			}
			if !slices.Equal(got, want) {
				t.Fatalf("violations:\n got %q\nwant %q", got, want)
			}
			// The typed path agrees with the JSON path.
			w2, err := WorkloadFromObject(o.obj)
			if err != nil || w2.SpecPath != w.SpecPath || w2.MetaPath != w.MetaPath {
				t.Fatalf("WorkloadFromObject = %+v, %v", w2, err)
			}
		})
	}
}

func TestMutateSetsRuntimeClassPerKind(t *testing.T) {
	p := compliantPod()
	for _, rc := range []*string{nil, ptr("")} {
		p.Spec.RuntimeClassName = rc
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}}, Spec: p.Spec}
		for _, o := range workloadObjects(tmpl) {
			raw := mustJSON(o.obj)
			w, err := WorkloadOf(o.kind, raw)
			if err != nil {
				t.Fatal(err)
			}
			if ops := Mutate(w, "research", testConfig); ops != nil {
				t.Fatalf("%s: not high-risk, yet patched: %v", o.kind, ops)
			}
			ops := Mutate(w, "weights", testConfig)
			wantPath := "/" + strings.ReplaceAll(o.specPath, ".", "/") + "/runtimeClassName"
			if len(ops) != 1 || ops[0].Op != "add" || ops[0].Path != wantPath || ops[0].Value != "gvisor" {
				t.Fatalf("%s: patch = %+v, want add %s gvisor", o.kind, ops, wantPath)
			}
			// Apply the patch as the apiserver would, and check the result.
			patch, err := jsonpatch.DecodePatch(mustJSON(ops))
			if err != nil {
				t.Fatal(err)
			}
			patched, err := patch.Apply(raw)
			if err != nil {
				t.Fatalf("%s: patch does not apply: %v", o.kind, err)
			}
			w2, err := WorkloadOf(o.kind, patched)
			if err != nil {
				t.Fatal(err)
			}
			if vs := Check(w2, "weights", testConfig, nil); len(vs) != 0 {
				t.Fatalf("%s: patched object still has violations: %v", o.kind, summary(vs))
			}
			if Mutate(w2, "weights", testConfig) != nil {
				t.Fatalf("%s: mutation is not idempotent", o.kind)
			}
		}
	}
}

func TestMutateLeavesOtherRuntimeClassesAlone(t *testing.T) {
	p := compliantPod()
	p.Spec.RuntimeClassName = ptr("runc")
	w := podWorkload(t, p)
	if ops := Mutate(w, "weights", testConfig); ops != nil {
		t.Fatalf("Mutate overwrote an explicit runtime class: %v", ops)
	}
	if got := summary(Check(w, "weights", testConfig, nil)); !slices.Equal(got, []string{"baseline.runtime-class@spec.runtimeClassName"}) {
		t.Fatalf("Check = %v", got)
	}
	// Custom runtime class and label-based high risk.
	p = compliantPod()
	p.Labels["rampart.dev/risk"] = "high"
	cfg := testConfig
	cfg.RuntimeClass = "kata"
	ops := Mutate(podWorkload(t, p), "research", cfg)
	if len(ops) != 1 || ops[0].Value != "kata" || ops[0].Path != "/spec/runtimeClassName" {
		t.Fatalf("patch = %+v", ops)
	}
	if got := string(mustJSON(ops)); got != `[{"op":"add","path":"/spec/runtimeClassName","value":"kata"}]` {
		t.Fatalf("patch JSON = %s", got)
	}
}

func TestWorkloadOfRefusesMalformedInput(t *testing.T) {
	pod := string(mustJSON(compliantPod()))
	tests := []struct {
		name, kind, raw string
		is              error
		want            string // substring of the error
	}{
		{"unsupported kind", "Service", `{"apiVersion":"v1","kind":"Service"}`, ErrUnsupportedKind, `kind "Service" is not a workload`},
		{"empty", "Pod", ``, ErrMalformed, "empty input"},
		{"null", "Pod", `null`, ErrMalformed, `starts with "null"`},
		{"array", "Pod", `[]`, ErrMalformed, `starts with "[]"`},
		{"garbage", "Pod", "\x00\xff{", ErrMalformed, "want a JSON object"},
		{"truncated", "Pod", pod[:len(pod)/2], ErrMalformed, "invalid JSON"},
		{"trailing garbage", "Pod", pod + "x", ErrMalformed, "invalid JSON"},
		{"missing apiVersion", "Pod", `{"kind":"Pod","spec":{}}`, ErrMalformed, `apiVersion: object says apiVersion "", kind "Pod"`},
		{"wrong apiVersion", "Deployment", `{"apiVersion":"apps/v1beta1","kind":"Deployment"}`, ErrMalformed, `want apiVersion "apps/v1"`},
		{"kind mismatch", "Pod", `{"apiVersion":"apps/v1","kind":"Deployment"}`, ErrMalformed, `kind "Deployment"`},
		{"unknown field", "Pod", `{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","privileged":true}]}}`, ErrMalformed, `spec.containers[0].privileged: unknown field`},
		{"field in wrong case", "Pod", `{"apiVersion":"v1","kind":"Pod","Spec":{"hostNetwork":true}}`, ErrMalformed, `Spec: unknown field`},
		{"duplicate field", "Pod", `{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":true,"hostNetwork":false}}`, ErrMalformed, `spec.hostNetwork: duplicate field`},
		{"wrong type", "Pod", `{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":"yes"}}`, ErrMalformed, `spec.hostNetwork: a JSON string cannot be a bool`},
		{"nested null is fine but number is not", "Pod", `{"apiVersion":"v1","kind":"Pod","spec":{"securityContext":null,"containers":[null, 3]}}`, ErrMalformed, `spec.containers`},
		{"too large", "Pod", `{"x":"` + strings.Repeat("a", MaxReviewBytes) + `"}`, ErrTooLarge, "more than the"},
		{"deep nesting", "Pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"managedFields":[{"fieldsV1":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}]}}`, ErrMalformed, "exceeded max depth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WorkloadOf(tt.kind, []byte(tt.raw))
			if err == nil {
				t.Fatal("no error")
			}
			var de *DecodeError
			if !errors.Is(err, tt.is) || !errors.As(err, &de) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q (is %v: %v), want one containing %q", err, tt.is, errors.Is(err, tt.is), tt.want)
			}
		})
	}
}

func TestWorkloadOfNullsAndEmptyTemplates(t *testing.T) {
	// Nulls where objects go decode as absent: the result is an empty pod,
	// which the checks handle (the apiserver's validation refuses it later).
	for _, raw := range []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":null,"spec":null}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":null}}`,
		`{"apiVersion":"v1","kind":"ReplicationController","spec":{"template":null}}`,
		`{"apiVersion":"v1","kind":"ReplicationController","spec":{}}`,
		`{"apiVersion":"batch/v1","kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","securityContext":null}]}}}}}}`,
	} {
		var tm metav1.TypeMeta
		mustUnmarshal([]byte(raw), &tm)
		w, err := WorkloadOf(tm.Kind, []byte(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		vs := Check(w, "weights", testConfig, nil)
		if len(vs) == 0 {
			t.Fatalf("%s: an empty pod passes (automount and runtime class must fail)", raw)
		}
	}
}

func TestWorkloadFromObjectRefusesOthers(t *testing.T) {
	for _, obj := range []runtime.Object{nil, (*corev1.Pod)(nil), (*appsv1.Deployment)(nil), (*corev1.ReplicationController)(nil), &corev1.Service{}} {
		if _, err := WorkloadFromObject(obj); err == nil {
			t.Errorf("WorkloadFromObject(%T) accepted", obj)
		}
	}
}

// FuzzWorkloadOf feeds arbitrary objects to WorkloadOf; what it accepts,
// Check and Mutate must handle without panicking, with every field path
// under the workload's prefixes, every patch must apply, and the restricted
// verdict must match upstream's.
func FuzzWorkloadOf(f *testing.F) {
	p := compliantPod()
	p.Spec.Containers[0].SecurityContext.Privileged = ptr(true)
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"rampart.dev/risk": "high"}}, Spec: p.Spec}
	for i, o := range workloadObjects(tmpl) {
		f.Add(uint8(i), mustJSON(o.obj))
	}
	f.Add(uint8(0), []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"hostNetwork":true,"hostNetwork":false}}`))
	f.Add(uint8(0), []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"volumes":[{"name":"a","emptyDir":{},"hostPath":{"path":"/"}}]}}`))
	f.Add(uint8(0), []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"container.apparmor.security.beta.kubernetes.io/a":"unconfined"}},"spec":{"os":{"name":"windows"},"hostUsers":false}}`))
	f.Add(uint8(1), []byte(`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":null}}`))
	f.Add(uint8(6), []byte(`{"apiVersion":"batch/v1","kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"runtimeClassName":""}}}}}}`))
	f.Add(uint8(0), []byte(`null`))
	kinds := []string{"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "ReplicationController", "Service"}
	o := newOracle(f)
	f.Fuzz(func(t *testing.T, k uint8, raw []byte) {
		kind := kinds[int(k)%len(kinds)]
		w, err := WorkloadOf(kind, raw)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error is not a *DecodeError with a reason: %v", err)
			}
			return
		}
		if w.Kind != kind || w.Spec == nil || w.PodMeta == nil || w.Meta == nil {
			t.Fatalf("incomplete workload %+v", w)
		}
		for _, v := range Check(w, "weights", testConfig, nil) {
			if !strings.HasPrefix(v.Field, w.SpecPath+".") && !strings.HasPrefix(v.Field, w.MetaPath+".") {
				t.Fatalf("field %q is outside %s / %s", v.Field, w.SpecPath, w.MetaPath)
			}
			if v.Message == "" || v.Fix == "" {
				t.Fatalf("empty message or fix: %+v", v)
			}
		}
		if ops := Mutate(w, "weights", testConfig); ops != nil {
			patch, err := jsonpatch.DecodePatch(mustJSON(ops))
			if err != nil {
				t.Fatal(err)
			}
			// Apply it to the object as the apiserver serializes it (with
			// the pod spec's parents always present; see Mutate).
			patched, err := patch.Apply(mustJSON(w.Object))
			if err != nil {
				t.Fatalf("patch %s does not apply: %v", mustJSON(ops), err)
			}
			w2, err := WorkloadOf(kind, patched)
			if err != nil {
				t.Fatalf("patched object does not decode: %v", err)
			}
			if rc := w2.Spec.RuntimeClassName; rc == nil || *rc != "gvisor" {
				t.Fatalf("patched runtimeClassName = %v", rc)
			}
		}
		compareWithUpstream(t, o, w.PodMeta, w.Spec)
	})
}
