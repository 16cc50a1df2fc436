package admission

import (
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// A workload's grants — a grant to read protected data, or an exception, whose subject is the
// service account k8s:<cluster>/<namespace>/<account> — are used when a pod runs as that
// account. Whoever may create pods in the namespace may name any account there, so the grant
// alone would let them borrow it: a pod mounting the weights under "evaluator", a runc pod under
// the "gpu" account's exception. Rampart therefore also asks who is deploying (the admission
// request's userInfo) whenever a creation, or an update that changes the pod, would use a
// workload's grant:
//
//   - the person who requested the grant may (the approvers approved their request, with its
//     reason, for that workload);
//   - a workload controller may (kubernetes.admission.workload_controllers; by default the
//     kube-controller-manager's controllers of the kinds the webhook reviews): it makes pods and
//     controllers only from templates the webhook admitted, and checked against the requester,
//     when they were created or last changed;
//   - a cluster superuser (group system:masters) may: it can impersonate anyone anyway;
//   - nobody else does: the grant is someone else's, and the pod is refused (check
//     rampart.workload-grant), naming the requester.
//
// An update that leaves the pod spec as it was (labels, annotations, owner references, the
// garbage collector's finalizers) uses nothing anew and is not asked about.

// Deployer is who creates or changes an object that may use a workload's grants.
type Deployer struct {
	// User is the Kubernetes user name, as the apiserver authenticated it.
	User string
	// Subject is the Rampart subject the user is: a person (the user name without
	// kubernetes.user_prefix) or a service account's k8s:<cluster>/<namespace>/<account>.
	Subject string
	// Trusted says why the user may use any workload's grants, "" when only those they
	// requested.
	Trusted string
}

// DeployerOf says who u is for the workload-grant rule, under settings s.
func DeployerOf(u authenticationv1.UserInfo, s policy.KubernetesSettings) *Deployer {
	d := &Deployer{User: u.Username, Subject: UserSubject(u.Username, s)}
	switch {
	case slices.Contains(s.Admission.Controllers(), u.Username):
		d.Trusted = "a workload controller (kubernetes.admission.workload_controllers)"
	case slices.Contains(u.Groups, "system:masters"):
		d.Trusted = "a cluster superuser (system:masters)"
	}
	return d
}

// UserSubject is the Rampart subject of a Kubernetes user name: a person's name without the
// user prefix, a service account's k8s:<cluster>/<namespace>/<account>, and any other user
// (an administrator's certificate) as it is.
func UserSubject(username string, s policy.KubernetesSettings) string {
	if sa, ok := strings.CutPrefix(username, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(sa, ":"); ok {
			return ServiceAccountSubject(s.Cluster, ns, name)
		}
	}
	if s.UserPrefix != "" {
		if name, ok := strings.CutPrefix(username, s.UserPrefix); ok {
			return name
		}
	}
	return username
}

// usesGrantsAnew reports whether req would use the workload's grants anew: a creation, an
// ephemeral container added, or an update that changes the pod spec. An update whose old object
// cannot be read counts as a change (fail closed).
func usesGrantsAnew(req *admissionv1.AdmissionRequest, wl podsec.Workload) bool {
	switch {
	case req.Operation == admissionv1.Create || req.SubResource == "ephemeralcontainers":
		return true
	case req.Operation != admissionv1.Update:
		return false
	}
	old, err := podsec.WorkloadOf(req.Kind.Kind, req.OldObject.Raw)
	if err != nil || old.Spec == nil || wl.Spec == nil {
		return true
	}
	return !apiequality.Semantic.DeepEqual(old.Spec, wl.Spec)
}
