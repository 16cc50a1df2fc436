// Package admission is Rampart's Kubernetes admission webhook: a validating endpoint that
// refuses workloads breaking the Pod Security restricted profile or the research baseline
// (kube/podsec), reaching protected data (a volume, a Secret in the environment, a clone of a
// protected claim) without a grant for their service account, using a workload's grant or
// exception that their deployer did not request (deployer.go), or landing in a namespace
// without the default-deny egress policy; that refuses claims and snapshots copying protected
// data into objects the policy does not protect (claims.go); and that refuses exec, attach,
// port-forward, pod and service proxies and ephemeral containers into pods holding protected
// data without the person's grant (connect.go); and a mutating endpoint that puts high-risk pods
// under the sandbox runtime class.
//
// It is meant to be registered with failurePolicy: Fail (rampart kube install does), and it
// fails closed itself: when the decision engine cannot be trusted, or the cluster cannot be
// read, the answer is a refusal that says so. Every refusal names the check, the field path and
// the fix, and is a ledger entry (kube.admission.denied); since anyone who may create pods, and
// any controller retrying one, can be refused at will, the server aggregates them per user,
// namespace and failed checks (Webhook.Refused, invariant 11).
package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/audit/refusals"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// Check ids of Rampart's own admission checks (beside podsec's).
const (
	// CheckProtectedVolume: a pod reaches protected data without a grant for its service
	// account to read it.
	CheckProtectedVolume = "rampart.protected-volume"
	// CheckProtectedExec: exec, attach, port-forward, proxy or an ephemeral container into a pod
	// holding protected data without the person's grant to exec on it.
	CheckProtectedExec = "rampart.protected-exec"
	// CheckProtectedCopy: a claim or snapshot copies or binds protected data without the
	// policy naming it as holding the same resource.
	CheckProtectedCopy = "rampart.protected-copy"
	// CheckWorkloadGrant: a pod or controller would use a workload's grant or exception that
	// someone other than its deployer requested (see Deployer).
	CheckWorkloadGrant = "rampart.workload-grant"
	CheckNetworkPolicy = "rampart.default-deny-egress"
	CheckUnavailable   = "rampart.unavailable"
)

// Decider is the decision engine (authz.Index).
type Decider interface {
	Check(authz.Query) authz.Decision
	Health() error
}

// Webhook serves the admission endpoints. Set every field but Log and Now.
type Webhook struct {
	Policy  func() *policy.Policy
	Decide  Decider
	Cluster Cluster
	Record  func(ctx context.Context, e audit.Event) error
	// Refused records a refusal, which anyone who may create pods can provoke at will (and a
	// controller retries): the server aggregates them per user, namespace and failed checks
	// (audit/refusals, invariant 11). Nil: Record, one entry each.
	Refused func(ctx context.Context, source string, e audit.Event) (refusals.Outcome, error)
	Log     *slog.Logger
	Now     func() time.Time

	intact intactCache
}

// intactCache remembers netpol.Intact for each version of a NetworkPolicy (its uid and
// resourceVersion: the apiserver gives an object a new resourceVersion on every change) under
// one policy; a new policy, or too many entries, empties it. Every review of a namespace asks
// about the same few policies, and the comparison copies and walks both specs.
type intactCache struct {
	mu  sync.Mutex
	pol *policy.Policy
	m   map[intactKey]bool
}

type intactKey struct{ uid, resourceVersion string }

// maxIntactEntries bounds the cache: a few policies per namespace in the largest clusters.
const maxIntactEntries = 16384

func (c *intactCache) check(np *networkingv1.NetworkPolicy, pol *policy.Policy) bool {
	if np.UID == "" || np.ResourceVersion == "" {
		return netpol.Intact(np, pol.Kubernetes().Egress) // not read from the apiserver: nothing to key on
	}
	k := intactKey{string(np.UID), np.ResourceVersion}
	c.mu.Lock()
	if c.pol != pol || len(c.m) >= maxIntactEntries {
		c.pol, c.m = pol, map[intactKey]bool{}
	}
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return v
	}
	v = netpol.Intact(np, pol.Kubernetes().Egress)
	c.mu.Lock()
	if c.pol == pol {
		c.m[k] = v
	}
	c.mu.Unlock()
	return v
}

// Handler serves POST /validate, POST /mutate and GET /healthz.
func (h *Webhook) Handler() http.Handler {
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if h.Now == nil {
		h.Now = time.Now
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /validate", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.validate) })
	mux.HandleFunc("POST /mutate", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, h.mutate) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := h.Decide.Health(); err != nil {
			http.Error(w, "decision engine unavailable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// decideFunc answers a review: req is its request, wl the workload in request.object (zero
// when there is none to judge), objErr what is wrong with request.object.
type decideFunc func(ctx context.Context, req *admissionv1.AdmissionRequest, wl podsec.Workload, objErr error) *admissionv1.AdmissionResponse

func (h *Webhook) serve(w http.ResponseWriter, r *http.Request, decide decideFunc) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "the body must be an admission.k8s.io/v1 AdmissionReview in JSON (Content-Type application/json), not "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, release, err := readBody(w, r)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("the AdmissionReview is larger than %d bytes", podsec.MaxReviewBytes), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "the AdmissionReview could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	review, wl, objErr := podsec.DecodeReview(body)
	release() // the decoded review holds no part of the body
	if review == nil {
		// The apiserver sends well-formed reviews; anything else is refused outright (with
		// failurePolicy: Fail, an error is a refusal too).
		http.Error(w, objErr.Error(), http.StatusBadRequest)
		return
	}
	resp := decide(r.Context(), review.Request, wl, objErr)
	resp.UID = review.Request.UID
	out := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Response: resp}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// bodyBuffers holds request-body buffers for reuse.
var bodyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// readBody reads the body, at most podsec.MaxReviewBytes. When the request announces its
// length (kube-apiserver always does), the body is read into a reused buffer of that size
// rather than grown through io.ReadAll; release hands the buffer back, once nothing refers to
// the body any more.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	rd := http.MaxBytesReader(w, r.Body, podsec.MaxReviewBytes)
	n := r.ContentLength
	if n > podsec.MaxReviewBytes {
		return nil, nil, &http.MaxBytesError{Limit: podsec.MaxReviewBytes}
	}
	if n <= 0 {
		b, err := io.ReadAll(rd)
		return b, func() {}, err
	}
	bp := bodyBuffers.Get().(*[]byte)
	if int64(cap(*bp)) < n+1 {
		*bp = make([]byte, n+1)
	}
	buf := (*bp)[:n+1] // one byte more, to notice a body longer than announced
	m, err := io.ReadFull(rd, buf)
	switch {
	case err == io.ErrUnexpectedEOF && int64(m) == n:
		return buf[:n], func() { bodyBuffers.Put(bp) }, nil
	case err == nil:
		err = fmt.Errorf("the body is longer than its Content-Length (%d)", n)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = fmt.Errorf("the body is shorter than its Content-Length (%d): %w", n, err)
	}
	bodyBuffers.Put(bp)
	return nil, nil, err
}

// refusal is one reason to refuse.
type refusal struct {
	Check, Field, Message, Fix string
}

func (h *Webhook) validate(ctx context.Context, req *admissionv1.AdmissionRequest, wl podsec.Workload, objErr error) *admissionv1.AdmissionResponse {
	pol := h.Policy()
	settings := pol.Kubernetes()
	what := describe(req)
	if req.Resource.Group == "networking.k8s.io" && req.Resource.Resource == "networkpolicies" && req.SubResource == "" {
		return h.validateNetworkPolicy(ctx, req, pol, what)
	}
	if err := h.Decide.Health(); err != nil {
		return h.deny(ctx, req, what, []refusal{{Check: CheckUnavailable, Message: "Rampart's decision engine cannot be trusted right now (" + err.Error() + "), so nothing is admitted", Fix: "retry when the Rampart control plane is healthy (GET /readyz)"}}, "")
	}
	switch {
	case isConnect(req):
		return h.validateConnect(ctx, req, pol, settings, what)
	case req.Resource.Group == "" && req.Resource.Resource == "persistentvolumeclaims" && req.SubResource == "":
		return h.validateClaim(ctx, req, pol, settings, what)
	case req.Resource.Group == SnapshotGroup && req.Resource.Resource == "volumesnapshots" && req.SubResource == "":
		return h.validateSnapshot(ctx, req, pol, what)
	}
	if objErr != nil {
		return h.deny(ctx, req, what, []refusal{{Check: "rampart.malformed", Message: objErr.Error(), Fix: "submit a valid object"}}, "")
	}
	if wl.Spec == nil {
		// Deletions carry no object to judge, and other kinds are not this webhook's business.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	ns := req.Namespace
	cfg := podsecConfig(settings.Admission)
	var deployer *Deployer
	if usesGrantsAnew(req, wl) {
		deployer = DeployerOf(req.UserInfo, settings)
	}
	ex := Exceptions(h.Decide.Check, settings.Cluster, ns, wl).For(deployer)
	var out []refusal
	for _, v := range podsec.Check(wl, ns, cfg, ex.Exempt) {
		out = append(out, refusal(v))
	}
	data := DataCheck{Policy: pol, Settings: settings, Decide: h.Decide.Check, Storage: h.Cluster, Deployer: deployer}
	for _, v := range data.Violations(ctx, wl, ns) {
		out = append(out, refusal(v))
	}
	if req.SubResource == "ephemeralcontainers" {
		// A container added to a running pod runs its own command with the pod's volumes and
		// environment: exec by another name, and it needs the same grant.
		if pod, ok := wl.Object.(*corev1.Pod); ok {
			refused, _ := h.connectRefusals(ctx, req, data, settings, []*corev1.Pod{pod}, "pod")
			out = append(out, refused...)
		}
	}
	nps, err := h.Cluster.NetworkPolicies(ns)
	var warnings []string
	switch {
	case err != nil:
		out = append(out, refusal{Check: CheckUnavailable, Message: "cannot read the namespace's NetworkPolicies: " + err.Error(), Fix: "retry; the webhook refuses what it cannot check"})
	default:
		intact := false
		for _, np := range nps {
			intact = intact || h.intact.check(np, pol)
		}
		if !intact && !ex.Exempt(CheckNetworkPolicy) {
			out = append(out, refusal{Check: CheckNetworkPolicy, Field: "metadata.namespace",
				Message: fmt.Sprintf("namespace %q has no intact Rampart default-deny egress NetworkPolicy (%s)", ns, netpol.Name),
				Fix:     "have an administrator run rampart kube install (or apply the output of rampart kube render netpol --namespace " + ns + ")"})
		}
		if more := netpol.AllowsMore(nps, settings.Egress); len(more) > 0 {
			warnings = append(warnings, fmt.Sprintf("rampart: NetworkPolicies %s allow egress beyond DNS and the egress gateway; NetworkPolicies add up, so they widen the default deny", strings.Join(more, ", ")))
		}
	}
	for _, v := range ex.Borrowed(wl.SpecPath) {
		out = append(out, refusal(v))
	}
	if len(out) > 0 {
		resp := h.deny(ctx, req, what, out, exceptionHint(out, settings.Cluster, ns, wl))
		resp.Warnings = warnings
		return resp
	}
	if used := ex.Used(); len(used) > 0 {
		var parts []string
		for _, u := range used {
			parts = append(parts, u.Check+" (grant "+u.GrantID+", until "+u.ExpiresAt.UTC().Format(time.RFC3339)+")")
		}
		msg := fmt.Sprintf("rampart: %s admitted under approved exceptions: %s", what, strings.Join(parts, ", "))
		warnings = append(warnings, msg)
		h.record(ctx, req, audit.Event{Code: "kube.admission.excepted", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate, ActivityName: "Create",
			Severity: audit.SeverityMedium, Message: msg, Details: map[string]any{"exceptions": used}})
	}
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

func (h *Webhook) record(ctx context.Context, req *admissionv1.AdmissionRequest, e audit.Event) {
	if h.Record == nil {
		return
	}
	e.Time, e.Actor = h.Now(), req.UserInfo.Username
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details["namespace"], e.Details["name"], e.Details["kind"], e.Details["operation"], e.Details["uid"] = req.Namespace, req.Name, req.Kind.Kind, string(req.Operation), string(req.UID)
	if err := h.Record(context.WithoutCancel(ctx), e); err != nil {
		h.Log.Error("admission: cannot record in the ledger", "err", err, "code", e.Code)
	}
}

func podsecConfig(a policy.AdmissionSettings) podsec.Config {
	return podsec.Config{AllowedRegistries: a.AllowedRegistries, RequireDigest: a.RequireDigest, RuntimeClass: a.RuntimeClass,
		HighRiskNamespaces: a.HighRiskNamespaces, HighRiskLabels: a.HighRiskLabels}
}

// ServiceAccountSubject is the Rampart subject of a pod's service account.
func ServiceAccountSubject(cluster, namespace, sa string) string {
	if sa == "" {
		sa = "default"
	}
	return "k8s:" + cluster + "/" + namespace + "/" + sa
}

func (h *Webhook) mutate(ctx context.Context, req *admissionv1.AdmissionRequest, wl podsec.Workload, objErr error) *admissionv1.AdmissionResponse {
	// A pod's runtimeClassName cannot change once it exists: pods are mutated on creation only
	// (the validating webhook explains a refused update); controllers on either.
	if req.Operation != admissionv1.Create && (req.Operation != admissionv1.Update || req.Kind.Kind == "Pod") {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	if objErr != nil || wl.Spec == nil {
		// Not a workload, or malformed: the validating webhook decides; mutation adds nothing.
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	patch := podsec.Mutate(wl, req.Namespace, podsecConfig(h.Policy().Kubernetes().Admission))
	if len(patch) == 0 {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: 500, Message: "rampart: cannot encode the patch: " + err.Error()}}
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: b, PatchType: &pt}
}

func describe(req *admissionv1.AdmissionRequest) string {
	name := req.Name
	if name == "" {
		name = "(generated name)"
	}
	kind := req.Kind.Kind
	if req.SubResource != "" {
		kind = req.Resource.Resource + "/" + req.SubResource
	}
	return fmt.Sprintf("%s %s/%s", kind, req.Namespace, name)
}

// Waivable reports whether an approved exception can waive check: the Pod Security and
// baseline checks and the namespace's NetworkPolicy, not the checks on protected data (they need
// a grant to read the data) nor the refusals of what cannot be checked.
func Waivable(check string) bool { return slices.Contains(WaivableChecks(), check) }

// WaivableChecks lists the checks an exception can waive.
func WaivableChecks() []string {
	out := []string{CheckNetworkPolicy, CheckEgressWidened}
	for _, c := range podsec.Checks() {
		out = append(out, c.ID)
	}
	return out
}

// exceptionHint says how to ask for an exception to each waivable check in rs, "" when none is.
func exceptionHint(rs []refusal, cluster, ns string, wl podsec.Workload) string {
	sa := "default"
	if wl.Spec != nil && wl.Spec.ServiceAccountName != "" {
		sa = wl.Spec.ServiceAccountName
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, r := range rs {
		if !Waivable(r.Check) || seen[r.Check] {
			continue
		}
		if len(seen) == 0 {
			fmt.Fprintf(&b, "\nWhere a fix is not possible, ask for a time-bound exception for the pods of service account %s (it needs the approvals the policy sets for %s; say what compensates), one per check:", sa, NamespaceResource(ns))
		}
		seen[r.Check] = true
		b.WriteString("\n  " + ExceptionCommand(cluster, ns, sa, r.Check))
	}
	return b.String()
}

// ExceptionCommand is the command that asks for an exception to check for the pods of service
// account sa ("" for default) in namespace ns, with the compensating controls and reason to fill in.
func ExceptionCommand(cluster, ns, sa, check string) string {
	if sa == "" {
		sa = "default"
	}
	return fmt.Sprintf(`rampart exception request --cluster %s --namespace %s --workload %s --check %s --compensating "…" --reason "…" --duration 72h`, cluster, ns, sa, check)
}

// deny builds the refusal, and records it. hint, if any, ends the message (how to ask for an
// exception).
func (h *Webhook) deny(ctx context.Context, req *admissionv1.AdmissionRequest, what string, rs []refusal, hint string) *admissionv1.AdmissionResponse {
	var b strings.Builder
	fmt.Fprintf(&b, "Rampart refused %s (%d problem", what, len(rs))
	if len(rs) != 1 {
		b.WriteString("s")
	}
	b.WriteString("):")
	checks := make([]string, 0, len(rs))
	for _, r := range rs {
		b.WriteString("\n- [" + r.Check + "] ")
		if r.Field != "" {
			b.WriteString(r.Field + ": ")
		}
		b.WriteString(r.Message + "; fix: " + r.Fix)
		checks = append(checks, r.Check)
	}
	b.WriteString(hint)
	msg := b.String()
	if h.Record != nil || h.Refused != nil {
		details := map[string]any{"namespace": req.Namespace, "name": req.Name, "kind": req.Kind.Kind, "operation": string(req.Operation),
			"user": req.UserInfo.Username, "checks": checks, "uid": string(req.UID)}
		if req.SubResource != "" {
			details["subresource"] = req.SubResource
		}
		ev := audit.Event{Code: "kube.admission.denied", Class: audit.ClassAPIActivity, Activity: audit.ActivityCreate,
			ActivityName: "Create", Severity: audit.SeverityMedium, Time: h.Now(), Actor: req.UserInfo.Username, Message: msg, Details: details, Failed: true}
		var err error
		if h.Refused != nil {
			_, err = h.Refused(context.WithoutCancel(ctx), fmt.Sprintf("user %s in namespace %s, failing %s", req.UserInfo.Username, req.Namespace, strings.Join(checks, ",")), ev)
		} else {
			err = h.Record(context.WithoutCancel(ctx), ev)
		}
		if err != nil {
			// The refusal stands; it is logged so the gap in the ledger is visible.
			h.Log.Error("admission: cannot record a refusal in the ledger", "err", err, "what", what)
		}
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden, Message: msg}}
}
