package witness

import (
	"bytes"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// A witness's 200 answer is untrusted input: it is accepted only when it holds a cosignature
// that verifies with the witness's key, and never panics the client.
func FuzzAnswer(f *testing.F) {
	skey, _, err := note.GenerateKey(nil, "witness.test/w")
	if err != nil {
		f.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		f.Fatal(err)
	}
	v := s.Verifier()
	text := "rampart-test\n5\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\n"
	signed := []byte(text + "\n— rampart-test AAAAAA==\n")
	good, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		f.Fatal(err)
	}
	valid := good[len(text)+1:]
	f.Add(valid)
	f.Add([]byte("— witness.test/w AAAA\n"))
	f.Add(append([]byte("— other x\n"), valid...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := verifyLines(signed, b, v); err != nil {
			return
		}
		if !bytes.Contains(b, bytes.TrimSuffix(valid, []byte("\n"))) {
			// Ed25519 is deterministic for one timestamp: a different valid line means the
			// fuzzer found a forgery, or a second timestamp the key signed, which it cannot.
			t.Fatalf("accepted an answer without the witness's cosignature: %q", b)
		}
	})
}
