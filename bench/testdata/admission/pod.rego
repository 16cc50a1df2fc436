# Rampart's admission checks in Rego, for the benchmark's OPA peer (bench/admission_test.go).
#
# Written as OPA/Gatekeeper policies are: `deny` rules over the AdmissionReview the apiserver
# sends (input.request.object), each adding a message that starts with the id of the check
# Rampart reports for the same problem, so that the agreement test can compare the two check by
# check. The research baseline's settings (allowed registries, digest pinning, runtime class,
# high-risk namespaces and labels) are data.rampart.config, taken from the policy Rampart loads.
#
# This file finds the pod inside the submitted object; restricted.rego holds the Pod Security
# Standards restricted profile, baseline.rego the research baseline.
package rampart.admission

obj := input.request.object

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

# spec and meta are the pod's spec and metadata, wherever the kind keeps them.
spec := obj.spec if input.request.kind.kind == "Pod"

spec := obj.spec.template.spec if input.request.kind.kind in template_kinds

spec := obj.spec.jobTemplate.spec.template.spec if input.request.kind.kind == "CronJob"

meta := object.get(obj, "metadata", {}) if input.request.kind.kind == "Pod"

meta := object.get(obj.spec.template, "metadata", {}) if input.request.kind.kind in template_kinds

meta := object.get(obj.spec.jobTemplate.spec.template, "metadata", {}) if input.request.kind.kind == "CronJob"

# The namespace the pod runs in: the request's, else the object's own.
namespace := ns if {
	ns := object.get(input.request, "namespace", "")
	ns != ""
} else := object.get(obj, ["metadata", "namespace"], "")

# containers: init containers, containers and ephemeral containers (which upstream checks too).
containers := array.concat(array.concat(list(spec, "initContainers"), list(spec, "containers")), list(spec, "ephemeralContainers"))

# list is the array at x[k], [] when absent or null (as Go decodes it).
list(x, k) := v if {
	v := x[k]
	is_array(v)
} else := []

# str is the string at path in x, "" when absent or null (as Go decodes it).
str(x, path) := v if {
	v := object.get(x, path, "")
	is_string(v)
} else := ""

# unset: the field at path is absent or null, as a nil Go pointer. Rules test for bad values by
# reference (`c.securityContext.privileged == true`: a reference to an absent field, or into a
# null, is undefined), but for absence through unset, since OPA evaluates the references in the
# arguments of a negated call outside the negation.
unset(x, path) if object.get(x, path, null) == null

windows if spec.os.name == "windows"

user_namespace if spec.hostUsers == false
