package iac

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/kube/rbac"
)

// Drift states.
const (
	// DriftMissing: declared, absent from the cluster.
	DriftMissing = "missing"
	// DriftChanged: present, but applying the declaration would change it.
	DriftChanged = "changed"
	// DriftExtra: present in a managed namespace, declared nowhere.
	DriftExtra = "extra"
	// DriftInvalid: the apiserver refuses the declaration itself (it could not be applied).
	DriftInvalid = "invalid"
)

// DriftFinding is one object where the cluster differs from the repository.
type DriftFinding struct {
	State      string `json:"state"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	// Source is where the object is declared (empty for an extra object).
	Source Source `json:"source,omitzero"`
	// Fields are the paths that differ, for a changed object (never their values: a Secret's
	// would be its data).
	Fields  []string `json:"fields,omitempty"`
	Message string   `json:"message"`
}

// Object is "Kind namespace/name", or "Kind name" for a cluster-scoped object.
func (d DriftFinding) Object() string {
	if d.Namespace == "" {
		return d.Kind + " " + d.Name
	}
	return d.Kind + " " + d.Namespace + "/" + d.Name
}

// FieldManager is the field manager of Drift's dry-run applies.
const FieldManager = "rampart-iac-drift"

// extraKinds are the kinds Drift lists in each managed namespace to find objects nobody
// declared, beside the kinds the repository declares: what people deploy, and what grants
// access or reaches data.
var extraKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "pods"}, {Version: "v1", Resource: "services"}, {Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "secrets"}, {Version: "v1", Resource: "serviceaccounts"}, {Version: "v1", Resource: "persistentvolumeclaims"},
	{Group: "apps", Version: "v1", Resource: "deployments"}, {Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"}, {Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"}, {Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// DriftOptions configures Drift.
type DriftOptions struct {
	// DefaultNamespace is the namespace of namespaced objects that name none; "default" when
	// empty.
	DefaultNamespace string
}

// Drift compares the declared objects with the cluster cfg reaches. Each declared object is
// applied with server-side apply in dry-run (force, as FieldManager): the apiserver answers
// with the object as it would be after the apply (defaults filled, admission run, other
// managers' fields kept), and that is compared with the object it holds, leaving out what the
// server owns (status, managedFields, resourceVersion, generation). The namespaces of the
// declared objects are managed: objects there that nobody declared are extra, except what
// controllers make (an owner reference), what Kubernetes makes in every namespace (the default
// ServiceAccount, kube-root-ca.crt) and Rampart's own (its default-deny NetworkPolicy and its
// grants' RoleBindings, which its keeper and reconciler check). Drift writes nothing.
func Drift(ctx context.Context, cfg *rest.Config, objs []Object, o DriftOptions) ([]DriftFinding, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("iac: drift: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("iac: drift: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	defNS := cmp.Or(o.DefaultNamespace, "default")
	var out []DriftFinding
	declared := map[string]bool{} // gvr|ns|name
	managed := map[string]bool{}
	kinds := slices.Clone(extraKinds)
	for _, obj := range objs {
		gv, err := schema.ParseGroupVersion(obj.APIVersion)
		if err != nil {
			return nil, &DecodeError{Source: obj.Source, Reason: "apiVersion: " + err.Error()}
		}
		f := DriftFinding{APIVersion: obj.APIVersion, Kind: obj.Kind, Name: obj.Name, Source: obj.Source}
		m, err := mapper.RESTMapping(gv.WithKind(obj.Kind).GroupKind(), gv.Version)
		if err != nil {
			f.State, f.Message = DriftInvalid, "the cluster does not serve this kind: "+err.Error()
			out = append(out, f)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			f.Namespace = cmp.Or(obj.Namespace, defNS)
			ri = dyn.Resource(m.Resource).Namespace(f.Namespace)
			managed[f.Namespace] = true
			if !slices.Contains(kinds, m.Resource) {
				kinds = append(kinds, m.Resource)
			}
		}
		declared[m.Resource.String()+"|"+f.Namespace+"|"+obj.Name] = true
		live, err := ri.Get(ctx, obj.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			f.State, f.Message = DriftMissing, "declared, and not in the cluster"
			out = append(out, f)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("iac: drift: get %s: %w", f.Object(), err)
		}
		body, err := withNamespace(obj, f.Namespace)
		if err != nil {
			return nil, err
		}
		force := true
		want, err := ri.Patch(ctx, obj.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: FieldManager, Force: &force, DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err) {
				f.State, f.Message = DriftInvalid, "the apiserver refuses the declared object: "+err.Error()
				out = append(out, f)
				continue
			}
			return nil, fmt.Errorf("iac: drift: dry-run apply of %s: %w", f.Object(), err)
		}
		if paths := differ(comparable(live.Object), comparable(want.Object), ""); len(paths) > 0 {
			f.State, f.Fields = DriftChanged, paths
			f.Message = "applying the declaration would change " + strings.Join(paths, ", ")
			out = append(out, f)
		}
	}
	extra, err := extras(ctx, dyn, kinds, managed, declared)
	if err != nil {
		return nil, err
	}
	out = append(out, extra...)
	slices.SortStableFunc(out, func(a, b DriftFinding) int {
		return cmp.Or(strings.Compare(a.State, b.State), strings.Compare(a.Object(), b.Object()))
	})
	return out, nil
}

// withNamespace is the object's JSON with the namespace it is applied in.
func withNamespace(obj Object, ns string) ([]byte, error) {
	if ns == "" || obj.Namespace == ns {
		return obj.JSON, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(obj.JSON); err != nil {
		return nil, &DecodeError{Source: obj.Source, Reason: err.Error()}
	}
	u.SetNamespace(ns)
	return u.MarshalJSON()
}

// extras lists the objects of the managed namespaces that nobody declared.
func extras(ctx context.Context, dyn dynamic.Interface, kinds []schema.GroupVersionResource, managed, declared map[string]bool) ([]DriftFinding, error) {
	var out []DriftFinding
	nss := make([]string, 0, len(managed))
	for ns := range managed {
		nss = append(nss, ns)
	}
	sort.Strings(nss)
	for _, ns := range nss {
		for _, gvr := range kinds {
			list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue // a kind this cluster does not serve, or that cannot be listed
			}
			if err != nil {
				return nil, fmt.Errorf("iac: drift: list %s in %s: %w", gvr.Resource, ns, err)
			}
			for i := range list.Items {
				it := &list.Items[i]
				if declared[gvr.String()+"|"+ns+"|"+it.GetName()] || made(it) {
					continue
				}
				out = append(out, DriftFinding{State: DriftExtra, APIVersion: it.GetAPIVersion(), Kind: it.GetKind(), Namespace: ns, Name: it.GetName(),
					Message: "in a managed namespace, and declared nowhere in the repository"})
			}
		}
	}
	return out, nil
}

// made reports whether an undeclared object is one that something other than people made.
func made(u *unstructured.Unstructured) bool {
	if metav1.GetControllerOfNoCopy(u) != nil {
		return true
	}
	managedByRampart := u.GetLabels()[rbac.LabelManagedBy] == rbac.ManagedBy
	switch u.GetKind() {
	case "ServiceAccount":
		return u.GetName() == "default"
	case "ConfigMap":
		return u.GetName() == "kube-root-ca.crt"
	case "NetworkPolicy":
		return managedByRampart && u.GetName() == netpol.Name
	case "RoleBinding":
		return managedByRampart && strings.HasPrefix(u.GetName(), "rampart-")
	}
	return false
}

// comparable is an object without what the server owns.
func comparable(obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "status" {
			out[k] = v
		}
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		m := make(map[string]any, len(md))
		for k, v := range md {
			switch k {
			case "managedFields", "resourceVersion", "generation":
			default:
				m[k] = v
			}
		}
		out["metadata"] = m
	}
	return out
}

// differ lists the paths where a and b differ, at most 20, deepest first where both are
// objects; lists and scalars compare whole.
func differ(a, b any, path string) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if !aok || !bok {
		if reflect.DeepEqual(a, b) {
			return nil
		}
		return []string{cmp.Or(path, ".")}
	}
	keys := map[string]bool{}
	for k := range am {
		keys[k] = true
	}
	for k := range bm {
		keys[k] = true
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		p := k
		if path != "" {
			p = path + "." + k
		}
		out = append(out, differ(am[k], bm[k], p)...)
		if len(out) >= 20 {
			return out[:20]
		}
	}
	return out
}
