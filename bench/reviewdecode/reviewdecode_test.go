package reviewdecode

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"rampart.dev/rampart/kube/podsec"
)

// reviews are the reviews kube-apiserver sent Rampart's webhook for the benchmark's compliant
// pod and Deployment (captured by bench's BenchmarkAdmissionAPIServer).
func reviews(tb testing.TB) (pod, deployment []byte) {
	tb.Helper()
	var out [2][]byte
	for i, name := range []string{"review-pod.json", "review-deployment.json"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "admission", name))
		if err != nil {
			tb.Fatalf("%v (capture it from bench/ with RAMPART_BENCH_ADMISSION_CAPTURE=1 go test -run '^$' -bench BenchmarkAdmissionAPIServer .)", err)
		}
		out[i] = b
	}
	return out[0], out[1]
}

// Every decoder accepts what kube-apiserver sent, and decodes it as podsec does.
func TestDecodersAcceptRealReviews(t *testing.T) {
	pod, dep := reviews(t)
	for _, body := range [][]byte{pod, dep} {
		for _, d := range Decoders {
			_, w, err := d.Decode(body)
			if err != nil || w.Spec == nil {
				t.Fatalf("%s: %v", d.Name, err)
			}
			if _, diff := Compare(body, d.Decode); diff != nil {
				t.Errorf("%s: %v", d.Name, diff)
			}
		}
	}
}

// Every decoder refuses every hostile review, with a *podsec.DecodeError.
func TestDecodersRefuseHostileReviews(t *testing.T) {
	hostile, err := Hostile(reviews(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range hostile {
		for _, d := range Decoders {
			_, _, err := d.Decode(body)
			var de *podsec.DecodeError
			switch {
			case err == nil:
				t.Errorf("%s: %s accepted it", name, d.Name)
			case !errors.As(err, &de) || !(errors.Is(err, podsec.ErrMalformed) || errors.Is(err, podsec.ErrTooLarge)):
				t.Errorf("%s: %s: %T %v; want a *podsec.DecodeError", name, d.Name, err, err)
			case testing.Verbose():
				t.Logf("%-40s %-20s %v", name, d.Name, err)
			}
		}
	}
}

// FuzzDecoders: whatever the body, no prototype accepts what podsec refuses, and what both
// accept decodes to the same review and object.
func FuzzDecoders(f *testing.F) {
	pod, dep := reviews(f)
	f.Add(pod)
	f.Add(dep)
	hostile, err := Hostile(pod, dep)
	if err != nil {
		f.Fatal(err)
	}
	for name, b := range hostile {
		if name != "too large" {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, d := range Decoders[1:] {
			if _, diff := Compare(body, d.Decode); diff != nil {
				t.Errorf("%s: %v", d.Name, diff)
			}
		}
	})
}

// The one documented difference: a duplicate name inside a value podsec keeps as raw JSON
// (managedFields[].fieldsV1) passes podsec, which never decodes it, and is refused by the
// prototypes, which validate every object they read; Compare allows it.
func TestDuplicateInsideRawJSON(t *testing.T) {
	pod, _ := reviews(t)
	const at = `"f:metadata":{`
	if !bytes.Contains(pod, []byte(at)) {
		t.Fatalf("the captured review has no %s", at)
	}
	body := bytes.Replace(pod, []byte(at), []byte(at+`"f:x":{},"f:x":{},`), 1)
	if _, _, err := Current(body); err != nil {
		t.Fatalf("podsec refuses it: %v", err)
	}
	for _, d := range Decoders[1:] {
		if _, _, err := d.Decode(body); err == nil {
			t.Errorf("%s accepts it", d.Name)
		}
		if _, diff := Compare(body, d.Decode); diff != nil {
			t.Errorf("%s: %v", d.Name, diff)
		}
	}
}
