// Package evict ends the pods that use protected data once the grant that let them ends: a pod
// admitted because its service account held a grant to read the weights keeps its mount for
// as long as it runs, so when the grant expires or is revoked (or its holder is disabled) the
// pod must go, as the grant's RoleBindings do (invariant 2: materialised side effects are
// removed within seconds).
//
// The Evictor watches pods and compares each pod of a governed namespace with the decision
// engine: a pod that references an object holding a catalogue resource (the references
// admission.ProtectedVolumes finds: volumes, projected and inline CSI sources, env) and whose
// service account may no longer read that resource is deleted, and the deletion is recorded
// (kube.pod.deleted, High). It is state-driven, not event-driven, so a pod is judged the same
// way whichever replica, restart or missed notice came first: it runs when the apiserver
// reports a pod change, when told a grant changed (Trigger), at the instant the next grant
// expires, and every Resync (1 s) in any case.
//
// Deleted, not evicted: the Eviction API honours PodDisruptionBudgets and answers 429 while one
// forbids the disruption, for as long as it does; a security revocation does not wait for a
// budget. The pods are deleted with a 1-second grace period (not the pod's own, 30 s by
// default, during which it would keep reading), preconditioned on their UID so that a pod
// re-created under the same name is judged afresh. A controller that re-creates them is
// refused by the admission webhook while no grant covers them.
//
// Failing closed, and not destructively: while the decision engine cannot be trusted (the
// store is unreachable) no pod is deleted on its word; revocations made during the outage take
// effect when it ends. Pods in namespaces that are not governed (kube-*, exempt_namespaces) are
// left alone, as the webhook leaves them. A pod already terminating or finished is skipped.
package evict

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/authz"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/podsec"
	"rampart.dev/rampart/policy"
)

// DefaultResync is how often a full pass runs when nothing else woke the Evictor.
const DefaultResync = time.Second

// GracePeriod is the grace period the pods are deleted with.
const GracePeriod = time.Second

// Evictor deletes the pods whose grant to protected data has ended. Create it with its fields
// set, then Run.
type Evictor struct {
	Client kubernetes.Interface
	// Policy returns the policy in force (protected objects, governed namespaces).
	Policy func() *policy.Policy
	// Decide answers whether a pod's service account may read a resource now
	// (authz.Index.Check): it decides expiry at the instant it is asked.
	Decide func(authz.Query) authz.Decision
	// Grants returns the active grants (authz.Index.ActiveGrants); the Evictor wakes at the
	// instant the next one expires. Nil: it wakes every Resync only.
	Grants func() ([]authz.GrantInfo, error)
	// Record appends a ledger entry.
	Record func(ctx context.Context, e audit.Event) error
	Now    func() time.Time
	Log    *slog.Logger
	Resync time.Duration

	once    sync.Once
	trigger chan struct{}
	pods    corelisters.PodLister
}

func (e *Evictor) init() {
	e.once.Do(func() {
		e.trigger = make(chan struct{}, 1)
		if e.Now == nil {
			e.Now = time.Now
		}
		if e.Log == nil {
			e.Log = slog.New(slog.DiscardHandler)
		}
		if e.Resync <= 0 {
			e.Resync = DefaultResync
		}
	})
}

// Trigger asks for a pass now (call it after a grant changed).
func (e *Evictor) Trigger() {
	e.init()
	select {
	case e.trigger <- struct{}{}:
	default:
	}
}

// Run watches pods and deletes those whose grant has ended until ctx ends. It returns an error
// only if the watch cannot start.
func (e *Evictor) Run(ctx context.Context) error {
	e.init()
	f := informers.NewSharedInformerFactory(e.Client, 10*time.Minute)
	inf := f.Core().V1().Pods()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { e.Trigger() },
		UpdateFunc: func(any, any) { e.Trigger() },
	}); err != nil {
		return err
	}
	e.pods = inf.Lister()
	f.Start(ctx.Done())
	defer f.Shutdown()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for typ, ok := range f.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			return fmt.Errorf("kube pods: the watch of %v did not start within a minute (is the apiserver reachable, and may Rampart list and watch pods?)", typ)
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-e.trigger:
		case <-timer.C:
		}
		if err := e.Reconcile(ctx); err != nil && ctx.Err() == nil {
			e.Log.Error("kube pods: revoke", "err", err)
		}
		wait := e.Resync
		if next := e.nextExpiry(); !next.IsZero() {
			// A moment past the instant, so that the decision made then is past it too.
			wait = min(wait, max(next.Sub(e.Now())+time.Millisecond, 0))
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

// nextExpiry is when the next active grant ends (zero if none, or unknown).
func (e *Evictor) nextExpiry() time.Time {
	if e.Grants == nil {
		return time.Time{}
	}
	grants, err := e.Grants()
	if err != nil {
		return time.Time{}
	}
	now := e.Now()
	var next time.Time
	for _, g := range grants {
		if g.ExpiresAt.After(now) && (next.IsZero() || g.ExpiresAt.Before(next)) {
			next = g.ExpiresAt
		}
	}
	return next
}

// Reconcile makes one pass over the pods the watch holds; Run must have started the watch.
func (e *Evictor) Reconcile(ctx context.Context) error {
	e.init()
	if e.pods == nil {
		return errors.New("kube pods: Reconcile before Run: no watch of pods to judge")
	}
	pol := e.Policy()
	s := pol.Kubernetes()
	pods, err := e.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, pod := range pods {
		if !netpol.Governed(pod.Namespace, s.Admission.ExemptNamespaces) || pod.DeletionTimestamp != nil ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		vs, known := Unauthorized(pod, pol, e.Decide)
		if !known || len(vs) == 0 {
			continue
		}
		if err := e.delete(ctx, pod, vs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Unauthorized returns the references pod makes to protected objects that its service account
// may no longer read, as admission would refuse them now. known is false when the decision
// engine could not be trusted for one of them: then nothing is to be done on its word.
func Unauthorized(pod *corev1.Pod, pol *policy.Policy, decide func(authz.Query) authz.Decision) (vs []podsec.Violation, known bool) {
	known = true
	careful := func(q authz.Query) authz.Decision {
		d := decide(q)
		if d.Unavailable {
			known = false
		}
		return d
	}
	wl := podsec.Workload{Kind: "Pod", Meta: &pod.ObjectMeta, PodMeta: &pod.ObjectMeta, Spec: &pod.Spec, MetaPath: "metadata", SpecPath: "spec"}
	vs = admission.ProtectedVolumes(wl, pod.Namespace, pol, pol.Kubernetes(), careful)
	if !known {
		return nil, false
	}
	return vs, true
}

func (e *Evictor) delete(ctx context.Context, pod *corev1.Pod, vs []podsec.Violation) error {
	uid, grace := pod.UID, int64(GracePeriod/time.Second)
	err := e.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already (another replica), or a new pod of that name: judged next pass
	}
	if err != nil {
		return fmt.Errorf("delete pod %s/%s, whose grant to protected data has ended: %w", pod.Namespace, pod.Name, err)
	}
	var fields []string
	for _, v := range vs {
		fields = append(fields, v.Field)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	msg := fmt.Sprintf("deleted pod %s/%s: it uses protected data its service account %s may no longer read (%s)", pod.Namespace, pod.Name, sa, vs[0].Message)
	if e.Record != nil {
		if err := e.Record(ctx, audit.Event{Code: "kube.pod.deleted", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityRead,
			ActivityName: "Revoke Privileges", Severity: audit.SeverityHigh, Time: e.Now(), Actor: "rampart", Message: msg,
			Details: map[string]any{"namespace": pod.Namespace, "pod": pod.Name, "uid": string(pod.UID), "service_account": sa,
				"fields": strings.Join(fields, ", ")}}); err != nil {
			e.Log.Error("kube pods: cannot record in the ledger", "err", err, "message", msg)
		}
	}
	e.Log.Warn("kube pods: deleted a pod whose grant ended", "namespace", pod.Namespace, "pod", pod.Name)
	return nil
}
