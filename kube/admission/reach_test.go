package admission_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
	"rampart.dev/rampart/store/sqlite"
)

// reachPolicy is the demo policy with more of frontier-7 in the cluster: a Secret, a named copy
// of its claim and a named snapshot, and a role to exec on it.
func reachPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	m := fstest.MapFS{}
	if err := fs.WalkDir(demo.Policy(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(demo.Policy(), path)
		m[path] = &fstest.MapFile{Data: b}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	res := string(m["resources.yaml"].Data)
	const claims = "    persistent_volume_claims: [frontier-7-weights]\n"
	if !strings.Contains(res, claims) {
		t.Fatal("the demo policy's frontier-7 claims moved")
	}
	res = strings.Replace(res, claims, "    persistent_volume_claims: [frontier-7-weights, frontier-7-weights-copy]\n    secrets: [frontier-7-hf-token]\n    volume_snapshots: [frontier-7-nightly]\n", 1)
	m["resources.yaml"] = &fstest.MapFile{Data: []byte(res)}
	m["debugger.yaml"] = &fstest.MapFile{Data: []byte(`apiVersion: rampart.dev/v1alpha1
kind: Role
metadata:
  name: weights-debugger-frontier-7
spec:
  description: Exec into pods holding the frontier-7 weights.
  rules:
  - actions: [exec]
    resources: [weights/frontier-7]
`)}
	p, err := policy.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rig is a webhook over a real SQLite store whose grants a test inserts.
type rig struct {
	t    *testing.T
	pol  *policy.Policy
	st   access.Store
	ix   *authz.Index
	hook *admission.Webhook
	objs *objects
	n    int
}

func newRig(t *testing.T) *rig {
	t.Helper()
	pol := reachPolicy(t)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ix := authz.New(st, pol, authz.Options{})
	if err := ix.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	objs := &objects{clusterWith: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)},
		"sandbox": {netpol.Render("sandbox", pol.Kubernetes().Egress)}},
		pods: map[string]*corev1.Pod{}, services: map[string]*corev1.Service{}, endpoints: map[string][]string{},
		pvs: map[string]*corev1.PersistentVolume{}, pvcs: map[string]*corev1.PersistentVolumeClaim{}, snapshots: map[string]string{}}
	return &rig{t: t, pol: pol, st: st, ix: ix, objs: objs,
		hook: &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: ix, Cluster: objs}}
}

// grant records an active grant of role to subject, requested by requester.
func (r *rig) grant(role, subject, requester string) string {
	r.t.Helper()
	r.n++
	now := time.Now()
	g := access.Grant{ID: "grt_" + strings.Repeat("x", 10) + string(rune('a'+r.n)), RequestID: "req_" + string(rune('a'+r.n)), Requester: requester,
		Role: role, Subject: subject, StartsAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Hour), State: access.GrantActive, Version: int64(r.n)}
	ctx := context.Background()
	if err := r.st.Update(ctx, func(tx access.Tx) error { return tx.InsertGrant(ctx, g) }); err != nil {
		r.t.Fatal(err)
	}
	if err := r.ix.Load(ctx); err != nil {
		r.t.Fatal(err)
	}
	return g.ID
}

// review sends one admission request to /validate and returns the answer.
func (r *rig) review(req admissionv1.AdmissionRequest, obj, old any) *admissionv1.AdmissionResponse {
	r.t.Helper()
	req.UID = "u-1"
	if req.Kind.Kind == "" {
		req.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	}
	if req.Resource.Resource == "" {
		req.Resource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	}
	if req.Namespace == "" {
		req.Namespace = "research"
	}
	if obj != nil {
		req.Object.Raw, _ = json.Marshal(obj)
	}
	if old != nil {
		req.OldObject.Raw, _ = json.Marshal(old)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &req})
	if err != nil {
		r.t.Fatal(err)
	}
	rec, resp := post(r.t, r.hook.Handler(), "/validate", "application/json", body)
	if resp == nil {
		r.t.Fatalf("no answer: %d %s", rec.Code, rec.Body)
	}
	return resp
}

func user(name string, groups ...string) authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: name, Groups: groups}
}

// refused fails unless resp refuses with every check in checks; allowed unless it admits.
func refused(t *testing.T, what string, resp *admissionv1.AdmissionResponse, checks ...string) {
	t.Helper()
	if resp.Allowed {
		t.Fatalf("%s: admitted", what)
	}
	for _, c := range checks {
		if !strings.Contains(resp.Result.Message, "["+c+"]") {
			t.Fatalf("%s: refused, but not for %s:\n%s", what, c, resp.Result.Message)
		}
	}
}

func allowed(t *testing.T, what string, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("%s: refused:\n%s", what, resp.Result.Message)
	}
}

// compliant is a pod that passes every check of the demo policy in research.
func compliant(name, sa string) *corev1.Pod {
	no, yes, uid, gv := false, true, int64(1000), "gvisor"
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "research", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{ServiceAccountName: sa, AutomountServiceAccountToken: &no, RuntimeClassName: &gv,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{Name: "eval", Image: "registry.internal.example/e@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}}}}}
}

func withWeights(p *corev1.Pod) *corev1.Pod {
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "weights", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "frontier-7-weights", ReadOnly: true}}})
	return p
}

const evaluator = "k8s:dev/research/evaluator"

// Issue 13, item 1: an ephemeral container (kubectl debug) is reviewed like the rest of the
// pod — Pod Security walks it — and, added to a pod holding protected data, needs the person's
// grant to exec on that data, as exec would.
func TestEphemeralContainers(t *testing.T) {
	r := newRig(t)
	r.grant("weights-reader-frontier-7", evaluator, "alice")
	old := withWeights(compliant("weights-eval", "evaluator"))
	r.objs.pods["research/weights-eval"] = old
	debug := func(p *corev1.Pod, ec corev1.EphemeralContainer) *corev1.Pod {
		p = p.DeepCopy()
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, ec)
		return p
	}
	root, priv := int64(0), true
	attack := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox", Stdin: true, TTY: true,
		SecurityContext: &corev1.SecurityContext{Privileged: &priv, RunAsUser: &root, Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN"}}},
		VolumeMounts:    []corev1.VolumeMount{{Name: "weights", MountPath: "/w"}}}}
	req := admissionv1.AdmissionRequest{Operation: admissionv1.Update, SubResource: "ephemeralcontainers", Name: "weights-eval", UserInfo: user("oidc:mallory")}
	resp := r.review(req, debug(old, attack), old)
	refused(t, "a privileged root debugger added to the weights pod", resp, "restricted.privileged", "restricted.capabilities", "restricted.run-as-user",
		"baseline.registry", admission.CheckProtectedExec)
	if !strings.Contains(resp.Result.Message, "spec.ephemeralContainers[0]") {
		t.Fatalf("the refusal does not name the ephemeral container:\n%s", resp.Result.Message)
	}
	// A debugger that passes every other check still runs mallory's command with the weights.
	clean := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon(compliant("", "").Spec.Containers[0])}
	clean.Name = "debugger"
	refused(t, "a restricted debugger added to the weights pod", r.review(req, debug(old, clean), old), admission.CheckProtectedExec)
	// Someone with a grant to exec on the weights (who requested the workload's grant) may.
	r.grant("weights-debugger-frontier-7", "alice", "alice")
	req.UserInfo = user("oidc:alice")
	allowed(t, "alice's debugger", r.review(req, debug(old, clean), old))
	// Into a pod that holds nothing protected, a restricted debugger is anyone's.
	plain := compliant("plain", "")
	req.Name, req.UserInfo = "plain", user("oidc:mallory")
	allowed(t, "mallory's debugger in her own pod", r.review(req, debug(plain, clean), plain))
	refused(t, "mallory's privileged debugger in her own pod", r.review(req, debug(plain, attack), plain), "restricted.privileged")
}

// Issue 13, item 3: a pod that takes a protected Secret through its environment holds it as
// much as one that mounts it: exec, attach, port-forward and the pod proxy need the exec grant.
func TestEnvSecretsGuardConnect(t *testing.T) {
	r := newRig(t)
	envFrom := compliant("env-from", "evaluator")
	envFrom.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "frontier-7-hf-token"}}}}
	keyRef := compliant("key-ref", "evaluator")
	keyRef.Spec.InitContainers = []corev1.Container{keyRef.Spec.Containers[0]}
	keyRef.Spec.InitContainers[0].Name = "fetch"
	keyRef.Spec.InitContainers[0].Env = []corev1.EnvVar{{Name: "HF_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "frontier-7-hf-token"}, Key: "token"}}}}
	plain := compliant("plain", "")
	for _, p := range []*corev1.Pod{envFrom, keyRef, plain} {
		r.objs.pods["research/"+p.Name] = p
	}
	connect := func(sub, name string, who authenticationv1.UserInfo) *admissionv1.AdmissionResponse {
		return r.review(admissionv1.AdmissionRequest{Operation: admissionv1.Connect, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"},
			SubResource: sub, Name: name, UserInfo: who}, nil, nil)
	}
	for _, sub := range []string{"exec", "attach", "portforward", "proxy"} {
		for _, name := range []string{"env-from", "key-ref"} {
			target := name
			if sub == "proxy" {
				target = "https:" + name + ":8443"
			}
			resp := connect(sub, target, user("oidc:mallory"))
			refused(t, sub+" into "+name, resp, admission.CheckProtectedExec)
			if !strings.Contains(resp.Result.Message, "frontier-7-hf-token") && !strings.Contains(resp.Result.Message, "secretKeyRef") && !strings.Contains(resp.Result.Message, "secretRef") {
				t.Fatalf("%s into %s: the refusal does not say where the pod holds the data:\n%s", sub, name, resp.Result.Message)
			}
		}
		allowed(t, sub+" into a plain pod", connect(sub, "plain", user("oidc:mallory")))
	}
	r.grant("weights-debugger-frontier-7", "alice", "alice")
	allowed(t, "alice's exec", connect("exec", "env-from", user("oidc:alice")))
	// A proxy name that is no pod name is refused, not guessed at.
	refused(t, "a malformed proxy name", connect("proxy", "a:b:c:d", user("oidc:alice")), admission.CheckUnavailable)
}

// Issue 13, item 7a: the service proxy reaches the pods the Service selects and those its
// Endpoints list: into pods holding protected data it is refused like port-forward.
func TestServiceProxy(t *testing.T) {
	r := newRig(t)
	w := withWeights(compliant("weights-serve", "evaluator"))
	other := compliant("other", "")
	manual := withWeights(compliant("weights-manual", "evaluator"))
	manual.Labels = nil
	for _, p := range []*corev1.Pod{w, other, manual} {
		r.objs.pods["research/"+p.Name] = p
	}
	r.objs.services["research/serve"] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "serve", Namespace: "research"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "weights-serve"}}}
	r.objs.services["research/plain"] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "plain", Namespace: "research"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "other"}}}
	r.objs.services["research/by-hand"] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "by-hand", Namespace: "research"}}
	r.objs.endpoints["research/by-hand"] = []string{"weights-manual"}
	proxy := func(name string) *admissionv1.AdmissionResponse {
		return r.review(admissionv1.AdmissionRequest{Operation: admissionv1.Connect, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ServiceProxyOptions"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "services"}, SubResource: "proxy", Name: name, UserInfo: user("oidc:mallory")}, nil, nil)
	}
	for _, name := range []string{"serve", "serve:http", "https:serve:443", "by-hand"} {
		resp := proxy(name)
		refused(t, "service proxy "+name, resp, admission.CheckProtectedExec)
		if !strings.Contains(resp.Result.Message, "proxies to pod") {
			t.Fatalf("service proxy %s: the refusal does not say which pod:\n%s", name, resp.Result.Message)
		}
	}
	allowed(t, "service proxy to plain pods", proxy("plain"))
	refused(t, "service proxy to a service that does not exist", proxy("nope"), admission.CheckUnavailable)
}

func claim(name string, mut func(*corev1.PersistentVolumeClaim)) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "research"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}
	if mut != nil {
		mut(c)
	}
	return c
}

// Issue 13, item 4: a claim that clones a protected claim or a snapshot of one, or binds its
// volume, and a snapshot of a protected claim, are refused unless the policy names them as
// holding the same resource; a generic ephemeral volume cloning it too.
func TestClaimsThatCopyProtectedData(t *testing.T) {
	r := newRig(t)
	r.objs.pvs["pv-weights"] = &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-weights"},
		Spec: corev1.PersistentVolumeSpec{ClaimRef: &corev1.ObjectReference{Namespace: "research", Name: "frontier-7-weights"}}}
	r.objs.pvs["pv-named"] = &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-named"}}
	r.objs.pvcs["research/frontier-7-weights"] = claim("frontier-7-weights", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-named" })
	r.objs.snapshots["research/adhoc"] = "frontier-7-weights"
	snapGroup := admission.SnapshotGroup
	pvcReq := func(op admissionv1.Operation, name string) admissionv1.AdmissionRequest {
		return admissionv1.AdmissionRequest{Operation: op, Name: name, Kind: metav1.GroupVersionKind{Version: "v1", Kind: "PersistentVolumeClaim"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}, UserInfo: user("oidc:mallory")}
	}
	other := "research"
	for name, mut := range map[string]func(*corev1.PersistentVolumeClaim){
		"dataSource": func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "frontier-7-weights"}
		},
		"dataSourceRef": func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "frontier-7-weights"}
		},
		"named snapshot": func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &snapGroup, Kind: "VolumeSnapshot", Name: "frontier-7-nightly"}
		},
		"snapshot of the claim": func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: &snapGroup, Kind: "VolumeSnapshot", Name: "adhoc"}
		},
		"volumeName, bound volume": func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-weights" },
		"volumeName, named volume": func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-named" },
	} {
		refused(t, name, r.review(pvcReq(admissionv1.Create, "stolen"), claim("stolen", mut), nil), admission.CheckProtectedCopy)
		allowed(t, name+" into the named copy", r.review(pvcReq(admissionv1.Create, "frontier-7-weights-copy"), claim("frontier-7-weights-copy", mut), nil))
	}
	// From another namespace (CrossNamespaceVolumeDataSource).
	cross := claim("stolen", func(c *corev1.PersistentVolumeClaim) {
		c.Namespace = "sandbox"
		c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "PersistentVolumeClaim", Name: "frontier-7-weights", Namespace: &other}
	})
	req := pvcReq(admissionv1.Create, "stolen")
	req.Namespace = "sandbox"
	refused(t, "a cross-namespace clone", r.review(req, cross, nil), admission.CheckProtectedCopy)
	// Binding a pending claim to the volume later is an update.
	pending := claim("pending", nil)
	bound := claim("pending", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-weights" })
	refused(t, "volumeName set by an update", r.review(pvcReq(admissionv1.Update, "pending"), bound, pending), admission.CheckProtectedCopy)
	allowed(t, "an ordinary claim", r.review(pvcReq(admissionv1.Create, "scratch"), claim("scratch", nil), nil))
	allowed(t, "a claim bound to its own volume", r.review(pvcReq(admissionv1.Create, "scratch"), claim("scratch", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-free" }), nil))

	// A generic ephemeral volume makes a claim named <pod>-<volume> that clones the data.
	eph := func(name string) *corev1.Pod {
		p := compliant(name, "evaluator")
		p.Spec.Volumes = []corev1.Volume{{Name: "copy", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
			Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "frontier-7-weights"}}}}}}}
		return p
	}
	podReq := admissionv1.AdmissionRequest{Operation: admissionv1.Create, Name: "cloner", UserInfo: user("oidc:mallory")}
	refused(t, "an ephemeral clone without a grant", r.review(podReq, eph("cloner"), nil), admission.CheckProtectedVolume, admission.CheckProtectedCopy)
	r.grant("weights-reader-frontier-7", evaluator, "mallory")
	refused(t, "an ephemeral clone with a grant", r.review(podReq, eph("cloner"), nil), admission.CheckProtectedCopy)
	podReq.Name = "frontier-7-weights"
	p := eph("frontier-7-weights")
	p.Spec.Volumes[0].Name = "copy"
	// frontier-7-weights-copy is the name the policy gives the copy.
	allowed(t, "an ephemeral clone into the named claim", r.review(podReq, p, nil))

	// Snapshots.
	snapReq := admissionv1.AdmissionRequest{Operation: admissionv1.Create, Name: "grab", Kind: metav1.GroupVersionKind{Group: snapGroup, Version: "v1", Kind: "VolumeSnapshot"},
		Resource: metav1.GroupVersionResource{Group: snapGroup, Version: "v1", Resource: "volumesnapshots"}, UserInfo: user("oidc:mallory")}
	snap := func(name, claim string) any {
		return &admission.VolumeSnapshot{TypeMeta: metav1.TypeMeta{APIVersion: snapGroup + "/v1", Kind: "VolumeSnapshot"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "research"},
			Spec: admission.VolumeSnapshotSpec{Source: admission.VolumeSnapshotSpecSource{PersistentVolumeClaimName: &claim}}}
	}
	refused(t, "a snapshot of the weights", r.review(snapReq, snap("grab", "frontier-7-weights"), nil), admission.CheckProtectedCopy)
	snapReq.Name = "frontier-7-nightly"
	allowed(t, "the named snapshot", r.review(snapReq, snap("frontier-7-nightly", "frontier-7-weights"), nil))
	snapReq.Name = "scratch"
	allowed(t, "a snapshot of another claim", r.review(snapReq, snap("scratch", "scratch"), nil))
}

// Issue 13, item 2: a workload's grant or exception is used only by what its requester deploys,
// or a workload controller makes (from a template the webhook checked against the requester),
// not by anyone who can name the service account.
func TestWorkloadGrantsAreNotBorrowed(t *testing.T) {
	r := newRig(t)
	grant := r.grant("weights-reader-frontier-7", evaluator, "alice")
	create := func(who authenticationv1.UserInfo, obj runtime.Object) *admissionv1.AdmissionResponse {
		req := admissionv1.AdmissionRequest{Operation: admissionv1.Create, Name: "weights-eval", UserInfo: who}
		if _, ok := obj.(*corev1.ReplicationController); ok {
			req.Kind, req.Resource = metav1.GroupVersionKind{Version: "v1", Kind: "ReplicationController"}, metav1.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}
		}
		return r.review(req, obj, nil)
	}
	pod := withWeights(compliant("weights-eval", "evaluator"))
	resp := create(user("oidc:mallory"), pod)
	refused(t, "mallory's pod under evaluator", resp, admission.CheckWorkloadGrant)
	if !strings.Contains(resp.Result.Message, grant) || !strings.Contains(resp.Result.Message, "alice") {
		t.Fatalf("the refusal does not name the grant and its requester:\n%s", resp.Result.Message)
	}
	allowed(t, "alice's pod", create(user("oidc:alice"), pod))
	allowed(t, "the replicaset controller's pod", create(user("system:serviceaccount:kube-system:replicaset-controller"), pod))
	allowed(t, "a cluster superuser's pod", create(user("kubernetes-admin", "system:masters"), pod))
	refused(t, "a pod made by another service account", create(user("system:serviceaccount:research:ci"), pod), admission.CheckWorkloadGrant)
	rc := &corev1.ReplicationController{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ReplicationController"}, ObjectMeta: metav1.ObjectMeta{Name: "weights-eval", Namespace: "research"},
		Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}}}
	refused(t, "mallory's ReplicationController", create(user("oidc:mallory"), rc), admission.CheckWorkloadGrant)
	allowed(t, "alice's ReplicationController", create(user("oidc:alice"), rc))

	// An update that leaves the pod spec alone (a label) uses nothing anew; one that changes it does.
	upd := admissionv1.AdmissionRequest{Operation: admissionv1.Update, Name: "weights-eval", UserInfo: user("oidc:mallory")}
	labelled := pod.DeepCopy()
	labelled.Labels["team"] = "evals"
	allowed(t, "mallory's label on alice's pod", r.review(upd, labelled, pod))
	changed := pod.DeepCopy()
	changed.Spec.ActiveDeadlineSeconds = new(int64)
	*changed.Spec.ActiveDeadlineSeconds = 60
	refused(t, "mallory's change to alice's pod", r.review(upd, changed, pod), admission.CheckWorkloadGrant)

	// An exception is a workload grant too: alice's exception lets gpu run under runc for her pods.
	r.grant("research-runtime-exception", "k8s:dev/research/gpu", "alice")
	gpu := compliant("gpu-0", "gpu")
	rc2 := "runc"
	gpu.Spec.RuntimeClassName = &rc2
	resp = create(user("oidc:mallory"), gpu)
	refused(t, "mallory's runc pod under gpu", resp, admission.CheckWorkloadGrant)
	if !strings.Contains(resp.Result.Message, "baseline.runtime-class") {
		t.Fatalf("the refusal does not say which exception:\n%s", resp.Result.Message)
	}
	allowed(t, "alice's runc pod under gpu", create(user("oidc:alice"), gpu))
	allowed(t, "the job controller's runc pod under gpu", create(user("system:serviceaccount:kube-system:job-controller"), gpu))
	// Mallory's own grant for the workload lets her deploy it.
	r.grant("weights-reader-frontier-7", evaluator, "mallory")
	allowed(t, "mallory's pod under her own grant", create(user("oidc:mallory"), pod))
}

// objects is the cluster as the webhook reads it, from maps keyed namespace/name.
type objects struct {
	clusterWith
	pods      map[string]*corev1.Pod
	services  map[string]*corev1.Service
	endpoints map[string][]string
	pvs       map[string]*corev1.PersistentVolume
	pvcs      map[string]*corev1.PersistentVolumeClaim
	snapshots map[string]string // the claim each snapshot was taken of
}

func notFound(resource, name string) error {
	return apierrors.NewNotFound(corev1.Resource(resource), name)
}

func (o *objects) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	if p, ok := o.pods[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, notFound("pods", name)
}
func (o *objects) NetworkPolicies(ns string) ([]*networkingv1.NetworkPolicy, error) {
	return o.clusterWith[ns], nil
}
func (o *objects) Service(_ context.Context, ns, name string) (*corev1.Service, error) {
	if s, ok := o.services[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, notFound("services", name)
}
func (o *objects) EndpointPods(_ context.Context, ns, name string) ([]string, error) {
	return o.endpoints[ns+"/"+name], nil
}
func (o *objects) Pods(_ context.Context, ns string, sel labels.Selector) ([]corev1.Pod, error) {
	var out []corev1.Pod
	for _, p := range o.pods {
		if p.Namespace == ns && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, *p)
		}
	}
	return out, nil
}
func (o *objects) PersistentVolume(_ context.Context, name string) (*corev1.PersistentVolume, error) {
	if pv, ok := o.pvs[name]; ok {
		return pv, nil
	}
	return nil, notFound("persistentvolumes", name)
}
func (o *objects) PersistentVolumeClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	if c, ok := o.pvcs[ns+"/"+name]; ok {
		return c, nil
	}
	return nil, notFound("persistentvolumeclaims", name)
}
func (o *objects) VolumeSnapshotSource(_ context.Context, ns, name string) (string, error) {
	if c, ok := o.snapshots[ns+"/"+name]; ok {
		return c, nil
	}
	return "", notFound("volumesnapshots", name)
}
