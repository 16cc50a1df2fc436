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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/policy"
)

// Keeper keeps the default-deny egress policy in every governed namespace: created when a
// namespace appears, restored (and reported) when deleted or edited.
type Keeper struct {
	Client kubernetes.Interface
	Policy func() *policy.Policy
	Record func(ctx context.Context, e audit.Event) error
	Log    *slog.Logger
	Now    func() time.Time
	Resync time.Duration

	once    sync.Once
	trigger chan struct{}
	ns      corelisters.NamespaceLister
	np      netlisters.NetworkPolicyLister
	seen    map[string]bool // namespaces whose policy this keeper has created or found intact
}

func (k *Keeper) init() {
	k.once.Do(func() {
		k.trigger = make(chan struct{}, 1)
		k.seen = map[string]bool{}
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
	}
	return errors.Join(errs...)
}

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
	if k.Record == nil {
		return
	}
	if err := k.Record(ctx, audit.Event{Code: code, Class: audit.ClassEntityManagement, Activity: audit.ActivityUpdate, ActivityName: "Update",
		Severity: sev, Time: k.Now(), Actor: "rampart", Message: msg, Details: map[string]any{"namespace": ns, "network_policy": Name}}); err != nil {
		k.Log.Error("kube netpol: cannot record in the ledger", "err", err, "message", msg)
	}
}
