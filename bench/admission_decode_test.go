package bench

import (
	"math/rand/v2"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rampart.dev/rampart/bench/reviewdecode"
	"rampart.dev/rampart/kube/podsec"
)

// The prototypes of faster strict decoders (package reviewdecode) against podsec's, on the
// benchmark's corpus, and measured.

// TestAdmissionDecodersAgree: on every review of the agreement corpus, random combinations of
// its changes and the measured reviews, every prototype decodes to the same review and workload
// as podsec does; on every hostile review (reviewdecode.Hostile), every decoder refuses.
func TestAdmissionDecodersAgree(t *testing.T) {
	var bodies [][]byte
	for _, c := range admissionCorpus {
		for _, k := range corpusKinds {
			bodies = append(bodies, corpusReview(t, c, k.kind))
		}
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for range 300 {
		p := trainingPod()
		for range 1 + rng.IntN(4) {
			admissionCorpus[1+rng.IntN(len(admissionCorpus)-1)].mutate(p)
		}
		k := corpusKinds[rng.IntN(len(corpusKinds))]
		obj := wrap(k.kind, p)
		bodies = append(bodies, reviewOf(t, k.kind, obj, p.Namespace, obj.(metav1.Object).GetName()))
	}
	for _, body := range admissionEnvFor(t).bodies {
		bodies = append(bodies, body) // the measured reviews, as kube-apiserver sent them when captured
	}
	for i, body := range bodies {
		for _, d := range reviewdecode.Decoders[1:] {
			if cur, diff := reviewdecode.Compare(body, d.Decode); cur != nil || diff != nil {
				t.Errorf("review %d: %s: current decoder: %v; %v", i, d.Name, cur, diff)
			}
		}
	}
	hostile, err := reviewdecode.Hostile(corpusReview(t, admissionCorpus[0], "Pod"), corpusReview(t, admissionCorpus[0], "Deployment"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range hostile {
		for _, d := range reviewdecode.Decoders {
			if _, _, err := d.Decode(body); err == nil {
				t.Errorf("%s: %s accepted it", name, d.Name)
			}
		}
	}
	t.Logf("%d reviews decode identically with every decoder; %d hostile reviews are refused by every decoder", len(bodies), len(hostile))
}

// BenchmarkAdmissionDecode measures each decoder alone on the measured reviews, and the review
// path (decode, Check, Mutate) with each.
func BenchmarkAdmissionDecode(b *testing.B) {
	env := admissionEnvFor(b)
	mach0, own0 := machineCPU(), ownCPU()
	for _, name := range []string{"pod", "pod-bare"} {
		body := env.bodies[name]
		for _, d := range reviewdecode.Decoders {
			short := strings.Fields(d.Name)[0]
			b.Run(name+"/decode/"+short, func(b *testing.B) {
				timeReviews(b, "admission-decode/"+name+"/decode/"+short, false, func() {
					if _, w, err := d.Decode(body); err != nil || w.Spec == nil {
						b.Fatalf("%s: %v", d.Name, err)
					}
				})
			})
			b.Run(name+"/review/"+short, func(b *testing.B) {
				timeReviews(b, "admission-decode/"+name+"/review/"+short, false, func() {
					r, w, err := d.Decode(body)
					if err != nil {
						b.Fatal(err)
					}
					if vs := podsec.Check(w, r.Request.Namespace, env.cfg, nil); len(vs) != 0 {
						b.Fatalf("violations: %v", vs)
					}
					_ = podsec.Mutate(w, r.Request.Namespace, env.cfg)
				})
			})
		}
	}
	res := admissionResultsWith("admission-decode/")
	for _, name := range []string{"pod", "pod-bare"} {
		admissionLine("%s (%d bytes):", name, len(env.bodies[name]))
		cur := res["admission-decode/"+name+"/decode/sigs-json"]
		for _, d := range reviewdecode.Decoders {
			short := strings.Fields(d.Name)[0]
			dr, rr := res["admission-decode/"+name+"/decode/"+short], res["admission-decode/"+name+"/review/"+short]
			if dr.nsPerOp == 0 {
				continue
			}
			admissionLine("  %-20s decode               %s; %.1fx faster than the current decoder", d.Name, dr, cur.nsPerOp/dr.nsPerOp)
			admissionLine("  %-20s decode+Check+Mutate  %s", "", rr)
		}
	}
	printAdmission("Admission: strict decoders (prototypes beside podsec's)", mach0, own0, 0)
}
