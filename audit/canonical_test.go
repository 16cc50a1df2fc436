package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	refjcs "github.com/gowebpki/jcs"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/internal/jcs"
	"rampart.dev/rampart/policy"
)

// grantActivation is a grant.activate event as the workflow records it, tally (a struct, its
// fields in Go order: steps, satisfied, ignored) included.
func grantActivation(reason string) audit.Event {
	return audit.Event{Code: "grant.activate", Class: audit.ClassUserAccessManagement, Activity: audit.ActivityCreate,
		ActivityName: "Assign Privileges", Time: time.Unix(1764121183, 0), Actor: audit.SystemActor,
		Message: "alice granted weights-reader-frontier-7 <until> & more\u2028(approved by bob, dave)", User: "alice",
		Privileges: []string{"weights-reader-frontier-7"},
		Details: map[string]any{"approvers": []string{"bob", "dave"}, "reason": reason, "tally": policy.Tally{
			Steps:     []policy.StepTally{{Name: "owners", From: []string{"weights-owners"}, Need: 1, Counted: []string{"bob"}}, {From: []string{"security"}, Need: 1, Counted: []string{"dave"}}},
			Satisfied: true, Ignored: []policy.Ignored{{Approver: "alice", Why: "requester"}}}}}
}

// Issue 11, item 11: every entry is byte-equal to its RFC 8785 canonical form, as an
// independent implementation (github.com/gowebpki/jcs) computes it. Before, the tally of
// grant.activate kept Go's field order and U+2028 was escaped.
func TestEncodeIsJCS(t *testing.T) {
	b, err := audit.Encode(7, grantActivation("eval run 4411 \U0001F600"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := refjcs.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ref, b) {
		t.Fatalf("entry is not in canonical form:\n got %s\nwant %s", b, ref)
	}
	for _, want := range []string{`"tally":{"ignored":[{"approver":"alice","why":"requester"}],"satisfied":true,"steps":[{"counted":["bob"],"from":["weights-owners"],"name":"owners","need":1}`, "more\u2028(approved", "<until> & more"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("entry lacks %s:\n%s", want, b)
		}
	}
	if s, err := audit.Summarize(b); err != nil || s.Seq != 7 || s.Code != "grant.activate" {
		t.Fatalf("summary %+v %v", s, err)
	}
}

// Invalid UTF-8 is refused, with the field that holds it, not replaced by U+FFFD: the entry
// would otherwise record something nobody wrote.
func TestEncodeRefusesInvalidUTF8(t *testing.T) {
	_, err := audit.Encode(1, grantActivation("eval \xff run"))
	var je *jcs.Error
	if !errors.As(err, &je) || !errors.Is(err, jcs.ErrInvalidUTF8) || je.Path != "unmapped.reason" {
		t.Fatalf("invalid UTF-8 in a detail: %v", err)
	}
	e := grantActivation("ok")
	e.Actor = "bob\xc3"
	if _, err := audit.Encode(1, e); !errors.Is(err, jcs.ErrInvalidUTF8) || !strings.Contains(err.Error(), "actor.user.name") {
		t.Fatalf("invalid UTF-8 in the actor: %v", err)
	}
}

// Entries written before the canonical encoder (Go's field order, U+2028 escaped) keep
// verifying: their stored bytes are what was hashed and signed, and nothing re-encodes them.
func TestOldEntriesKeepVerifying(t *testing.T) {
	old := []byte(`{"activity_id":1,"actor":{"user":{"name":"rampart","type":"System"}},"class_uid":3005,"message":"a\u2028b","metadata":{"event_code":"grant.activate","sequence":0},"unmapped":{"tally":{"steps":[{"name":"owners","from":["g"],"need":1,"counted":["bob"]}],"satisfied":true}}}`)
	if c, err := jcs.Canonicalize(old); err != nil || bytes.Equal(c, old) {
		t.Fatalf("the old entry should not be canonical: %s %v", c, err)
	}
	next, err := audit.Encode(1, grantActivation("new"))
	if err != nil {
		t.Fatal(err)
	}
	tree := audit.NewTree()
	for _, e := range [][]byte{old, next} {
		if err := tree.AppendEntry(e); err != nil {
			t.Fatal(err)
		}
	}
	skey, vkey, _ := audit.GenerateKey("rampart-test")
	signer, _ := audit.NewSigner(skey)
	root, _ := tree.Root(2)
	signed, err := audit.Sign(audit.Checkpoint{Origin: "rampart-test", Size: 2, Root: root}, signer)
	if err != nil {
		t.Fatal(err)
	}
	export := append(append(append(append([]byte{}, old...), '\n'), next...), '\n')
	if _, _, err := audit.VerifyExport(bytes.NewReader(export), signed, vkey); err != nil {
		t.Fatalf("a ledger with an old entry does not verify: %v", err)
	}
}
