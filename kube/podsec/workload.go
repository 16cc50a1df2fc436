package podsec

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Errors that decoding failures wrap, for errors.Is. The concrete error is
// a *DecodeError that says what and where.
var (
	// ErrMalformed: the input is not what it claims to be (bad JSON, unknown
	// or duplicate fields, wrong apiVersion, missing required fields).
	ErrMalformed = errors.New("malformed input")
	// ErrTooLarge: the input is larger than MaxReviewBytes.
	ErrTooLarge = errors.New("input too large")
	// ErrUnsupportedKind: the object is not one of the workload kinds.
	ErrUnsupportedKind = errors.New("unsupported kind")
)

// DecodeError is the error of DecodeAdmissionReview, WorkloadOf and
// WorkloadFromObject.
type DecodeError struct {
	// What was being decoded: "AdmissionReview" or a kind such as "Pod".
	What string
	// Field is the path of the offending field, "" for the whole input.
	Field string
	// Reason says what is wrong and, where it helps, what to do.
	Reason string
	// Err is ErrMalformed, ErrTooLarge or ErrUnsupportedKind.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return e.What + ": " + e.Reason
	}
	return e.What + ": " + e.Field + ": " + e.Reason
}

func (e *DecodeError) Unwrap() error { return e.Err }

// MaxReviewBytes bounds DecodeAdmissionReview's and WorkloadOf's input.
// The apiserver refuses request bodies over 3 MiB and an AdmissionReview
// for an update carries the object twice, so a real review stays below it.
// An HTTP handler should cut the body at this size (http.MaxBytesReader)
// before reading it.
const MaxReviewBytes = 8 << 20

// Workload is the pod that a submitted object runs, with the places in the
// object where the pod's metadata and spec live.
type Workload struct {
	// Kind is "Pod", "Deployment", "StatefulSet", "DaemonSet",
	// "ReplicaSet", "Job", "CronJob" or "ReplicationController".
	Kind string
	// Meta is the submitted object's own metadata.
	Meta *metav1.ObjectMeta
	// PodMeta is the pod's metadata: Meta for a Pod, the pod template's
	// otherwise. Its labels and annotations are what the pods will carry.
	PodMeta *metav1.ObjectMeta
	// Spec is the pod's spec, inside Object.
	Spec *corev1.PodSpec
	// MetaPath and SpecPath are the field paths of PodMeta and Spec in the
	// object: "metadata" and "spec" for a Pod, "spec.template.metadata" and
	// "spec.template.spec" for a Deployment, StatefulSet, DaemonSet,
	// ReplicaSet, Job or ReplicationController, "spec.jobTemplate.spec.template.metadata" and
	// "spec.jobTemplate.spec.template.spec" for a CronJob.
	MetaPath, SpecPath string
	// Object is the decoded object (*corev1.Pod, *appsv1.Deployment, …).
	Object runtime.Object
}

// workloadKinds maps each supported kind to its only supported apiVersion.
var workloadKinds = map[string]string{
	"Pod":         "v1",
	"Deployment":  "apps/v1",
	"StatefulSet": "apps/v1",
	"DaemonSet":   "apps/v1",
	"ReplicaSet":  "apps/v1",
	"Job":         "batch/v1",
	"CronJob":     "batch/v1",
	// The kube-controller-manager makes pods from a ReplicationController's template under the
	// same identity as from the other controllers' when its controllers share its credentials.
	"ReplicationController": "v1",
}

// WorkloadOf decodes raw, the JSON of an object of the given kind (the
// admission request's kind.kind, e.g. "Deployment"), and finds its pod.
// Decoding is strict: the object's apiVersion and kind must be present and
// match (v1 Pod, ReplicationController; apps/v1 Deployment, StatefulSet, DaemonSet, ReplicaSet;
// batch/v1 Job, CronJob), and unknown fields, duplicate fields and field
// names in the wrong case are errors. Errors are *DecodeError wrapping
// ErrMalformed, ErrTooLarge or ErrUnsupportedKind.
func WorkloadOf(kind string, raw []byte) (Workload, error) {
	if _, ok := workloadKinds[kind]; !ok {
		return Workload{}, &DecodeError{What: "object", Reason: "kind " + strconv.Quote(kind) + " is not a workload this check knows (" + supportedKinds + ")", Err: ErrUnsupportedKind}
	}
	if len(raw) > MaxReviewBytes {
		return Workload{}, &DecodeError{What: kind, Reason: fmt.Sprintf("object is %d bytes, more than the %d allowed", len(raw), MaxReviewBytes), Err: ErrTooLarge}
	}
	if err := jsonObject(raw); err != nil {
		return Workload{}, &DecodeError{What: kind, Reason: err.Error(), Err: ErrMalformed}
	}
	obj, _ := newWorkloadObject(kind)
	if err := decodeStrict(kind, raw, obj); err != nil {
		return Workload{}, err
	}
	return checkedWorkload(kind, obj)
}

// checkedWorkload checks that a decoded object says the apiVersion and kind it was decoded
// as, and finds its pod.
func checkedWorkload(kind string, obj runtime.Object) (Workload, error) {
	apiVersion := workloadKinds[kind]
	tm := obj.GetObjectKind().GroupVersionKind()
	if got := tm.GroupVersion().String(); got != apiVersion || tm.Kind != kind {
		return Workload{}, &DecodeError{What: kind, Field: "apiVersion", Err: ErrMalformed,
			Reason: fmt.Sprintf("object says apiVersion %q, kind %q; want apiVersion %q, kind %q", got, tm.Kind, apiVersion, kind)}
	}
	return WorkloadFromObject(obj)
}

const supportedKinds = "Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController"

// WorkloadFromObject finds the pod in a typed object, for callers that hold
// one (a scanner listing objects). The Workload points into obj. obj is not
// validated beyond its type; nil objects are refused.
func WorkloadFromObject(obj runtime.Object) (Workload, error) {
	w := Workload{Object: obj, MetaPath: "spec.template.metadata", SpecPath: "spec.template.spec"}
	var tmpl *corev1.PodTemplateSpec
	switch o := obj.(type) {
	case *corev1.Pod:
		if o != nil {
			w.Kind, w.Meta, w.PodMeta, w.Spec = "Pod", &o.ObjectMeta, &o.ObjectMeta, &o.Spec
			w.MetaPath, w.SpecPath = "metadata", "spec"
			return w, nil
		}
	case *appsv1.Deployment:
		if o != nil {
			w.Kind, w.Meta, tmpl = "Deployment", &o.ObjectMeta, &o.Spec.Template
		}
	case *appsv1.StatefulSet:
		if o != nil {
			w.Kind, w.Meta, tmpl = "StatefulSet", &o.ObjectMeta, &o.Spec.Template
		}
	case *appsv1.DaemonSet:
		if o != nil {
			w.Kind, w.Meta, tmpl = "DaemonSet", &o.ObjectMeta, &o.Spec.Template
		}
	case *appsv1.ReplicaSet:
		if o != nil {
			w.Kind, w.Meta, tmpl = "ReplicaSet", &o.ObjectMeta, &o.Spec.Template
		}
	case *batchv1.Job:
		if o != nil {
			w.Kind, w.Meta, tmpl = "Job", &o.ObjectMeta, &o.Spec.Template
		}
	case *batchv1.CronJob:
		if o != nil {
			w.Kind, w.Meta, tmpl = "CronJob", &o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template
			w.MetaPath, w.SpecPath = "spec.jobTemplate.spec.template.metadata", "spec.jobTemplate.spec.template.spec"
		}
	case *corev1.ReplicationController:
		if o != nil {
			if o.Spec.Template == nil {
				// Its template is a pointer where the others' are values: absent is an empty
				// pod, as for them (the checks refuse it, the apiserver's validation too).
				o.Spec.Template = &corev1.PodTemplateSpec{}
			}
			w.Kind, w.Meta, tmpl = "ReplicationController", &o.ObjectMeta, o.Spec.Template
		}
	default:
		return Workload{}, &DecodeError{What: "object", Reason: fmt.Sprintf("type %T is not a workload this check knows (%s)", obj, supportedKinds), Err: ErrUnsupportedKind}
	}
	if tmpl == nil {
		return Workload{}, &DecodeError{What: "object", Reason: fmt.Sprintf("nil %T", obj), Err: ErrMalformed}
	}
	w.PodMeta, w.Spec = &tmpl.ObjectMeta, &tmpl.Spec
	return w, nil
}

// jsonObject refuses input that is not a JSON object before decoding, so
// "null", arrays and scalars get a clear error.
func jsonObject(raw []byte) error {
	s := bytes.TrimLeft(raw, " \t\r\n") // no copy: bodies are megabytes at most, and read once
	switch {
	case len(s) == 0:
		return errors.New("empty input; want a JSON object")
	case s[0] != '{':
		n := min(len(s), 16)
		return fmt.Errorf("input starts with %q; want a JSON object", s[:n])
	}
	return nil
}
