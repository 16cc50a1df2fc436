package podsec

import "strings"

// PatchOp is one JSON Patch (RFC 6902) operation; a []PatchOp marshals to
// the patch an AdmissionResponse carries (patchType: JSONPatch).
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Mutate returns the patch the mutating webhook applies to w: on a high-risk
// pod (see Config.HighRisk) without spec.runtimeClassName, it sets it to the
// configured runtime class. It changes nothing else, and nothing when the
// field is already set (to another class the validating webhook then
// refuses). namespace is as for Check. The result is nil when there is
// nothing to do.
//
// The patch's path is w.SpecPath. Its parents exist in every object the
// apiserver sends (a pod spec and a pod template are always serialized);
// in hand-made JSON that nulls them out the patch does not apply, and the
// apiserver then refuses the request.
//
// Mutate does not ask for exceptions: an exception to baseline.runtime-class
// lets a pod name another runtime class, not run without one.
func Mutate(w Workload, namespace string, cfg Config) []PatchOp {
	if w.Spec == nil {
		return nil
	}
	if namespace == "" && w.Meta != nil {
		namespace = w.Meta.Namespace
	}
	var labels map[string]string
	if w.PodMeta != nil {
		labels = w.PodMeta.Labels
	}
	if high, _ := cfg.HighRisk(namespace, labels); !high {
		return nil
	}
	if rc := w.Spec.RuntimeClassName; rc != nil && *rc != "" {
		return nil
	}
	// "add" sets the member whether or not it exists (RFC 6902 §4.1), so it
	// also replaces an explicit empty string. The spec path has no '~' or
	// '/' to escape.
	return []PatchOp{{Op: "add", Path: "/" + strings.ReplaceAll(w.SpecPath, ".", "/") + "/runtimeClassName", Value: cfg.runtimeClass()}}
}
