package audit_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
)

const testRoot = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="

// Checkpoints carry their signing time in the one extension line Rampart writes; checkpoints
// signed before it (three lines) still parse and verify.
func TestCheckpointTimeLine(t *testing.T) {
	at := time.Date(2026, 12, 7, 11, 12, 13, 42e6, time.UTC)
	cp := audit.Checkpoint{Origin: "rampart-test", Size: 3, Root: bytes.Repeat([]byte{7}, 32), Time: at}
	body := string(cp.Marshal())
	if want := "rampart-test\n3\n" + testRoot + "\nrampart-time 2026-12-07T11:12:13.042Z\n"; body != want {
		t.Fatalf("marshal:\n%q\nwant\n%q", body, want)
	}
	got, err := audit.ParseCheckpoint([]byte(body))
	if err != nil || !got.Time.Equal(at) || got.Size != 3 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	old, err := audit.ParseCheckpoint([]byte("rampart-test\n3\n" + testRoot + "\n"))
	if err != nil || !old.Time.IsZero() {
		t.Fatalf("a checkpoint without a time: %+v %v", old, err)
	}
	// Signed and opened with the time; a signature over the three-line body does not cover a
	// time added later.
	skey, vkey, _ := audit.GenerateKey("rampart-test")
	signer, _ := audit.NewSigner(skey)
	v, _ := audit.NewVerifier(vkey)
	signed, err := audit.Sign(cp, signer)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := audit.OpenCheckpoint(signed, v); err != nil || !got.Time.Equal(at) {
		t.Fatalf("open: %+v %v", got, err)
	}
	forged := bytes.Replace(signed, []byte("11:12:13.042Z"), []byte("11:12:14.042Z"), 1)
	if _, err := audit.OpenCheckpoint(forged, v); err == nil {
		t.Fatal("a checkpoint whose time was edited verified")
	}
	noTime := cp
	noTime.Time = time.Time{}
	signedOld, _ := audit.Sign(noTime, signer)
	added := bytes.Replace(signedOld, []byte(testRoot+"\n"), []byte(testRoot+"\nrampart-time 2026-12-07T11:12:13.042Z\n"), 1)
	if _, err := audit.OpenCheckpoint(added, v); err == nil {
		t.Fatal("a time line added to a signed checkpoint verified")
	}
}

func TestCheckpointRefusesOtherExtensions(t *testing.T) {
	base := "o\n1\n" + testRoot + "\n"
	for _, ext := range []string{
		"extension\n",
		"rampart-time 2026-12-07T11:12:13Z\n",          // not the one layout
		"rampart-time 2026-12-07T11:12:13.042+01:00\n", // not UTC
		"rampart-time 2026-12-07 11:12:13.042Z\n",
		"rampart-time  2026-12-07T11:12:13.042Z\n",
		"rampart-time 0001-01-01T00:00:00.000Z\n", // the zero time
		"rampart-time 2026-12-07T11:12:13.042Z\nsecond\n",
		"rampart-time 2026-12-07T11:12:13.042Z\nrampart-time 2026-12-07T11:12:13.042Z\n",
		"Timestamp: 1689748607742585419\n",
		"\n",
	} {
		if _, err := audit.ParseCheckpoint([]byte(base + ext)); err == nil {
			t.Errorf("accepted extension %q", ext)
		} else if strings.Contains(ext, "rampart-time") && !strings.Contains(err.Error(), "time") && !strings.Contains(err.Error(), "lines") {
			t.Errorf("%q: unhelpful error %v", ext, err)
		}
	}
}
