package admission_test

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"rampart.dev/rampart/internal/demo"
	"rampart.dev/rampart/kube/admission"
	"rampart.dev/rampart/kube/netpol"
	"rampart.dev/rampart/policy"
)

// A body that is not the length it announces is refused, not read past or short.
func TestBodyMustMatchContentLength(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol),
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}}}
	h := hook.Handler()
	for name, c := range map[string]struct {
		body   string
		length int64
		code   int
		want   string
	}{
		"as announced":   {podReview, int64(len(podReview)), 200, `"allowed":true`},
		"shorter":        {podReview, int64(len(podReview)) + 10, 400, "shorter than its Content-Length"},
		"longer":         {podReview + "   ", int64(len(podReview)), 400, "longer than its Content-Length"},
		"not announced":  {podReview, -1, 200, `"allowed":true`},
		"over the limit": {podReview, 9 << 20, 413, "larger than"},
	} {
		req := httptest.NewRequest(http.MethodPost, "/validate", io.NopCloser(strings.NewReader(c.body)))
		req.Header.Set("Content-Type", "application/json")
		req.ContentLength = c.length
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
}

// Reviews served at once keep their own bodies (the buffers they are read into are reused):
// every answer carries its own review's uid and the verdict for its own pod.
func TestConcurrentReviewsKeepTheirOwnBodies(t *testing.T) {
	pol := demoPolicy(t)
	hook := &admission.Webhook{Policy: func() *policy.Policy { return pol }, Decide: trusted(t, pol),
		Cluster: clusterWith{"research": {netpol.Render("research", pol.Kubernetes().Egress)}}}
	srv := httptest.NewServer(hook.Handler())
	defer srv.Close()
	privileged := strings.Replace(podReview, `"allowPrivilegeEscalation":false`, `"allowPrivilegeEscalation":false,"privileged":true`, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 60 {
				uid, body, allowed := fmt.Sprintf("ok-%d-%d", g, i), podReview, true
				if (g+i)%2 == 1 {
					uid, body, allowed = fmt.Sprintf("priv-%d-%d-padding-to-change-the-length", g, i), privileged, false
				}
				body = strings.Replace(body, `"uid":"u-1"`, `"uid":"`+uid+`"`, 1)
				resp, err := http.Post(srv.URL+"/validate", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					errs <- err
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Contains(out, []byte(`"uid":"`+uid+`"`)) || bytes.Contains(out, []byte(`"allowed":true`)) != allowed {
					errs <- fmt.Errorf("review %s (allowed %v): %s", uid, allowed, out)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The webhook remembers whether a NetworkPolicy is intact per version of it: a new version,
// or a new Rampart policy, is judged afresh.
func TestIntactFollowsNewVersionsAndPolicies(t *testing.T) {
	pol := demoPolicy(t)
	current := pol
	hook := &admission.Webhook{Policy: func() *policy.Policy { return current }, Decide: trusted(t, pol)}
	np := netpol.Render("research", pol.Kubernetes().Egress)
	np.UID, np.ResourceVersion = types.UID("np-1"), "100"
	hook.Cluster = clusterWith{"research": {np}}
	h := hook.Handler()
	verdict := func() bool {
		t.Helper()
		_, resp := post(t, h, "/validate", "application/json", []byte(podReview))
		if resp == nil {
			t.Fatal("no answer")
		}
		return resp.Allowed
	}
	if !verdict() {
		t.Fatal("intact policy: refused")
	}
	// An edit the apiserver stores gets a new resourceVersion.
	edited := np.DeepCopy()
	edited.Spec.Egress = append(edited.Spec.Egress, networkingv1.NetworkPolicyEgressRule{})
	edited.ResourceVersion = "101"
	hook.Cluster = clusterWith{"research": {edited}}
	if verdict() {
		t.Fatal("widened policy (new resourceVersion): admitted")
	}
	hook.Cluster = clusterWith{"research": {np}}
	if !verdict() {
		t.Fatal("restored policy: refused")
	}
	// A new Rampart policy moves the gateway: the stored NetworkPolicy no longer matches.
	moved := movedGatewayPolicy(t)
	current = moved
	if verdict() {
		t.Fatal("policy moved the gateway: the old NetworkPolicy still counts as intact")
	}
	np2 := netpol.Render("research", moved.Kubernetes().Egress)
	np2.UID, np2.ResourceVersion = types.UID("np-1"), "102"
	hook.Cluster = clusterWith{"research": {np2}}
	if !verdict() {
		t.Fatal("re-rendered policy: refused")
	}
}

// movedGatewayPolicy is the demo policy with the egress gateway on another port.
func movedGatewayPolicy(t *testing.T) *policy.Policy {
	t.Helper()
	src := demo.Policy()
	m := fstest.MapFS{}
	err := fs.WalkDir(src, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, path)
		if path == "settings.yaml" {
			const at = "      gateway_namespace: rampart\n"
			if !bytes.Contains(b, []byte(at)) {
				t.Fatalf("settings.yaml has no %q", at)
			}
			b = bytes.Replace(b, []byte(at), []byte(at+"      gateway_port: 9443\n"), 1)
		}
		m[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
