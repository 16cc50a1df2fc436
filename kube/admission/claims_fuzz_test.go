package admission_test

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"rampart.dev/rampart/kube/admission"
)

// FuzzDecodeClaimAndSnapshot: whatever the bytes, the strict decoders of the claims and
// snapshots in admission requests never panic, and what they accept is what a lenient decoder
// that refuses unknown fields (encoding/json) reads too, with the kind they check: nothing
// half-read is judged.
func FuzzDecodeClaimAndSnapshot(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{"name":"c"},"spec":{"dataSource":{"kind":"PersistentVolumeClaim","name":"frontier-7-weights"}}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","spec":{"volumeName":"pv","dataSourceRef":{"kind":"PersistentVolumeClaim","name":"w","namespace":"research"}}}`))
	f.Add([]byte(`{"apiVersion":"snapshot.storage.k8s.io/v1","kind":"VolumeSnapshot","metadata":{"name":"s"},"spec":{"source":{"persistentVolumeClaimName":"w"}}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","spec":{"volumeName":"a","volumeName":"b"}}`))
	f.Add([]byte(`{"apiVersion":"v1","kind":"PersistentVolumeClaim","spec":{"VolumeName":"a"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if c, err := admission.DecodeClaim(raw); err == nil {
			var lenient corev1.PersistentVolumeClaim
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&lenient); err != nil {
				t.Fatalf("DecodeClaim accepted what encoding/json refuses (%v): %q", err, raw)
			}
			if c.APIVersion != "v1" || c.Kind != "PersistentVolumeClaim" || lenient.Spec.VolumeName != c.Spec.VolumeName {
				t.Fatalf("DecodeClaim read %q as %+v, encoding/json as %+v", raw, c.Spec, lenient.Spec)
			}
		}
		if vs, err := admission.DecodeVolumeSnapshot(raw); err == nil {
			var lenient admission.VolumeSnapshot
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&lenient); err != nil {
				t.Fatalf("DecodeVolumeSnapshot accepted what encoding/json refuses (%v): %q", err, raw)
			}
			if vs.Kind != "VolumeSnapshot" || lenient.ClaimName() != vs.ClaimName() {
				t.Fatalf("DecodeVolumeSnapshot read %q as claim %q, encoding/json as %q", raw, vs.ClaimName(), lenient.ClaimName())
			}
		}
	})
}
