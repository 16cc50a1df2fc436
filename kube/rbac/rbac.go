// Package rbac makes Kubernetes RBAC follow Rampart's grants: while a grant of a role with a
// kubernetes section is active, its subject is bound to the role's ClusterRole; when the grant
// expires or is revoked, the binding is deleted. No other standing path to a protected
// ClusterRole is allowed to exist unnoticed.
//
// The reconciler compares what should exist (the active grants, from the decision engine's
// index) with what does (RoleBindings, ClusterRoleBindings and Rampart's own ClusterRoles, from
// informers: a watch of the apiserver) and closes the difference:
//
//   - a binding per (grant, namespace), named rampart-<grant id>, labelled
//     rampart.dev/managed-by=rampart and rampart.dev/grant=<grant id>, annotated with the grant's
//     id, role, subject and expiry;
//   - bindings with Rampart's label but no active grant, expired by their own annotation, or
//     altered (another subject, another role) are deleted (an altered one is then re-created);
//   - roles given as rules become ClusterRoles named rampart:<role>, kept equal to the policy;
//   - a grant is bound only while its role's kubernetes section is the one the grant was
//     approved for (invariant 9): when the section changes, the bindings of grants approved
//     before are deleted (their Rampart permissions stay, narrowed to the new definition) and
//     renewing a grant binds it under the new section. Bindings are deleted before ClusterRoles
//     are updated and created after, so no binding ever points at rules its grant was not
//     approved for;
//   - a binding to a protected ClusterRole (policy settings kubernetes.protected_cluster_roles,
//     and every rampart:<role> ClusterRole) that Rampart did not make is drift: a ledger
//     entry, and in enforce mode it is deleted. The apiserver's own bootstrap bindings are
//     known by name and content, not by a label anyone can set (drift.go). A
//     ClusterRoleBinding that grants nodes/proxy, which reaches the kubelet past admission, is
//     reported in either mode and never deleted.
//
// It runs when the apiserver reports a change to any binding, when told a grant changed
// (Trigger), at the instant the next grant or binding expires, and every Resync (1 s) in any
// case, so an expired or revoked grant's binding is gone within about a second, and within two
// even when another replica made the change.
//
// Failing closed: when the index cannot be trusted (the store is unreachable), no binding is
// created or repaired, and bindings are still deleted at the expiry written on them; revocations
// made during the outage take effect when it ends. Rampart deletes nothing it did not create
// except drift in enforce mode.
package rbac

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/policy"
)

// Labels and annotations on the objects Rampart manages.
const (
	LabelManagedBy      = "rampart.dev/managed-by"
	LabelGrant          = "rampart.dev/grant"
	ManagedBy           = "rampart"
	AnnotationGrantID   = "rampart.dev/grant-id"
	AnnotationRole      = "rampart.dev/role"
	AnnotationSubject   = "rampart.dev/subject"
	AnnotationExpiresAt = "rampart.dev/expires-at"
	// ClusterRolePrefix names the ClusterRoles Rampart makes from a role's rules.
	ClusterRolePrefix = "rampart:"
)

// DefaultResync is how often a full reconcile runs when nothing else woke the reconciler.
const DefaultResync = time.Second

// Reconciler keeps RBAC equal to the active grants. Create it with its fields set, then Run.
type Reconciler struct {
	Client kubernetes.Interface
	// Policy returns the policy in force (roles' kubernetes sections, settings).
	Policy func() *policy.Policy
	// Grants returns the active grants, or an error when they cannot be trusted
	// (authz.Index.ActiveGrants).
	Grants func() ([]authz.GrantInfo, error)
	// Record appends a ledger entry.
	Record func(ctx context.Context, e audit.Event) error
	// RecordOnce appends a ledger entry unless one was appended under key before, by this
	// replica or any other sharing the store, before or after a restart
	// (sqlstore.DB.AppendOnce). Drift in report mode is recorded through it, once per binding.
	// Nil: through Record, once per binding per process.
	RecordOnce func(ctx context.Context, key string, e audit.Event) error
	Now        func() time.Time
	Log        *slog.Logger
	Resync     time.Duration

	trigger chan struct{}
	once    sync.Once

	rb  rbaclisters.RoleBindingLister
	crb rbaclisters.ClusterRoleBindingLister
	cr  rbaclisters.ClusterRoleLister

	mu         sync.Mutex
	reported   map[types.UID]bool // drift already recorded, by binding uid
	staleRoles map[string]bool    // ClusterRoles of removed roles that could not be deleted, said once
	stale      bool               // the last pass found the index untrustworthy
}

func (r *Reconciler) init() {
	r.once.Do(func() {
		r.trigger = make(chan struct{}, 1)
		r.reported, r.staleRoles = map[types.UID]bool{}, map[string]bool{}
		if r.Now == nil {
			r.Now = time.Now
		}
		if r.Log == nil {
			r.Log = slog.New(slog.DiscardHandler)
		}
		if r.Resync <= 0 {
			r.Resync = DefaultResync
		}
	})
}

// Trigger asks for a reconcile now (call it after a grant changed).
func (r *Reconciler) Trigger() {
	r.init()
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run watches the cluster and reconciles until ctx ends. It returns an error only if the
// watches cannot start (the apiserver is unreachable or refuses Rampart's credentials).
func (r *Reconciler) Run(ctx context.Context) error {
	r.init()
	f := informers.NewSharedInformerFactory(r.Client, 10*time.Minute)
	rbInf, crbInf, crInf := f.Rbac().V1().RoleBindings(), f.Rbac().V1().ClusterRoleBindings(), f.Rbac().V1().ClusterRoles()
	nudge := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.Trigger() },
		UpdateFunc: func(any, any) { r.Trigger() },
		DeleteFunc: func(any) { r.Trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{rbInf.Informer(), crbInf.Informer(), crInf.Informer()} {
		if _, err := inf.AddEventHandler(nudge); err != nil {
			return err
		}
	}
	r.rb, r.crb, r.cr = rbInf.Lister(), crbInf.Lister(), crInf.Lister()
	f.Start(ctx.Done())
	defer f.Shutdown()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for typ, ok := range f.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			return fmt.Errorf("kube rbac: the watch of %v did not start within a minute (is the apiserver reachable, and may Rampart list and watch RBAC objects?)", typ)
		}
	}
	r.Log.Info("kube rbac reconciler running")
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
		case <-timer.C:
		}
		next, err := r.Reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			r.Log.Error("kube rbac reconcile", "err", err)
		}
		wait := r.Resync
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(r.Now()), 0))
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// desired is a binding that should exist.
type desired struct {
	namespace string // "" for a ClusterRoleBinding
	name      string
	labels    map[string]string
	annots    map[string]string
	subject   rbacv1.Subject
	roleRef   rbacv1.RoleRef
	expires   time.Time
	grant     authz.GrantInfo
}

func (d desired) key() string { return d.namespace + "/" + d.name }

// Reconcile runs one pass and returns when the next binding expires (zero if none).
func (r *Reconciler) Reconcile(ctx context.Context) (time.Time, error) {
	r.init()
	if r.rb == nil {
		return time.Time{}, errors.New("kube rbac: Reconcile before Run")
	}
	now := r.Now()
	pol := r.Policy()
	settings := pol.Kubernetes()
	grants, gerr := r.Grants()
	r.mu.Lock()
	wasStale := r.stale
	r.stale = gerr != nil
	r.mu.Unlock()
	if gerr != nil && !wasStale {
		r.Log.Error("kube rbac: grants cannot be trusted; creating nothing, deleting at expiry only", "err", gerr)
	}
	var errs []error
	var next time.Time
	soonest := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}

	want := map[string]desired{}
	repinned := map[string]string{} // grant id → role, for grants whose role's kubernetes section changed
	if gerr == nil {
		for _, g := range grants {
			if role, ok := pol.Role(g.Role); ok && g.Definition != nil && !g.Definition.SameKubernetes(role.Kubernetes) {
				repinned[g.ID] = g.Role
				continue
			}
			for _, d := range r.bindingsFor(pol, settings, g) {
				want[d.key()] = d
				soonest(d.expires)
			}
		}
	}

	// What exists: every binding carrying Rampart's label.
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	have := map[string]metav1.Object{}
	rbs, _ := r.rb.List(managed)
	for _, b := range rbs {
		have[b.Namespace+"/"+b.Name] = b
	}
	crbs, _ := r.crb.List(managed)
	for _, b := range crbs {
		have["/"+b.Name] = b
	}
	for key, obj := range have {
		exp, perr := time.Parse(time.RFC3339Nano, obj.GetAnnotations()[AnnotationExpiresAt])
		d, wanted := want[key]
		reason := ""
		switch {
		case perr != nil:
			reason = "it carries no readable expiry"
		case !now.Before(exp):
			reason = "its grant expired at " + exp.UTC().Format(time.RFC3339)
		case gerr != nil:
			soonest(exp)
			continue // cannot tell revoked from active: keep until the written expiry
		case !wanted && repinned[obj.GetAnnotations()[AnnotationGrantID]] != "":
			reason = "the kubernetes section of role " + repinned[obj.GetAnnotations()[AnnotationGrantID]] +
				" changed since its grant was approved; a renewal approved under the new section binds it again"
		case !wanted:
			reason = "its grant is no longer active (revoked, ended or unknown)"
		case !sameBinding(obj, d):
			reason = "it was altered (subject, role or annotations differ from the grant)"
		default:
			continue
		}
		if done, err := r.deleteBinding(ctx, obj); err != nil || !done {
			errs = append(errs, err)
			continue
		}
		r.record(ctx, "kube.binding.delete", audit.ActivityRead, "Revoke Privileges", audit.SeverityLow, obj,
			fmt.Sprintf("deleted %s: %s", describe(obj), reason), nil)
	}
	// ClusterRoles change only once the bindings that must go are gone, and before new ones
	// are made: neither an old grant nor a new one ever binds rules it was not approved for.
	if gerr == nil {
		errs = append(errs, r.syncClusterRoles(ctx, pol)...)
	}
	for key, d := range want {
		if obj, ok := have[key]; ok && sameBinding(obj, d) {
			continue
		}
		// (An altered binding was deleted above, synchronously: its name is free again.)
		if done, err := r.createBinding(ctx, d); err != nil || !done {
			errs = append(errs, err)
			continue
		}
		r.record(ctx, "kube.binding.create", audit.ActivityCreate, "Assign Privileges", audit.SeverityLow, nil,
			fmt.Sprintf("bound %s %s to %s %s for grant %s until %s", d.subject.Kind, d.subject.Name, d.roleRef.Kind, d.roleRef.Name, d.grant.ID, d.expires.UTC().Format(time.RFC3339)),
			map[string]any{"grant_id": d.grant.ID, "role": d.grant.Role, "namespace": d.namespace, "binding": d.name})
	}
	errs = append(errs, r.drift(ctx, settings)...)
	return next, errors.Join(errs...)
}

// bindingsFor returns the bindings grant g calls for in this cluster.
func (r *Reconciler) bindingsFor(pol *policy.Policy, s policy.KubernetesSettings, g authz.GrantInfo) []desired {
	role, ok := pol.Role(g.Role)
	if !ok || role.Kubernetes == nil {
		return nil
	}
	subj, ok := SubjectFor(g.Subject, s)
	if !ok {
		return nil
	}
	ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Kubernetes.ClusterRole}
	if ref.Name == "" {
		ref.Name = ClusterRolePrefix + role.Name
	}
	name := BindingName(g.ID)
	lbl := map[string]string{LabelManagedBy: ManagedBy, LabelGrant: labelValue(g.ID)}
	ann := map[string]string{AnnotationGrantID: g.ID, AnnotationRole: g.Role, AnnotationSubject: g.Subject,
		AnnotationExpiresAt: g.ExpiresAt.UTC().Format(time.RFC3339Nano)}
	base := desired{name: name, labels: lbl, annots: ann, subject: subj, roleRef: ref, expires: g.ExpiresAt, grant: g}
	if len(role.Kubernetes.Namespaces) == 0 {
		return []desired{base}
	}
	out := make([]desired, 0, len(role.Kubernetes.Namespaces))
	for _, ns := range role.Kubernetes.Namespaces {
		d := base
		d.namespace = ns
		out = append(out, d)
	}
	return out
}

// SubjectFor maps a Rampart subject to an RBAC subject in the cluster s describes: a person to a
// User (with the configured prefix), k8s:<cluster>/<ns>/<sa> of this cluster to a
// ServiceAccount. Other subjects (service tokens, other clusters' workloads) have no binding.
func SubjectFor(subject string, s policy.KubernetesSettings) (rbacv1.Subject, bool) {
	switch policy.SubjectKind(subject) {
	case policy.KindWorkload:
		parts := strings.Split(strings.TrimPrefix(subject, "k8s:"), "/")
		if len(parts) != 3 || (s.Cluster != "" && parts[0] != s.Cluster) {
			return rbacv1.Subject{}, false
		}
		return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: parts[1], Name: parts[2]}, true
	case policy.KindUser:
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: s.UserPrefix + subject}, true
	}
	return rbacv1.Subject{}, false
}

// BindingName is the name of a grant's bindings: rampart-<grant id>, in the characters
// Kubernetes allows.
func BindingName(grantID string) string { return "rampart-" + labelValue(grantID) }

func labelValue(id string) string {
	b := []byte(strings.ToLower(id))
	for i, c := range b {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

func sameBinding(obj metav1.Object, d desired) bool {
	if !maps.Equal(obj.GetAnnotations(), d.annots) && !annotationsInclude(obj.GetAnnotations(), d.annots) {
		return false
	}
	var subjects []rbacv1.Subject
	var ref rbacv1.RoleRef
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		subjects, ref = b.Subjects, b.RoleRef
	case *rbacv1.ClusterRoleBinding:
		subjects, ref = b.Subjects, b.RoleRef
	}
	return len(subjects) == 1 && reflect.DeepEqual(subjects[0], d.subject) && ref == d.roleRef
}

// annotationsInclude: the apiserver or other tools may add annotations; ours must be intact.
func annotationsInclude(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// createBinding creates d; it reports false when d already existed (made by another replica,
// or not yet in the watch cache), which is not an error and not recorded again.
func (r *Reconciler) createBinding(ctx context.Context, d desired) (bool, error) {
	meta := metav1.ObjectMeta{Name: d.name, Namespace: d.namespace, Labels: d.labels, Annotations: d.annots}
	var err error
	if d.namespace == "" {
		_, err = r.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{d.subject}, RoleRef: d.roleRef}, metav1.CreateOptions{})
	} else {
		_, err = r.Client.RbacV1().RoleBindings(d.namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{d.subject}, RoleRef: d.roleRef}, metav1.CreateOptions{})
	}
	if apierrors.IsAlreadyExists(err) {
		return false, nil // the next pass compares it with what it should be
	}
	if err != nil {
		return false, fmt.Errorf("create binding %s for grant %s: %w", d.key(), d.grant.ID, err)
	}
	return true, nil
}

// deleteBinding deletes exactly obj; it reports false when obj was already gone (deleted by
// another replica, or the watch cache is behind), which is not recorded again.
func (r *Reconciler) deleteBinding(ctx context.Context, obj metav1.Object) (bool, error) {
	// Preconditions: delete exactly the object that was judged, not one re-created since.
	uid := obj.GetUID()
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	var err error
	if obj.GetNamespace() == "" {
		err = r.Client.RbacV1().ClusterRoleBindings().Delete(ctx, obj.GetName(), opts)
	} else {
		err = r.Client.RbacV1().RoleBindings(obj.GetNamespace()).Delete(ctx, obj.GetName(), opts)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", describe(obj), err)
	}
	return true, nil
}

// ManagedClusterRoles returns the ClusterRoles Rampart makes from the policy's roles that give
// rules (rampart:<role>), by name.
func ManagedClusterRoles(pol *policy.Policy) map[string][]rbacv1.PolicyRule {
	want := map[string][]rbacv1.PolicyRule{}
	for _, role := range pol.Roles() {
		if k := role.Kubernetes; k != nil && len(k.Rules) > 0 {
			var rules []rbacv1.PolicyRule
			for _, ru := range k.Rules {
				rules = append(rules, rbacv1.PolicyRule{APIGroups: orEmpty(ru.APIGroups), Resources: ru.Resources, Verbs: ru.Verbs, ResourceNames: ru.ResourceNames})
			}
			want[ClusterRolePrefix+role.Name] = rules
		}
	}
	return want
}

// syncClusterRoles keeps rampart:<role> ClusterRoles equal to the roles' rules, and removes
// those of roles no longer in the policy.
func (r *Reconciler) syncClusterRoles(ctx context.Context, pol *policy.Policy) []error {
	var errs []error
	want := ManagedClusterRoles(pol)
	have, _ := r.cr.List(labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}))
	seen := map[string]bool{}
	for _, cr := range have {
		if !strings.HasPrefix(cr.Name, ClusterRolePrefix) {
			continue // labelled as Rampart's by someone else: Rampart deletes only ClusterRoles it names
		}
		seen[cr.Name] = true
		rules, ok := want[cr.Name]
		switch {
		case !ok:
			err := r.Client.RbacV1().ClusterRoles().Delete(ctx, cr.Name, metav1.DeleteOptions{})
			switch {
			case apierrors.IsForbidden(err):
				// Rampart's own RBAC (rampart kube render rbac) names the ClusterRoles of the
				// policy it was rendered for; this one's role has left the policy, so no grant
				// binds it any more. Left for an administrator, and said once.
				r.mu.Lock()
				said := r.staleRoles[cr.Name]
				r.staleRoles[cr.Name] = true
				r.mu.Unlock()
				if !said {
					r.Log.Warn("kube rbac: the ClusterRole of a role no longer in the policy cannot be deleted with Rampart's permissions; nothing binds it, delete it by hand", "cluster_role", cr.Name, "err", err)
				}
			case err != nil && !apierrors.IsNotFound(err):
				errs = append(errs, fmt.Errorf("delete ClusterRole %s: %w", cr.Name, err))
			}
		case !reflect.DeepEqual(cr.Rules, rules):
			c := cr.DeepCopy()
			c.Rules = rules
			if _, err := r.Client.RbacV1().ClusterRoles().Update(ctx, c, metav1.UpdateOptions{}); err != nil {
				errs = append(errs, fmt.Errorf("update ClusterRole %s: %w", cr.Name, err))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if seen[name] {
			continue
		}
		_, err := r.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy}},
			Rules:      want[name],
		}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			errs = append(errs, fmt.Errorf("create ClusterRole %s: %w", name, err))
		}
	}
	return errs
}

func orEmpty(s []string) []string {
	if len(s) == 0 {
		return []string{""} // the core API group
	}
	return s
}

func describe(obj metav1.Object) string {
	var kind, sub, ref string
	switch b := obj.(type) {
	case *rbacv1.RoleBinding:
		kind, ref = "RoleBinding "+b.Namespace+"/"+b.Name, b.RoleRef.Kind+" "+b.RoleRef.Name
		sub = subjects(b.Subjects)
	case *rbacv1.ClusterRoleBinding:
		kind, ref = "ClusterRoleBinding "+b.Name, b.RoleRef.Kind+" "+b.RoleRef.Name
		sub = subjects(b.Subjects)
	}
	return fmt.Sprintf("%s (%s → %s)", kind, sub, ref)
}

func subjects(s []rbacv1.Subject) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = x.Kind + " " + x.Name
		if x.Namespace != "" {
			parts[i] = x.Kind + " " + x.Namespace + "/" + x.Name
		}
	}
	return strings.Join(parts, ", ")
}

func (r *Reconciler) record(ctx context.Context, code string, activity int, name string, sev int, obj metav1.Object, msg string, details map[string]any) {
	if r.Record == nil {
		return
	}
	if err := r.Record(ctx, r.event(code, activity, name, sev, obj, msg, details)); err != nil {
		r.Log.Error("kube rbac: cannot record in the ledger", "code", code, "err", err, "message", msg)
	}
}

// event is the ledger entry for an action on, or a finding about, obj.
func (r *Reconciler) event(code string, activity int, name string, sev int, obj metav1.Object, msg string, details map[string]any) audit.Event {
	if details == nil {
		details = map[string]any{}
	}
	if obj != nil {
		details["namespace"], details["binding"], details["uid"] = obj.GetNamespace(), obj.GetName(), string(obj.GetUID())
		if id := obj.GetAnnotations()[AnnotationGrantID]; id != "" {
			details["grant_id"] = id
		}
	}
	return audit.Event{Code: code, Class: audit.ClassUserAccessManagement, Activity: activity, ActivityName: name,
		Severity: sev, Time: r.Now(), Actor: "rampart", Message: msg, Details: details}
}
