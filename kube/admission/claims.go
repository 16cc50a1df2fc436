package admission

import (
	"context"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// Protected data is copied only into objects the policy protects too. A claim that clones a
// protected claim or a snapshot of one (dataSource, dataSourceRef), or that binds the volume of
// one (volumeName), and a VolumeSnapshot of a protected claim, hold the data as the original
// does; unless the policy names them as holding the same resource, any pod of the namespace
// could mount the copy with no grant at all, and the copy would outlive every grant. So they are
// refused (check rampart.protected-copy) unless the policy names them
// (persistent_volume_claims, volume_snapshots), and mounting a named copy then needs the same
// grant as mounting the original. A generic ephemeral volume is a claim too: see DataCheck.

// DecodeClaim decodes a PersistentVolumeClaim (v1) from an admission request, strictly
// (podsec.DecodeObject).
func DecodeClaim(raw []byte) (*corev1.PersistentVolumeClaim, error) {
	var c corev1.PersistentVolumeClaim
	if err := podsec.DecodeObject("PersistentVolumeClaim", raw, &c); err != nil {
		return nil, err
	}
	if c.APIVersion != "v1" || c.Kind != "PersistentVolumeClaim" {
		return nil, &podsec.DecodeError{What: "PersistentVolumeClaim", Field: "apiVersion", Err: podsec.ErrMalformed,
			Reason: fmt.Sprintf("object says apiVersion %q, kind %q; want \"v1\", \"PersistentVolumeClaim\"", c.APIVersion, c.Kind)}
	}
	return &c, nil
}

// validateClaim decides the creation of a claim, and an update that binds it to a volume
// (spec.volumeName may be set once on a pending claim; the rest of a claim's data source is
// fixed at creation).
func (h *Webhook) validateClaim(ctx context.Context, req *admissionv1.AdmissionRequest, pol *policy.Policy, s policy.KubernetesSettings, what string) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	claim, err := DecodeClaim(req.Object.Raw)
	if err != nil {
		return h.deny(ctx, req, what, []refusal{{Check: "rampart.malformed", Message: err.Error(), Fix: "submit a valid object"}}, "")
	}
	spec := claim.Spec
	if req.Operation == admissionv1.Update {
		old, err := DecodeClaim(req.OldObject.Raw)
		if err != nil {
			return h.deny(ctx, req, what, []refusal{{Check: "rampart.malformed", Field: "oldObject", Message: err.Error(), Fix: "submit a valid object"}}, "")
		}
		if old.Spec.VolumeName == spec.VolumeName {
			return &admissionv1.AdmissionResponse{Allowed: true}
		}
		spec = corev1.PersistentVolumeClaimSpec{VolumeName: spec.VolumeName} // only the binding is new
	}
	data := DataCheck{Policy: pol, Settings: s, Decide: h.Decide.Check, Storage: h.Cluster}
	out, err := ClaimViolations(ctx, data, req.Namespace, req.Name, &spec)
	if err != nil {
		return h.deny(ctx, req, what, []refusal{{Check: CheckUnavailable, Field: "spec", Message: "cannot read what the claim copies or binds: " + err.Error(),
			Fix: "retry; the webhook refuses what it cannot check"}}, "")
	}
	if len(out) > 0 {
		rs := make([]refusal, len(out))
		for i, v := range out {
			rs[i] = refusal(v)
		}
		return h.deny(ctx, req, what, rs, "")
	}
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// ClaimViolations checks the claim ns/name with spec: what it copies or binds that holds a
// resource must be named in the policy as holding the same resource. The webhook and kube scan
// both use it; an error means the cluster could not be read to decide.
func ClaimViolations(ctx context.Context, c DataCheck, ns, name string, spec *corev1.PersistentVolumeClaimSpec) ([]podsec.Violation, error) {
	refs, err := c.sources(ctx, ns, name, spec, "spec", true)
	if err != nil {
		return nil, err
	}
	declared := c.Policy.ProtectedVolumes(ns)["PersistentVolumeClaim/"+name]
	var out []podsec.Violation
	for _, r := range refs {
		if declared.Resource == r.resource {
			continue
		}
		out = append(out, podsec.Violation{Check: CheckProtectedCopy, Field: r.field,
			Message: fmt.Sprintf("the claim %s/%s would hold what %s holds (%s), and the policy does not name it as holding %s: any pod of the namespace could mount it with no grant, and it would outlive every grant", ns, name, r.what, r.resource, r.resource),
			Fix:     fmt.Sprintf("name the claim in the policy (resource %s, kubernetes.persistent_volume_claims in namespace %s) and have the change approved, or do not copy the data", r.resource, ns)})
	}
	return out, nil
}

// validateSnapshot decides the creation of a VolumeSnapshot: of a protected claim, only into a
// snapshot the policy names as holding the same resource.
func (h *Webhook) validateSnapshot(ctx context.Context, req *admissionv1.AdmissionRequest, pol *policy.Policy, what string) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create {
		return &admissionv1.AdmissionResponse{Allowed: true} // a snapshot's source cannot change
	}
	vs, err := DecodeVolumeSnapshot(req.Object.Raw)
	if err != nil {
		return h.deny(ctx, req, what, []refusal{{Check: "rampart.malformed", Message: err.Error(), Fix: "submit a valid object"}}, "")
	}
	if v := SnapshotViolation(pol, req.Namespace, req.Name, vs.ClaimName()); v != nil {
		return h.deny(ctx, req, what, []refusal{refusal(*v)}, "")
	}
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// SnapshotViolation checks a VolumeSnapshot ns/name of the claim ns/claim: a snapshot of a
// protected claim must be named in the policy as holding the same resource. A snapshot of a
// pre-provisioned VolumeSnapshotContent (claim "") is not followed: making one takes the
// cluster-wide right to create VolumeSnapshotContents.
func SnapshotViolation(pol *policy.Policy, ns, name, claim string) *podsec.Violation {
	prot := pol.ProtectedVolumes(ns)
	src, ok := prot["PersistentVolumeClaim/"+claim]
	if claim == "" || !ok || prot["VolumeSnapshot/"+name].Resource == src.Resource {
		return nil
	}
	return &podsec.Violation{Check: CheckProtectedCopy, Field: "spec.source.persistentVolumeClaimName",
		Message: fmt.Sprintf("the snapshot %s/%s would hold what PersistentVolumeClaim %s holds (%s), and the policy does not name it as holding %s: a claim restored from it could be mounted with no grant", ns, name, claim, src.Resource, src.Resource),
		Fix:     fmt.Sprintf("name the snapshot in the policy (resource %s, kubernetes.volume_snapshots in namespace %s) and have the change approved, or do not snapshot the claim", src.Resource, ns)}
}
