package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"rampart.dev/rampart/audit"
)

// testWitness is a witness key pair in the cosignature/v1 format.
type testWitness struct {
	signer note.Signer
	vkey   string
}

func newTestWitness(t *testing.T, name string) testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cvkey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testWitness{signer: s, vkey: cvkey}
}

// cosign returns the signature lines the witness would return from add-checkpoint.
func (w testWitness) cosign(t *testing.T, signed []byte) []byte {
	t.Helper()
	text := signed[:bytes.LastIndex(signed, []byte("\n\n"))+1]
	out, err := note.Sign(&note.Note{Text: string(text)}, w.signer)
	if err != nil {
		t.Fatal(err)
	}
	return out[len(text)+1:]
}

func signedCheckpoint(t *testing.T, size uint64) ([]byte, note.Verifier) {
	t.Helper()
	skey, vkey, _ := audit.GenerateKey("rampart-test")
	signer, _ := audit.NewSigner(skey)
	v, _ := audit.NewVerifier(vkey)
	signed, err := audit.Sign(audit.Checkpoint{Origin: "rampart-test", Size: size, Root: bytes.Repeat([]byte{9}, 32), Time: time.Now()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return signed, v
}

func TestCosignatures(t *testing.T) {
	signed, logV := signedCheckpoint(t, 5)
	w1, w2 := newTestWitness(t, "witness.example/w1"), newTestWitness(t, "witness.example/w2")
	v1, err := audit.NewWitnessVerifier(w1.vkey)
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := audit.NewWitnessVerifier(w2.vkey)
	// Without cosignatures: the checkpoint verifies, the witness requirement does not.
	var missing *audit.MissingCosignatureError
	if _, _, err := audit.OpenCosigned(signed, logV, []note.Verifier{v1}); !errors.As(err, &missing) || missing.Witness != "witness.example/w1" {
		t.Fatalf("uncosigned: %v", err)
	}
	before := time.Now().Add(-time.Second)
	one, err := audit.AddCosignatures(signed, w1.cosign(t, signed), logV, v1)
	if err != nil {
		t.Fatal(err)
	}
	cp, cos, err := audit.OpenCosigned(one, logV, []note.Verifier{v1})
	if err != nil || cp.Size != 5 || len(cos) != 1 || cos[0].Witness != "witness.example/w1" || cos[0].Time.Before(before.Truncate(time.Second)) {
		t.Fatalf("cosigned by w1: %+v %+v %v", cp, cos, err)
	}
	if _, _, err := audit.OpenCosigned(one, logV, []note.Verifier{v1, v2}); !errors.As(err, &missing) || missing.Witness != "witness.example/w2" {
		t.Fatalf("w2 missing: %v", err)
	}
	two, err := audit.AddCosignatures(one, w2.cosign(t, signed), logV, v2)
	if err != nil {
		t.Fatal(err)
	}
	// Cosigning again replaces the witness's line rather than adding one.
	again, err := audit.AddCosignatures(two, w1.cosign(t, two), logV, v1)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(again), "— witness.example/w1 "); n != 1 {
		t.Fatalf("%d lines by w1 after cosigning twice:\n%s", n, again)
	}
	if _, cos, err := audit.OpenCosigned(again, logV, []note.Verifier{v1, v2, v1}); err != nil || len(cos) != 3 {
		t.Fatalf("both witnesses: %+v %v", cos, err)
	}
	// The log's checkpoint is unchanged and still opens with the log key alone.
	if _, err := audit.OpenCheckpoint(again, logV); err != nil {
		t.Fatal(err)
	}
	// A cosignature over another checkpoint, a forged line and another key's line are refused.
	other, _ := signedCheckpoint(t, 6)
	if _, err := audit.AddCosignatures(signed, w1.cosign(t, other), logV, v1); err == nil {
		t.Fatal("a cosignature of another checkpoint was added")
	}
	if _, err := audit.AddCosignatures(signed, w2.cosign(t, signed), logV, v1); err == nil {
		t.Fatal("another witness's cosignature was taken for w1's")
	}
	forged := bytes.Replace(one, []byte("— witness.example/w1 "), []byte("— witness.example/w1 AAAA"), 1)
	if _, _, err := audit.OpenCosigned(forged, logV, []note.Verifier{v1}); err == nil {
		t.Fatal("a forged cosignature verified")
	}
}

func TestNewWitnessVerifierRefuses(t *testing.T) {
	_, logKey, _ := audit.GenerateKey("rampart-test")
	if _, err := audit.NewWitnessVerifier(logKey); err == nil || !strings.Contains(err.Error(), "plain Ed25519 note key") {
		t.Fatalf("a log key taken as a witness key: %v", err)
	}
	for _, bad := range []string{"", "name", "name+1234+", "name+zz+AAAA", "na me+12345678+BAAA"} {
		if _, err := audit.NewWitnessVerifier(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
