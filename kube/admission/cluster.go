package admission

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// KubeCluster reads the cluster for the webhook: NetworkPolicies from a watch (every review
// needs them), pods by a direct read (only exec, attach and port-forward need one).
type KubeCluster struct {
	client kubernetes.Interface
	np     netlisters.NetworkPolicyLister
	synced cache.InformerSynced
}

// NewKubeCluster starts the watch and waits (up to a minute) until it has synced.
func NewKubeCluster(ctx context.Context, client kubernetes.Interface) (*KubeCluster, error) {
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	inf := f.Networking().V1().NetworkPolicies()
	k := &KubeCluster{client: client, np: inf.Lister(), synced: inf.Informer().HasSynced}
	f.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), k.synced) {
		return nil, errors.New("admission: the watch of NetworkPolicies did not sync within a minute (may Rampart list and watch networkpolicies?)")
	}
	return k, nil
}

// Pod implements Cluster.
func (k *KubeCluster) Pod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return k.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
}

// NetworkPolicies implements Cluster.
func (k *KubeCluster) NetworkPolicies(namespace string) ([]*networkingv1.NetworkPolicy, error) {
	if !k.synced() {
		return nil, fmt.Errorf("the NetworkPolicy watch has not synced")
	}
	return k.np.NetworkPolicies(namespace).List(labels.Everything())
}
