// Package podsec holds the pod security checks that Rampart's admission
// webhook and `rampart kube scan` both run: the Kubernetes Pod Security
// Standards "restricted" profile and Rampart's research baseline (allowed
// registries, digest pinning, explicit service-account token automount, and
// a sandbox runtime class for high-risk pods).
//
// The package is pure: no I/O, no clock, no globals that change. Every
// function is safe for concurrent use. It upholds DESIGN.md §2 invariant 6
// (fail closed: input it cannot fully understand is an error, never an
// allow) and invariant 7 (hostile input is refused with a precise error and
// never panics; see the fuzz tests).
//
// # Use
//
// The webhook decodes the request, finds the pod inside the submitted
// object, asks for violations, and for the mutating webhook a patch:
//
//	review, w, err := podsec.DecodeReview(body) // admission.k8s.io/v1 only; one pass
//	req := review.Request                        // (review nil: the review itself is malformed)
//	violations := podsec.Check(w, req.Namespace, cfg, exempt) // exempt: active exceptions, nil for none
//	patch := podsec.Mutate(w, req.Namespace, cfg)           // JSON Patch (RFC 6902)
//
// [DecodeAdmissionReview] and [WorkloadOf] do the same in two steps (the
// review with its object as raw JSON, then the object). A scanner holding
// typed objects uses [WorkloadFromObject]. Decoding is strict, with
// github.com/go-json-experiment/json (the proposed encoding/json/v2):
// unknown fields, duplicate fields, names in the wrong case and invalid
// UTF-8 are errors. The decoders' errors are [*DecodeError] values naming what
// was decoded, the offending field and the reason ("Pod:
// spec.hostNetwork: a JSON string cannot be a bool"); they wrap
// [ErrMalformed], [ErrTooLarge] or [ErrUnsupportedKind] so the caller can
// pick the HTTP status. An HTTP handler should cut the body at
// [MaxReviewBytes] before reading it.
//
// Config comes from policy; [Config.Validate] refuses entries that could
// never match (a registry "prefix" with no host, a namespace that is not a
// DNS label) so a typo is caught in CI rather than at admission.
//
// # Checks
//
// Every [Violation] names a stable check id (the one an exception waives),
// the field path inside the submitted object (so a Deployment's problems are
// reported under "spec.template.spec…", a CronJob's under
// "spec.jobTemplate.spec.template.spec…"), what is wrong, and the fix.
// [Checks] lists the ids. Violations come in a fixed order: by check, in the
// order [Checks] lists them, then in the order the fields appear (pod level,
// initContainers, containers, ephemeralContainers, volumes).
//
// The "restricted.*" checks implement the Pod Security Standards restricted
// profile as k8s.io/pod-security-admission v0.37.2 evaluates it at its latest
// version (1.37), including every baseline-level check that the restricted
// level keeps. A differential test and fuzz target compare them with that
// library check by check. One deliberate difference, on the safe side: a
// volume that names several sources (which API validation rejects anyway)
// is refused if any of them is a restricted type, where upstream accepts it
// as soon as one source is allowed. Where upstream reports containers that
// inherit a missing pod-level runAsNonRoot or seccomp profile as one
// finding, a violation here names the field whose change fixes it: the pod
// level when no container sets the value, each container otherwise. As upstream does, Windows pods
// (spec.os.name: windows) skip the allowPrivilegeEscalation, capabilities and
// seccomp checks, and pods in a user namespace (spec.hostUsers: false) skip
// runAsNonRoot and runAsUser.
//
// The "baseline.*" checks are Rampart's research baseline:
//
//   - baseline.registry: every image the pod pulls (containers,
//     initContainers, ephemeralContainers, and image volumes) must come from
//     one of [Config.AllowedRegistries].
//     The image is first normalized the way container runtimes do ("nginx"
//     is "docker.io/library/nginx"), and an entry matches whole path
//     components only: "registry.internal.example" allows
//     "registry.internal.example/x" but not
//     "registry.internal.example.evil.com/x" nor
//     "registry.internal.example:5000/x". Empty allows any registry.
//   - baseline.digest: with [Config.RequireDigest], every image (as above)
//     must be pinned by "@sha256:" and 64 lowercase hex digits.
//   - baseline.automount: spec.automountServiceAccountToken must be set
//     explicitly. Absent means the token is mounted (Kubernetes' default), so
//     absent is refused; false is the fix; true is an explicit opt-in.
//   - baseline.runtime-class: a high-risk pod (namespace in
//     [Config.HighRiskNamespaces], or a pod label in [Config.HighRiskLabels])
//     must have spec.runtimeClassName equal to [Config.RuntimeClass]. Any
//     other value or none is a violation; [Mutate] adds the field when it is
//     absent, so a pod that went through the mutating webhook passes.
//
// # Compatibility
//
// Decoding is strict: unknown fields, duplicate fields and fields whose case
// differs from the API's are errors. An apiserver newer than the
// k8s.io/api this package was built with can therefore send fields it
// cannot check; the webhook then refuses rather than admit what it did not
// read. Upgrade Rampart along with the cluster.
package podsec
