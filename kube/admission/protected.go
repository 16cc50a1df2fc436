package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// Protected data reaches a pod in more ways than a volume that names a protected object: a
// Secret through the environment of any container (init and ephemeral ones too), a claim through
// a generic ephemeral volume whose claim template clones it (dataSource, dataSourceRef, maybe
// from another namespace), clones a snapshot of it, or binds its volume (volumeName). Each is a
// reference to the resource the object holds, found here for the webhook, for kube scan and for
// the exec, attach, port-forward and proxy checks alike.

// ref is one place where a pod spec reaches an object that holds a catalogue resource.
type ref struct {
	resource string // the catalogue resource
	field    string // where, in the submitted object
	what     string // the object, for messages: "PersistentVolumeClaim frontier-7-weights"
	// copyTo is the claim Kubernetes makes for a generic ephemeral volume, which will hold a
	// copy of the data; noCopy says why no claim can be named instead ("" when copyTo is set
	// or nothing is copied).
	copyTo, noCopy string
}

// DataCheck checks what a workload's pods reach of the data the policy protects: each
// reference needs a grant for the pod's service account to read the resource, a copy (a
// generic ephemeral volume cloning it) must go into a claim the policy names as holding it,
// and, when Deployer is set, the grant must be one Deployer may use. Set Policy, Settings and
// Decide.
type DataCheck struct {
	Policy   *policy.Policy
	Settings policy.KubernetesSettings
	Decide   func(authz.Query) authz.Decision
	// Storage follows claim templates to the volume they bind (volumeName) and to the claim a
	// VolumeSnapshot the policy does not name was taken of. Nil follows only what the policy
	// names.
	Storage Storage
	// Deployer is who creates or changes the object, when the request uses the workload's
	// grants anew (a creation, or an update that changes the pod); nil checks no deployer
	// (kube scan, or an update that leaves the pod alone).
	Deployer *Deployer
}

// ProtectedVolumes finds every reference the pod makes to an object holding a catalogue
// resource that the policy names, and asks decide whether the pod's service account may read
// it; each refusal is a violation (check rampart.protected-volume, or rampart.protected-copy for
// a copy into a claim the policy does not name). It reads nothing from the cluster: DataCheck
// with Storage also follows claim templates to volumes and snapshots.
func ProtectedVolumes(wl podsec.Workload, ns string, pol *policy.Policy, s policy.KubernetesSettings, decide func(authz.Query) authz.Decision) []podsec.Violation {
	return DataCheck{Policy: pol, Settings: s, Decide: decide}.Violations(context.Background(), wl, ns)
}

// Violations checks wl, whose pods run in namespace ns. What cannot be read from the cluster
// to decide is a violation too (check rampart.unavailable): the webhook fails closed.
func (c DataCheck) Violations(ctx context.Context, wl podsec.Workload, ns string) []podsec.Violation {
	if wl.Spec == nil {
		return nil
	}
	refs, err := c.refs(ctx, wl, ns)
	if err != nil {
		return []podsec.Violation{{Check: CheckUnavailable, Field: wl.SpecPath + ".volumes",
			Message: "cannot read what the pod's volumes copy or bind: " + err.Error(), Fix: "retry; the webhook refuses what it cannot check"}}
	}
	subject := ServiceAccountSubject(c.Settings.Cluster, ns, wl.Spec.ServiceAccountName)
	prot := c.Policy.ProtectedVolumes(ns)
	var out []podsec.Violation
	seen := map[string]bool{}
	add := func(v podsec.Violation) {
		if k := v.Check + "|" + v.Field + "|" + v.Message; !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	for _, r := range refs {
		q := authz.Query{Subject: subject, Action: "read", Resource: r.resource}
		d := c.Decide(q)
		switch {
		case !d.Allowed:
			add(podsec.Violation{Check: CheckProtectedVolume, Field: r.field,
				Message: fmt.Sprintf("%s holds %s, and the pod's service account (%s) has no active grant to read it: %s", r.what, r.resource, subject, d.Reason),
				Fix:     fmt.Sprintf("request access for the workload: rampart request create --resource %s --action read --for %s --reason …", r.resource, subject)})
		case c.Deployer != nil && c.Deployer.Trusted == "" && d.GrantID != "":
			q.RequestedBy = c.Deployer.Subject
			if own := c.Decide(q); !own.Allowed {
				add(borrowed(r.field, fmt.Sprintf("%s holds %s", r.what, r.resource), subject, d, c.Deployer, r.resource))
			}
		}
		switch {
		case r.noCopy != "":
			add(podsec.Violation{Check: CheckProtectedCopy, Field: r.field,
				Message: fmt.Sprintf("this generic ephemeral volume copies %s, which holds %s, into a claim of its own; %s", r.what, r.resource, r.noCopy),
				Fix:     "mount the protected claim itself (read-only), or copy it in a pod whose claim the policy names"})
		case r.copyTo != "" && prot["PersistentVolumeClaim/"+r.copyTo].Resource != r.resource:
			add(podsec.Violation{Check: CheckProtectedCopy, Field: r.field,
				Message: fmt.Sprintf("this generic ephemeral volume copies %s, which holds %s, into the claim %s that Kubernetes makes for it: an ordinary claim that any pod of the namespace can mount by name, and that outlives the grant, unless the policy names it as holding %s", r.what, r.resource, r.copyTo, r.resource),
				Fix:     fmt.Sprintf("name %s in the policy (resource %s, kubernetes.persistent_volume_claims in namespace %s), or mount the protected claim itself", r.copyTo, r.resource, ns)})
		}
	}
	slices.SortStableFunc(out, func(a, b podsec.Violation) int { return strings.Compare(a.Field, b.Field) })
	return out
}

// borrowed is the violation of a pod or controller that would use a workload's grant (or
// exception) that its deployer did not request.
func borrowed(field, holds, subject string, d authz.Decision, dep *Deployer, resource string) podsec.Violation {
	fix := fmt.Sprintf("have %s deploy it, or request a grant for the workload yourself: rampart request create --resource %s --action read --for %s --reason …", requesterName(d), resource, subject)
	return podsec.Violation{Check: CheckWorkloadGrant, Field: field,
		Message: fmt.Sprintf("%s; the pod's service account (%s) may use it only under grant %s, which %s requested, and %s is deploying this pod: a workload's grant is used only by what its requester deploys (or a workload controller makes from a template the webhook admitted)",
			holds, subject, d.GrantID, requesterName(d), dep.User),
		Fix: fix}
}

func requesterName(d authz.Decision) string {
	if d.Requester == "" {
		return "someone else (the grant predates recorded requesters)"
	}
	return d.Requester
}

// refs lists the references of wl's pod spec.
func (c DataCheck) refs(ctx context.Context, wl podsec.Workload, ns string) ([]ref, error) {
	prot := c.Policy.ProtectedVolumes(ns)
	var out []ref
	direct := func(key, field string) {
		if pv, ok := prot[key]; ok {
			out = append(out, ref{resource: pv.Resource, field: field, what: pv.Kind + " " + pv.Name})
		}
	}
	path := wl.SpecPath
	for i, v := range wl.Spec.Volumes {
		f := fmt.Sprintf("%s.volumes[%d]", path, i)
		switch {
		case v.PersistentVolumeClaim != nil:
			direct("PersistentVolumeClaim/"+v.PersistentVolumeClaim.ClaimName, f+".persistentVolumeClaim.claimName")
		case v.Secret != nil:
			direct("Secret/"+v.Secret.SecretName, f+".secret.secretName")
		case v.CSI != nil:
			direct("CSIDriver/"+v.CSI.Driver, f+".csi.driver")
		case v.Projected != nil:
			for j, src := range v.Projected.Sources {
				if src.Secret != nil {
					direct("Secret/"+src.Secret.Name, fmt.Sprintf("%s.projected.sources[%d].secret.name", f, j))
				}
			}
		case v.Ephemeral != nil && v.Ephemeral.VolumeClaimTemplate != nil:
			claim, noCopy := "", ""
			if wl.Kind == "Pod" && wl.Meta != nil && wl.Meta.Name != "" {
				claim = wl.Meta.Name + "-" + v.Name // the name Kubernetes gives the claim
			} else {
				noCopy = "a controller's pods get generated names, so the policy cannot name the claims Kubernetes makes for them, and any pod of the namespace could mount one by name"
			}
			srcs, err := c.sources(ctx, ns, claim, &v.Ephemeral.VolumeClaimTemplate.Spec, f+".ephemeral.volumeClaimTemplate.spec", true)
			if err != nil {
				return nil, err
			}
			for _, s := range srcs {
				s.copyTo, s.noCopy = claim, noCopy
				out = append(out, s)
			}
		}
	}
	lists := []struct {
		name string
		n    int
		at   func(int) *corev1.Container
	}{
		{"initContainers", len(wl.Spec.InitContainers), func(i int) *corev1.Container { return &wl.Spec.InitContainers[i] }},
		{"containers", len(wl.Spec.Containers), func(i int) *corev1.Container { return &wl.Spec.Containers[i] }},
		{"ephemeralContainers", len(wl.Spec.EphemeralContainers), func(i int) *corev1.Container {
			return (*corev1.Container)(&wl.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		}},
	}
	for _, l := range lists {
		for i := range l.n {
			c := l.at(i)
			for j, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					direct("Secret/"+e.ValueFrom.SecretKeyRef.Name, fmt.Sprintf("%s.%s[%d].env[%d].valueFrom.secretKeyRef.name", path, l.name, i, j))
				}
			}
			for j, e := range c.EnvFrom {
				if e.SecretRef != nil {
					direct("Secret/"+e.SecretRef.Name, fmt.Sprintf("%s.%s[%d].envFrom[%d].secretRef.name", path, l.name, i, j))
				}
			}
		}
	}
	return out, nil
}

// sources lists the protected objects a claim spec reaches: what its dataSource and
// dataSourceRef clone (a claim, or a VolumeSnapshot of one), and, with withVolume, the volume it
// binds by volumeName. ns and claim are the claim's namespace and name (claim "" when not
// known); field is the spec's path.
func (c DataCheck) sources(ctx context.Context, ns, claim string, spec *corev1.PersistentVolumeClaimSpec, field string, withVolume bool) ([]ref, error) {
	var out []ref
	if ds := spec.DataSource; ds != nil {
		r, err := c.dataSource(ctx, ns, ds.APIGroup, ds.Kind, ds.Name, field+".dataSource")
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	if ds := spec.DataSourceRef; ds != nil && !sameSource(spec.DataSource, ds) {
		from := ns
		if ds.Namespace != nil && *ds.Namespace != "" {
			from = *ds.Namespace // a cross-namespace data source
		}
		r, err := c.dataSource(ctx, from, ds.APIGroup, ds.Kind, ds.Name, field+".dataSourceRef")
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	if withVolume && spec.VolumeName != "" {
		r, err := c.volume(ctx, ns, claim, spec.VolumeName, field+".volumeName")
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// sameSource reports whether ref names what local does: the apiserver copies each into the
// other when only one is given, and one reference is reported once.
func sameSource(local *corev1.TypedLocalObjectReference, ref *corev1.TypedObjectReference) bool {
	return local != nil && (ref.Namespace == nil || *ref.Namespace == "") && local.Kind == ref.Kind && local.Name == ref.Name &&
		deref(local.APIGroup) == deref(ref.APIGroup)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// dataSource says what a claim's data source in namespace ns holds, nil when nothing
// protected: a protected claim, a protected snapshot, or (with Storage) a snapshot of a
// protected claim. Other kinds (volume populators) are not followed.
func (c DataCheck) dataSource(ctx context.Context, ns string, group *string, kind, name, field string) (*ref, error) {
	g := ""
	if group != nil {
		g = *group
	}
	prot := c.Policy.ProtectedVolumes(ns)
	switch {
	case g == "" && kind == "PersistentVolumeClaim":
		if pv, ok := prot["PersistentVolumeClaim/"+name]; ok {
			return &ref{resource: pv.Resource, field: field + ".name", what: "PersistentVolumeClaim " + ns + "/" + name}, nil
		}
	case g == SnapshotGroup && kind == "VolumeSnapshot":
		if pv, ok := prot["VolumeSnapshot/"+name]; ok {
			return &ref{resource: pv.Resource, field: field + ".name", what: "VolumeSnapshot " + ns + "/" + name}, nil
		}
		if c.Storage == nil {
			return nil, nil
		}
		src, err := c.Storage.VolumeSnapshotSource(ctx, ns, name)
		if apierrors.IsNotFound(err) {
			return nil, nil // no such snapshot (yet: its creation is reviewed)
		}
		if err != nil {
			return nil, fmt.Errorf("VolumeSnapshot %s/%s: %w", ns, name, err)
		}
		if pv, ok := prot["PersistentVolumeClaim/"+src]; ok && src != "" {
			return &ref{resource: pv.Resource, field: field + ".name", what: fmt.Sprintf("VolumeSnapshot %s/%s (of PersistentVolumeClaim %s)", ns, name, src)}, nil
		}
	}
	return nil, nil
}

// volume says what the persistent volume name holds, for the claim ns/claim that names it,
// nil when nothing protected: a volume whose claimRef names a protected claim (bound to it, or
// released by it and kept), or the volume a protected claim names.
func (c DataCheck) volume(ctx context.Context, ns, claim, name, field string) (*ref, error) {
	if c.Storage == nil {
		return nil, nil
	}
	pv, err := c.Storage.PersistentVolume(ctx, name)
	switch {
	case apierrors.IsNotFound(err):
		pv = nil
	case err != nil:
		return nil, fmt.Errorf("PersistentVolume %s: %w", name, err)
	}
	if pv != nil && pv.Spec.ClaimRef != nil {
		cr := pv.Spec.ClaimRef
		if p, ok := c.Policy.ProtectedVolumes(cr.Namespace)["PersistentVolumeClaim/"+cr.Name]; ok {
			return &ref{resource: p.Resource, field: field, what: fmt.Sprintf("PersistentVolume %s (the volume of PersistentVolumeClaim %s/%s)", name, cr.Namespace, cr.Name)}, nil
		}
		if cr.Namespace == ns && cr.Name == claim {
			return nil, nil // the volume is this claim's own
		}
	}
	for _, pns := range c.Policy.ProtectedNamespaces() {
		for _, p := range c.Policy.ProtectedVolumes(pns) {
			if p.Kind != "PersistentVolumeClaim" {
				continue
			}
			pvc, err := c.Storage.PersistentVolumeClaim(ctx, pns, p.Name)
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("PersistentVolumeClaim %s/%s: %w", pns, p.Name, err)
			}
			if pvc.Spec.VolumeName == name {
				return &ref{resource: p.Resource, field: field, what: fmt.Sprintf("PersistentVolume %s (the volume of PersistentVolumeClaim %s/%s)", name, pns, p.Name)}, nil
			}
		}
	}
	return nil, nil
}

// HeldResources lists the catalogue resources a pod of namespace ns holds (whatever its
// grants), each with a field where it is reached: what exec, attach, port-forward, proxy and an
// ephemeral container added to the pod expose.
func (c DataCheck) HeldResources(ctx context.Context, pod *corev1.Pod, ns string) (map[string]string, error) {
	wl, err := podsec.WorkloadFromObject(pod)
	if err != nil {
		return nil, err
	}
	refs, err := c.refs(ctx, wl, ns)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, r := range refs {
		if _, ok := out[r.resource]; !ok {
			out[r.resource] = r.field
		}
	}
	return out, nil
}
