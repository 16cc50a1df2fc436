package netpol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Keeper keeps the default-deny egress policy in every governed namespace: created when a
// namespace appears, restored (and reported) when deleted or edited. The other NetworkPolicies
// of a governed namespace that widen egress (Widens) without an approved exception are drift,
// handled as RBAC drift is: with kubernetes.drift: enforce each is deleted (and the deletion
// recorded), with drift: report each is recorded once. The admission webhook refuses them;
// the keeper finds those made before it saw NetworkPolicies, while the namespace was exempt, or
// under an exception that has since ended.
type Keeper struct {
	Client kubernetes.Interface
	Policy func() *policy.Policy
	Record func(ctx context.Context, e audit.Event) error
	// RecordOnce appends a ledger entry unless one was appended under key before, by any
	// replica (sqlstore.DB.AppendOnce); widening policies in report mode are recorded through
	// it, once per policy. Nil: through Record, once per policy per process.
	RecordOnce func(ctx context.Context, key string, e audit.Event) error
	// Excepted reports whether an approved exception lets the NetworkPolicy name of namespace
	// ns widen egress (admission.NetworkPolicyException); known is false when that cannot be
	// decided now (the decision engine is unavailable), and the policy is left for a later
	// pass. Nil: no exception covers any policy.
	Excepted func(ns, name string) (excepted, known bool)
	Log      *slog.Logger
	Now      func() time.Time
	Resync   time.Duration

	once    sync.Once
	trigger chan struct{}
	ns      corelisters.NamespaceLister
	np      netlisters.NetworkPolicyLister
	seen    map[string]bool    // namespaces whose policy this keeper has created or found intact
	widened map[types.UID]bool // widening policies already recorded (report mode)
}

func (k *Keeper) init() {
	k.once.Do(func() {
		k.trigger = make(chan struct{}, 1)
		k.seen, k.widened = map[string]bool{}, map[types.UID]bool{}
		if k.Log == nil {
			k.Log = slog.New(slog.DiscardHandler)
		}
		if k.Now == nil {
			k.Now = time.Now
		}
		if k.Resync <= 0 {
			k.Resync = 10 * time.Second
		}
	})
}

func (k *Keeper) nudge() {
	select {
	case k.trigger <- struct{}{}:
	default:
	}
}

// Run watches namespaces and NetworkPolicies and keeps the policies until ctx ends.
func (k *Keeper) Run(ctx context.Context) error {
	k.init()
	f := informers.NewSharedInformerFactory(k.Client, 10*time.Minute)
	nsInf, npInf := f.Core().V1().Namespaces(), f.Networking().V1().NetworkPolicies()
	h := cache.ResourceEventHandlerFuncs{AddFunc: func(any) { k.nudge() }, UpdateFunc: func(any, any) { k.nudge() }, DeleteFunc: func(any) { k.nudge() }}
	for _, inf := range []cache.SharedIndexInformer{nsInf.Informer(), npInf.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	k.ns, k.np = nsInf.Lister(), npInf.Lister()
	f.Start(ctx.Done())
	defer f.Shutdown()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for typ, ok := range f.WaitForCacheSync(sctx.Done()) {
		if !ok {
			return fmt.Errorf("kube netpol: the watch of %v did not start within a minute", typ)
		}
	}
	t := time.NewTicker(k.Resync)
	defer t.Stop()
	for {
		if err := k.Reconcile(ctx); err != nil && ctx.Err() == nil {
			k.Log.Error("kube netpol reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-k.trigger:
		case <-t.C:
		}
	}
}

// Reconcile makes one pass over every namespace.
func (k *Keeper) Reconcile(ctx context.Context) error {
	k.init()
	s := k.Policy().Kubernetes()
	namespaces, err := k.ns.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range namespaces {
		if !Governed(ns.Name, s.Admission.ExemptNamespaces) || ns.DeletionTimestamp != nil {
			continue
		}
		have, err := k.np.NetworkPolicies(ns.Name).Get(Name)
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			have = nil
		}
		done, err := Ensure(ctx, k.Client, ns.Name, have, s.Egress)
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case done == Replaced:
			k.record(ctx, "kube.netpol.restored", audit.SeverityHigh, ns.Name, fmt.Sprintf("restored the default-deny egress NetworkPolicy %s/%s: it had been edited", ns.Name, Name))
		case done == Created && k.seen[ns.Name]:
			k.record(ctx, "kube.netpol.restored", audit.SeverityHigh, ns.Name, fmt.Sprintf("restored the default-deny egress NetworkPolicy %s/%s: it had been deleted", ns.Name, Name))
		case done == Created:
			k.record(ctx, "kube.netpol.created", audit.SeverityLow, ns.Name, fmt.Sprintf("created the default-deny egress NetworkPolicy %s/%s", ns.Name, Name))
		}
		k.seen[ns.Name] = true
		errs = append(errs, k.widening(ctx, ns.Name, s)...)
	}
	return errors.Join(errs...)
}

// widening removes (drift: enforce) or reports (drift: report) the NetworkPolicies of
// namespace ns that widen egress without an approved exception.
func (k *Keeper) widening(ctx context.Context, ns string, s policy.KubernetesSettings) []error {
	nps, err := k.np.NetworkPolicies(ns).List(labels.Everything())
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, np := range nps {
		if np.Name == Name || np.DeletionTimestamp != nil {
			continue // Rampart's own is restored by Ensure when edited
		}
		ws := Widens(np, s.Egress)
		if len(ws) == 0 {
			continue
		}
		if k.Excepted != nil {
			excepted, known := k.Excepted(ns, np.Name)
			if excepted || !known {
				continue
			}
		}
		details := map[string]any{"namespace": ns, "network_policy": np.Name, "uid": string(np.UID), "field": ws[0].Field}
		what := fmt.Sprintf("NetworkPolicy %s/%s %s", ns, np.Name, ws[0].Message)
		if s.Drift == policy.DriftEnforce {
			uid := np.UID
			err := k.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			switch {
			case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
				// Gone already, or replaced since it was judged: the next pass judges the new one.
			case err != nil:
				errs = append(errs, fmt.Errorf("delete the NetworkPolicy %s/%s that widens egress: %w", ns, np.Name, err))
			default:
				k.recordEvent(ctx, "", k.event("kube.netpol.removed", audit.ActivityDelete, "Delete", audit.SeverityHigh,
					"deleted "+what+" (drift: enforce; an approved exception to "+checkEgressWidened+" would have kept it)", details))
			}
			continue
		}
		if k.widened[np.UID] {
			continue
		}
		e := k.event("kube.netpol.widened", audit.ActivityOther, "Other", audit.SeverityHigh,
			what+" (drift: report; set kubernetes.drift: enforce to remove such policies, or approve an exception to "+checkEgressWidened+" for it)", details)
		if err := k.recordEvent(ctx, "kube.netpol.widened/"+string(np.UID), e); err != nil {
			continue // not remembered: the next pass tries again
		}
		k.widened[np.UID] = true
	}
	return errs
}

// checkEgressWidened is admission.CheckEgressWidened (admission imports this package).
const checkEgressWidened = "rampart.egress-widened"

// Outcome is what Ensure did.
type Outcome int

// Ensure's outcomes.
const (
	Unchanged Outcome = iota // the policy was there and intact (or another writer just made it)
	Created                  // it was missing
	Replaced                 // it had been edited
)

// Ensure makes namespace's default-deny policy the rendered one: have is the policy as it
// stands (nil when there is none). The keeper and rampart kube install both use it.
func Ensure(ctx context.Context, c kubernetes.Interface, namespace string, have *networkingv1.NetworkPolicy, s policy.NetworkSettings) (Outcome, error) {
	want := Render(namespace, s)
	npc := c.NetworkingV1().NetworkPolicies(namespace)
	switch {
	case have == nil:
		_, err := npc.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return Unchanged, nil
		}
		if err != nil {
			return Unchanged, fmt.Errorf("create %s/%s: %w", namespace, Name, err)
		}
		return Created, nil
	case Intact(have, s):
		return Unchanged, nil
	default:
		want.ResourceVersion = have.ResourceVersion
		_, err := npc.Update(ctx, want, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return Unchanged, nil // another writer (a replica) changed it first; the next pass looks again
		}
		if err != nil {
			return Unchanged, fmt.Errorf("restore %s/%s: %w", namespace, Name, err)
		}
		return Replaced, nil
	}
}

func (k *Keeper) record(ctx context.Context, code string, sev int, ns, msg string) {
	_ = k.recordEvent(ctx, "", k.event(code, audit.ActivityUpdate, "Update", sev, msg, map[string]any{"namespace": ns, "network_policy": Name}))
}

func (k *Keeper) event(code string, activity int, name string, sev int, msg string, details map[string]any) audit.Event {
	return audit.Event{Code: code, Class: audit.ClassEntityManagement, Activity: activity, ActivityName: name,
		Severity: sev, Time: k.Now(), Actor: "rampart", Message: msg, Details: details}
}

// recordEvent appends e, through RecordOnce under key when both are set; a failure is logged
// and returned.
func (k *Keeper) recordEvent(ctx context.Context, key string, e audit.Event) error {
	var err error
	switch {
	case key != "" && k.RecordOnce != nil:
		err = k.RecordOnce(ctx, key, e)
	case k.Record != nil:
		err = k.Record(ctx, e)
	}
	if err != nil {
		k.Log.Error("kube netpol: cannot record in the ledger", "err", err, "message", e.Message)
	}
	return err
}
