package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
)

// refRoot is RFC 6962 section 2.1 written out directly, as an independent reference.
func refRoot(leaves [][]byte) []byte {
	switch len(leaves) {
	case 0:
		h := sha256.Sum256(nil)
		return h[:]
	case 1:
		h := sha256.Sum256(append([]byte{0}, leaves[0]...))
		return h[:]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := refRoot(leaves[:k]), refRoot(leaves[k:])
	h := sha256.Sum256(append(append([]byte{1}, l...), r...))
	return h[:]
}

func TestTreeMatchesRFC6962(t *testing.T) {
	tree := audit.NewTree()
	var leaves [][]byte
	for n := 0; n <= 70; n++ {
		root, err := tree.Root(uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := refRoot(leaves); !bytes.Equal(root, want) {
			t.Fatalf("size %d: root %x, want %x", n, root, want)
		}
		leaf := []byte(fmt.Sprintf("entry %d", n))
		leaves = append(leaves, leaf)
		tree.Append(audit.LeafHash(leaf))
	}
}

func TestProofs(t *testing.T) {
	tree := audit.NewTree()
	var leaves [][]byte
	for i := 0; i < 40; i++ {
		leaf := []byte(fmt.Sprintf("e%d", i))
		leaves = append(leaves, leaf)
		tree.Append(audit.LeafHash(leaf))
	}
	for size := uint64(1); size <= 40; size++ {
		root, _ := tree.Root(size)
		for i := uint64(0); i < size; i++ {
			p, err := tree.InclusionProof(i, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.VerifyInclusion(i, size, audit.LeafHash(leaves[i]), p, root); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, size, err)
			}
			// A proof for one leaf never proves another.
			other := (i + 1) % size
			if other != i {
				if err := audit.VerifyInclusion(i, size, audit.LeafHash(leaves[other]), p, root); err == nil {
					t.Fatalf("inclusion %d/%d verified with leaf %d", i, size, other)
				}
			}
		}
		for s1 := uint64(1); s1 <= size; s1++ {
			r1, _ := tree.Root(s1)
			p, err := tree.ConsistencyProof(s1, size)
			if err != nil {
				t.Fatal(err)
			}
			if err := audit.VerifyConsistency(s1, size, p, r1, root); err != nil {
				t.Fatalf("consistency %d→%d: %v", s1, size, err)
			}
		}
	}
	// A rewritten history is not consistent with the old root.
	forked := audit.NewTree()
	for i := 0; i < 40; i++ {
		leaf := leaves[i]
		if i == 7 {
			leaf = []byte("rewritten")
		}
		forked.Append(audit.LeafHash(leaf))
	}
	oldRoot, _ := tree.Root(20)
	newRoot, _ := forked.Root(40)
	p, _ := forked.ConsistencyProof(20, 40)
	if err := audit.VerifyConsistency(20, 40, p, oldRoot, newRoot); err == nil {
		t.Fatal("rewritten history verified as consistent")
	}
}

func TestCheckpointSignAndOpen(t *testing.T) {
	skey, vkey, err := audit.GenerateKey("rampart-test")
	if err != nil {
		t.Fatal(err)
	}
	derived, err := audit.VerifierKey(skey)
	if err != nil || derived != vkey {
		t.Fatalf("derived verifier %q, want %q (%v)", derived, vkey, err)
	}
	signer, _ := audit.NewSigner(skey)
	verifier, _ := audit.NewVerifier(vkey)
	cp := audit.Checkpoint{Origin: "rampart-test", Size: 42, Root: bytes.Repeat([]byte{7}, 32)}
	signed, err := audit.Sign(cp, signer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.OpenCheckpoint(signed, verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 42 || !bytes.Equal(got.Root, cp.Root) || got.Origin != cp.Origin {
		t.Fatalf("round trip: %+v", got)
	}
	// Edit the size in the signed text.
	forged := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := audit.OpenCheckpoint(forged, verifier); err == nil {
		t.Fatal("edited checkpoint verified")
	}
	// Another key's checkpoint.
	_, otherV, _ := audit.GenerateKey("rampart-test")
	ov, _ := audit.NewVerifier(otherV)
	if _, err := audit.OpenCheckpoint(signed, ov); err == nil {
		t.Fatal("checkpoint verified with another key")
	}
	// Origin must match the signing key.
	if _, err := audit.Sign(audit.Checkpoint{Origin: "other", Size: 1, Root: cp.Root}, signer); err == nil {
		t.Fatal("signed a checkpoint for another origin")
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	root := "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
	for _, bad := range []string{
		"", "o\n1\n", "o\n1\n" + root, "\n1\n" + root + "\n", "o\n-1\n" + root + "\n", "o\n01\n" + root + "\n",
		"o\n1\nshort\n", "o\n1\n" + root + "\nextension\n", "o\nx\n" + root + "\n",
	} {
		if _, err := audit.ParseCheckpoint([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := audit.ParseCheckpoint([]byte("o\n1\n" + root + "\n")); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"))
	f.Add([]byte("\n\n\n"))
	f.Add([]byte("o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nrampart-time 2026-12-07T11:12:13.042Z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := audit.ParseCheckpoint(b)
		if err != nil {
			return
		}
		if !bytes.Equal(cp.Marshal(), b) {
			t.Fatalf("accepted a non-canonical checkpoint %q (re-marshals as %q)", b, cp.Marshal())
		}
	})
}

func TestEncodeIsCanonical(t *testing.T) {
	e := audit.Event{
		Code: "grant.activate", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityCreate,
		ActivityName: "Assign Privileges", Time: time.Unix(1700000000, 123e6), Actor: "bob",
		Message: "grant <g1> & more", User: "alice", Resources: []string{"weights/frontier-7"},
		Privileges: []string{"weights-reader-frontier-7"}, Details: map[string]any{"z": 1, "a": "x"},
	}
	b1, err := audit.Encode(5, e)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := audit.Encode(5, e)
	if !bytes.Equal(b1, b2) {
		t.Fatal("encoding is not deterministic")
	}
	// Keys sorted: re-encoding through a map gives the same bytes.
	var m map[string]any
	if err := json.Unmarshal(b1, &m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m)
	if got := strings.TrimSuffix(buf.String(), "\n"); got != string(b1) {
		t.Fatalf("not canonical:\n%s\n%s", b1, got)
	}
	if m["type_uid"].(float64) != 300501 || m["class_uid"].(float64) != 3005 {
		t.Fatalf("OCSF ids wrong: %v", m)
	}
	s, err := audit.Summarize(b1)
	if err != nil || s.Seq != 5 || s.Code != "grant.activate" || s.Actor != "bob" {
		t.Fatalf("summary %+v %v", s, err)
	}
	if _, err := audit.Encode(1, audit.Event{Code: "x", Class: 1, Time: time.Now(), Actor: "a"}); err == nil {
		t.Fatal("unknown class accepted")
	}
}

func TestAppendEntryChecksSequence(t *testing.T) {
	tree := audit.NewTree()
	mk := func(seq int64) []byte {
		b, _ := audit.Encode(seq, audit.Event{Code: "x", Class: audit.ClassAPIActivity, Time: time.Unix(1, 0), Actor: "a"})
		return b
	}
	if err := tree.AppendEntry(mk(0)); err != nil {
		t.Fatal(err)
	}
	var se *audit.SequenceError
	if err := tree.AppendEntry(mk(2)); !errors.As(err, &se) || se.Want != 1 || se.Got != 2 {
		t.Fatalf("skipped entry accepted: %v", err)
	}
	if err := tree.AppendEntry([]byte("{not json")); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

// Keys whose base64 contains '+' must work too (it is a separator in the key text).
func TestVerifierKeyDerivationManyKeys(t *testing.T) {
	for i := 0; i < 200; i++ {
		skey, vkey, err := audit.GenerateKey("k")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := audit.VerifierKey(skey); err != nil || got != vkey {
			t.Fatalf("key %d: %q %v, want %q", i, got, err, vkey)
		}
	}
}
