package witness_test

import (
	"bytes"
	"strconv"
	"testing"

	"rampart.dev/rampart/audit/witness"
)

func TestParseConflict(t *testing.T) {
	for _, ok := range []struct {
		ctype, body string
		want        uint64
	}{{"text/x.tlog.size", "0\n", 0}, {"text/x.tlog.size; charset=utf-8", "20852163\n", 20852163}} {
		if n, err := witness.ParseConflict(ok.ctype, []byte(ok.body)); err != nil || n != ok.want {
			t.Errorf("%q %q: %d %v", ok.ctype, ok.body, n, err)
		}
	}
	for _, bad := range [][2]string{{"text/plain", "5\n"}, {"text/x.tlog.size", "5"}, {"text/x.tlog.size", "05\n"}, {"text/x.tlog.size", "-1\n"}, {"text/x.tlog.size", "5\n6\n"}, {"text/x.tlog.size", "\n"}, {"text/x.tlog.size", "99999999999999999999\n"}} {
		if _, err := witness.ParseConflict(bad[0], []byte(bad[1])); err == nil {
			t.Errorf("accepted %q %q", bad[0], bad[1])
		}
	}
}

// The body of a 409 is untrusted input: whatever it accepts is a canonical decimal size.
func FuzzParseConflict(f *testing.F) {
	f.Add([]byte("20852163\n"))
	f.Add([]byte("0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := witness.ParseConflict("text/x.tlog.size", b)
		if err != nil {
			return
		}
		if !bytes.Equal([]byte(strconv.FormatUint(n, 10)+"\n"), b) {
			t.Fatalf("accepted %q as %d", b, n)
		}
	})
}

func TestRequestBody(t *testing.T) {
	got := witness.RequestBody(20852014, [][]byte{bytes.Repeat([]byte{1}, 32)}, []byte("o\n5\nAAAA\n\n— o sig\n"))
	want := "old 20852014\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n\no\n5\nAAAA\n\n— o sig\n"
	if string(got) != want {
		t.Fatalf("got %q", got)
	}
	if got := witness.RequestBody(0, nil, []byte("cp\n")); string(got) != "old 0\n\ncp\n" {
		t.Fatalf("got %q", got)
	}
}
