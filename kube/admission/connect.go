package admission

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	utilnet "k8s.io/apimachinery/pkg/util/net"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// What reaches a pod's processes or serving ports through the apiserver: exec, attach,
// port-forward and the pod proxy (CONNECT on pods/exec, pods/attach, pods/portforward,
// pods/proxy), and the service proxy (services/proxy), which dials the pods its Endpoints list.
// Adding an ephemeral container (an update of pods/ephemeralcontainers) is the same power and is
// checked with the pod's other changes (validate). Into a pod that holds protected data — by a
// volume, a Secret in any container's environment, or a copy in a generic ephemeral volume —
// each needs the person's grant for exec on that data.

// ConnectSubresources are the CONNECT subresources the webhook reviews, by resource.
var ConnectSubresources = map[string][]string{
	"pods":     {"attach", "exec", "portforward", "proxy"},
	"services": {"proxy"},
}

func isConnect(req *admissionv1.AdmissionRequest) bool {
	return req.Resource.Group == "" && slices.Contains(ConnectSubresources[req.Resource.Resource], req.SubResource)
}

// targetName is the object a CONNECT names: the proxies accept "name", "name:port" and
// "scheme:name:port" (as the apiserver splits them).
func targetName(req *admissionv1.AdmissionRequest) (string, error) {
	if req.SubResource != "proxy" {
		return req.Name, nil
	}
	_, name, _, ok := utilnet.SplitSchemeNamePort(req.Name)
	if !ok || name == "" {
		return "", fmt.Errorf("%q is not a name, name:port or scheme:name:port", req.Name)
	}
	return name, nil
}

// validateConnect decides a CONNECT: into pods that hold protected data, the person needs the
// exec action on that data.
func (h *Webhook) validateConnect(ctx context.Context, req *admissionv1.AdmissionRequest, pol *policy.Policy, s policy.KubernetesSettings, what string) *admissionv1.AdmissionResponse {
	unavailable := func(msg string) *admissionv1.AdmissionResponse {
		return h.deny(ctx, req, what, []refusal{{Check: CheckUnavailable, Message: msg, Fix: "retry; the webhook refuses what it cannot check"}}, "")
	}
	name, err := targetName(req)
	if err != nil {
		return unavailable(fmt.Sprintf("cannot tell which %s %s reaches: %v", req.Resource.Resource, req.SubResource, err))
	}
	var pods []*corev1.Pod
	kind := "pod"
	switch req.Resource.Resource {
	case "pods":
		pod, err := h.Cluster.Pod(ctx, req.Namespace, name)
		if err == nil && pod == nil {
			err = fmt.Errorf("no such pod")
		}
		if err != nil {
			return unavailable(fmt.Sprintf("cannot read pod %s/%s to see what it holds: %v", req.Namespace, name, err))
		}
		pods = []*corev1.Pod{pod}
	case "services":
		kind = fmt.Sprintf("service %s/%s proxies to pod", req.Namespace, name)
		pods, err = h.servicePods(ctx, req.Namespace, name)
		if err != nil {
			return unavailable(fmt.Sprintf("cannot find the pods service %s/%s reaches: %v", req.Namespace, name, err))
		}
	}
	data := DataCheck{Policy: pol, Settings: s, Decide: h.Decide.Check, Storage: h.Cluster}
	out, allowed := h.connectRefusals(ctx, req, data, s, pods, kind)
	if len(out) > 0 {
		return h.deny(ctx, req, what, out, "")
	}
	if len(allowed) > 0 {
		h.recordExec(ctx, req, s, allowed)
	}
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// recordExec records an allowed CONNECT into pods that hold protected data (kube.exec): the
// person had a grant for exec on each resource held, and reached its data in a running
// process. Only someone holding such a grant can cause the entry (invariant 11); detection
// watches it (docs/detection.md).
func (h *Webhook) recordExec(ctx context.Context, req *admissionv1.AdmissionRequest, s policy.KubernetesSettings, allowed map[string]authz.Decision) {
	resources := slices.Sorted(maps.Keys(allowed))
	grants := []string{}
	for _, r := range resources {
		if id := allowed[r].GrantID; id != "" && !slices.Contains(grants, id) {
			grants = append(grants, id)
		}
	}
	user := UserSubject(req.UserInfo.Username, s)
	h.record(ctx, req, audit.Event{Code: "kube.exec", Class: audit.ClassAPIActivity, Activity: audit.ActivityOther, ActivityName: "Other",
		Severity: audit.SeverityMedium, Resources: resources,
		Message: fmt.Sprintf("%s: %s %s/%s, which holds %s, under %s", user, connectVerbs[req.SubResource], req.Namespace, req.Name, strings.Join(resources, ", "), strings.Join(grants, ", ")),
		Details: map[string]any{"subject": user, "subresource": req.SubResource, "grant_ids": grants}})
}

// servicePods finds the pods a Service's proxy can reach: those its Endpoints list, which the
// apiserver dials, and those its selector picks, which the endpoints controller is about to
// list.
func (h *Webhook) servicePods(ctx context.Context, ns, name string) ([]*corev1.Pod, error) {
	svc, err := h.Cluster.Service(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	seen := map[string]bool{}
	if len(svc.Spec.Selector) > 0 {
		selected, err := h.Cluster.Pods(ctx, ns, labels.SelectorFromSet(svc.Spec.Selector))
		if err != nil {
			return nil, err
		}
		for i := range selected {
			seen[selected[i].Name] = true
			out = append(out, &selected[i])
		}
	}
	names, err := h.Cluster.EndpointPods(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		pod, err := h.Cluster.Pod(ctx, ns, n)
		if apierrors.IsNotFound(err) {
			continue // the apiserver does not dial an address whose pod is gone
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pod)
	}
	return out, nil
}

// connectRefusals checks that the person behind req may exec on everything pods hold, and
// returns the decisions on what they hold. kind introduces each pod in messages ("pod", or
// "service x proxies to pod").
func (h *Webhook) connectRefusals(ctx context.Context, req *admissionv1.AdmissionRequest, data DataCheck, s policy.KubernetesSettings, pods []*corev1.Pod, kind string) ([]refusal, map[string]authz.Decision) {
	user := UserSubject(req.UserInfo.Username, s)
	action := req.Resource.Resource + "/" + req.SubResource
	var out []refusal
	decided := map[string]authz.Decision{}
	for _, pod := range pods {
		held, err := data.HeldResources(ctx, pod, req.Namespace)
		if err != nil {
			out = append(out, refusal{Check: CheckUnavailable, Message: fmt.Sprintf("cannot tell what pod %s/%s holds: %v", req.Namespace, pod.Name, err), Fix: "retry; the webhook refuses what it cannot check"})
			continue
		}
		for _, res := range slices.Sorted(maps.Keys(held)) {
			d, ok := decided[res]
			if !ok {
				d = h.Decide.Check(authz.Query{Subject: user, Action: "exec", Resource: res})
				decided[res] = d
			}
			if !d.Allowed {
				out = append(out, refusal{Check: CheckProtectedExec, Field: action,
					Message: fmt.Sprintf("%s %s/%s holds %s (%s); %s needs a grant for exec on it, and %s has none: %s", kind, req.Namespace, pod.Name, res, held[res], connectVerbs[req.SubResource], user, d.Reason),
					Fix:     fmt.Sprintf("rampart request create --resource %s --action exec --reason …", res)})
			}
		}
	}
	return out, decided
}

// connectVerbs says what each subresource does to a pod, for messages.
var connectVerbs = map[string]string{
	"exec": "exec into it", "attach": "attaching to it", "portforward": "port-forwarding to it", "proxy": "proxying to it",
	"ephemeralcontainers": "adding an ephemeral container to it",
}
