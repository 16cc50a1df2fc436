package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"rampart.dev/rampart/kube/podsec"
)

// Cluster is what the webhook reads from the cluster.
type Cluster interface {
	// Pod returns a pod (for exec, attach, port-forward and proxy requests).
	Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// NetworkPolicies returns the namespace's NetworkPolicies.
	NetworkPolicies(namespace string) ([]*networkingv1.NetworkPolicy, error)
	Services
	Storage
}

// Services is what the webhook reads to find the pods a Service's proxy reaches.
type Services interface {
	// Service returns a Service.
	Service(ctx context.Context, namespace, name string) (*corev1.Service, error)
	// EndpointPods names the pods of the namespace that the Service's Endpoints object lists
	// (the addresses the apiserver's service proxy dials); none when it has no Endpoints.
	EndpointPods(ctx context.Context, namespace, service string) ([]string, error)
	// Pods returns the namespace's pods that selector selects.
	Pods(ctx context.Context, namespace string, selector labels.Selector) ([]corev1.Pod, error)
}

// Storage is what the webhook and kube scan read to follow protected data from claim to
// volume to snapshot. Each returns an error for which apierrors.IsNotFound is true when the
// object does not exist.
type Storage interface {
	PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error)
	PersistentVolumeClaim(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error)
	// VolumeSnapshotSource returns the claim a VolumeSnapshot (snapshot.storage.k8s.io/v1) was
	// taken of, "" when it was made from a pre-provisioned VolumeSnapshotContent.
	VolumeSnapshotSource(ctx context.Context, namespace, name string) (string, error)
}

// KubeCluster reads the cluster for the webhook: NetworkPolicies from a watch (every review
// needs them), everything else by a direct read (only exec, attach, port-forward and proxy
// requests, and claims that copy or bind a volume, need one).
type KubeCluster struct {
	KubeStorage
	np     netlisters.NetworkPolicyLister
	synced cache.InformerSynced
}

// NewKubeCluster starts the watch and waits (up to a minute) until it has synced.
func NewKubeCluster(ctx context.Context, client kubernetes.Interface) (*KubeCluster, error) {
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	inf := f.Networking().V1().NetworkPolicies()
	k := &KubeCluster{KubeStorage: KubeStorage{Client: client}, np: inf.Lister(), synced: inf.Informer().HasSynced}
	f.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), k.synced) {
		return nil, errors.New("admission: the watch of NetworkPolicies did not sync within a minute (may Rampart list and watch networkpolicies?)")
	}
	return k, nil
}

// readTimeout bounds each direct read: the apiserver gives the webhook 5 s in all.
const readTimeout = 3 * time.Second

// Pod implements Cluster.
func (k *KubeCluster) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return k.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// NetworkPolicies implements Cluster.
func (k *KubeCluster) NetworkPolicies(namespace string) ([]*networkingv1.NetworkPolicy, error) {
	if !k.synced() {
		return nil, fmt.Errorf("the NetworkPolicy watch has not synced")
	}
	return k.np.NetworkPolicies(namespace).List(labels.Everything())
}

// Service implements Services.
func (k *KubeCluster) Service(ctx context.Context, namespace, name string) (*corev1.Service, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return k.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
}

// EndpointPods implements Services. It reads the core/v1 Endpoints object, deprecated for
// clients since Kubernetes 1.33, because that is what the apiserver's service proxy dials.
func (k *KubeCluster) EndpointPods(ctx context.Context, namespace, service string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	eps, err := k.Client.CoreV1().Endpoints(namespace).Get(ctx, service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ss := range eps.Subsets {
		for _, list := range [][]corev1.EndpointAddress{ss.Addresses, ss.NotReadyAddresses} {
			for _, a := range list {
				if r := a.TargetRef; r != nil && r.Kind == "Pod" && (r.Namespace == "" || r.Namespace == namespace) {
					out = append(out, r.Name)
				}
			}
		}
	}
	return out, nil
}

// Pods implements Services.
func (k *KubeCluster) Pods(ctx context.Context, namespace string, selector labels.Selector) ([]corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	list, err := k.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// KubeStorage implements Storage with direct reads.
type KubeStorage struct {
	Client kubernetes.Interface
}

// PersistentVolume implements Storage.
func (k KubeStorage) PersistentVolume(ctx context.Context, name string) (*corev1.PersistentVolume, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return k.Client.CoreV1().PersistentVolumes().Get(ctx, name, metav1.GetOptions{})
}

// PersistentVolumeClaim implements Storage.
func (k KubeStorage) PersistentVolumeClaim(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return k.Client.CoreV1().PersistentVolumeClaims(namespace).Get(ctx, name, metav1.GetOptions{})
}

// VolumeSnapshotSource implements Storage. A cluster without the snapshot API has no
// snapshots: the apiserver answers 404, which is NotFound.
func (k KubeStorage) VolumeSnapshotSource(ctx context.Context, namespace, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	raw, err := k.Client.Discovery().RESTClient().Get().
		AbsPath("/apis", SnapshotGroup, "v1", "namespaces", namespace, "volumesnapshots", name).DoRaw(ctx)
	if err != nil {
		return "", err
	}
	var vs VolumeSnapshot
	if err := json.Unmarshal(raw, &vs); err != nil {
		return "", fmt.Errorf("VolumeSnapshot %s/%s: %w", namespace, name, err)
	}
	return vs.ClaimName(), nil
}

// VolumeSnapshots lists the VolumeSnapshots of namespace ns; none when the cluster does not
// serve the snapshot API.
func (k KubeStorage) VolumeSnapshots(ctx context.Context, ns string) ([]VolumeSnapshot, error) {
	raw, err := k.Client.Discovery().RESTClient().Get().
		AbsPath("/apis", SnapshotGroup, "v1", "namespaces", ns, "volumesnapshots").DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []VolumeSnapshot `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("VolumeSnapshots in %s: %w", ns, err)
	}
	return list.Items, nil
}

// DecodeVolumeSnapshot decodes a VolumeSnapshot (snapshot.storage.k8s.io/v1) from an admission
// request, strictly (podsec.DecodeObject): a snapshot API newer than this build, with fields it
// does not know, is refused rather than half read.
func DecodeVolumeSnapshot(raw []byte) (*VolumeSnapshot, error) {
	var vs VolumeSnapshot
	if err := podsec.DecodeObject("VolumeSnapshot", raw, &vs); err != nil {
		return nil, err
	}
	if vs.APIVersion != SnapshotGroup+"/v1" || vs.Kind != "VolumeSnapshot" {
		return nil, &podsec.DecodeError{What: "VolumeSnapshot", Field: "apiVersion", Err: podsec.ErrMalformed,
			Reason: fmt.Sprintf("object says apiVersion %q, kind %q; want %q, \"VolumeSnapshot\"", vs.APIVersion, vs.Kind, SnapshotGroup+"/v1")}
	}
	return &vs, nil
}

// SnapshotGroup is the API group of VolumeSnapshots.
const SnapshotGroup = "snapshot.storage.k8s.io"

// VolumeSnapshot is the part of a snapshot.storage.k8s.io/v1 VolumeSnapshot that says what it
// copies. (Its Go types live in the external-snapshotter's client module, which Rampart does not
// link for three fields.)
type VolumeSnapshot struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              VolumeSnapshotSpec `json:"spec"`
	Status            map[string]any     `json:"status,omitempty"`
}

// VolumeSnapshotSpec is a VolumeSnapshot's spec.
type VolumeSnapshotSpec struct {
	Source                  VolumeSnapshotSpecSource `json:"source"`
	VolumeSnapshotClassName *string                  `json:"volumeSnapshotClassName,omitempty"`
}

// VolumeSnapshotSpecSource names what a snapshot is taken of: a claim of its namespace, or an
// existing VolumeSnapshotContent.
type VolumeSnapshotSpecSource struct {
	PersistentVolumeClaimName *string `json:"persistentVolumeClaimName,omitempty"`
	VolumeSnapshotContentName *string `json:"volumeSnapshotContentName,omitempty"`
}

// ClaimName is the claim the snapshot is taken of, "" when none.
func (vs *VolumeSnapshot) ClaimName() string {
	if p := vs.Spec.Source.PersistentVolumeClaimName; p != nil {
		return *p
	}
	return ""
}
