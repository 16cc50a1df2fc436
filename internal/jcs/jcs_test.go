package jcs_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"

	refjcs "github.com/gowebpki/jcs"

	"rampart.dev/rampart/internal/jcs"
)

// Known answers computed by an independent implementation (testdata/gen.mjs: the npm package
// canonicalize, run by Node.js): RFC 8785's own examples, a ledger entry, and every code point
// below U+3000 in names and values.
func TestVectors(t *testing.T) {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []struct{ Name, Input, Output string }
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 100 {
		t.Fatalf("only %d vectors", len(vs))
	}
	for _, v := range vs {
		got, err := jcs.Canonicalize([]byte(v.Input))
		if err != nil {
			t.Errorf("%s: %v", v.Name, err)
			continue
		}
		if string(got) != v.Output {
			t.Errorf("%s:\n got %s\nwant %s", v.Name, got, v.Output)
		}
	}
}

// Doubles spelled as ECMAScript spells them, against the same independent implementation:
// special values, 8000 random bit patterns over every exponent, integers near 2^53, decimals.
func TestNumbers(t *testing.T) {
	f, err := os.Open("testdata/numbers.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		bits, want, ok := strings.Cut(sc.Text(), " ")
		u, err := strconv.ParseUint(bits, 16, 64)
		if !ok || err != nil {
			t.Fatalf("line %d: %q", n+1, sc.Text())
		}
		x := math.Float64frombits(u)
		if got := jcs.FormatNumber(x); got != want {
			t.Errorf("%s (%v): got %s, want %s", bits, x, got, want)
		}
		// The canonical spelling parses back to itself.
		if got, err := jcs.Canonicalize([]byte(want)); err != nil || string(got) != want {
			t.Errorf("canonicalize %s: %s %v", want, got, err)
		}
		n++
	}
	if err := sc.Err(); err != nil || n < 10000 {
		t.Fatalf("%d numbers read (%v)", n, err)
	}
}

type tally struct {
	Steps     []step `json:"steps"`
	Satisfied bool   `json:"satisfied"`
}

type step struct {
	Name    string   `json:"name,omitempty"`
	From    []string `json:"from"`
	Need    int      `json:"need"`
	Counted []string `json:"counted"`
}

// Structs are written with sorted members, not in Go field order (the tally of grant.activate
// was not, before issue 11).
func TestMarshalSortsStructs(t *testing.T) {
	got, err := jcs.Marshal(map[string]any{"tally": tally{Steps: []step{{Name: "owners", From: []string{"g"}, Need: 1, Counted: []string{"bob"}}}, Satisfied: true}, "a": "<&>\u2028"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"<&>` + "\u2028" + `","tally":{"satisfied":true,"steps":[{"counted":["bob"],"from":["g"],"name":"owners","need":1}]}}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	ref, err := refjcs.Transform(got)
	if err != nil || string(ref) != string(got) {
		t.Fatalf("the reference implementation disagrees: %s %v", ref, err)
	}
}

// What has no canonical form is refused, and the error says where.
func TestRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		v    any
		path string
		utf8 bool
	}{
		"invalid UTF-8 in a value": {map[string]any{"unmapped": map[string]any{"reason": "ok \xff no"}}, "unmapped.reason", true},
		"invalid UTF-8 in a name":  {map[string]any{"k\xc3": 1}, "", true},
		"truncated sequence":       {[]string{"a", "\xe2\x80"}, "[1]", true},
		"integer beyond 2^53":      {map[string]any{"n": int64(1<<53 + 1)}, "n", false},
		"largest int64":            {map[string]any{"n": []int64{math.MaxInt64}}, "n[0]", false},
		"2^62":                     {[]any{map[string]any{"x": int64(1 << 62)}}, "[0].x", false},
		"an integer as 1e22":       {map[string]any{"n": json.Number("10000000000000000000000")}, "n", false},
	} {
		_, err := jcs.Marshal(c.v)
		var je *jcs.Error
		if !errors.As(err, &je) {
			t.Errorf("%s: accepted (%v)", name, err)
			continue
		}
		if je.Path != c.path || errors.Is(err, jcs.ErrInvalidUTF8) != c.utf8 {
			t.Errorf("%s: %v (path %q, want %q)", name, err, je.Path, c.path)
		}
	}
	// A valid U+FFFD is text like any other.
	if got, err := jcs.Marshal("\ufffd"); err != nil || string(got) != "\"\ufffd\"" {
		t.Fatalf("valid U+FFFD: %s %v", got, err)
	}
	// Integers that are exactly doubles pass, however large.
	for in, want := range map[any]string{int64(1 << 53): "9007199254740992", int64(944269699937951900): "944269699937951900", math.Copysign(0, -1): "0", 1e22: "1e+22"} {
		if got, err := jcs.Marshal(in); err != nil || string(got) != want {
			t.Errorf("%v: %s %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{
		`{"a":1,"a":2}`, `{"a":1,"b":{"c":1,"c":1}}`, `"\ud800"`, `"\udc00\ud800"`, `"\ud800\u0041"`, `"a` + "\x01" + `"`,
		`[1,]`, `{"a"}`, `01`, `1.`, `-`, `1e`, `+1`, `NaN`, `1e400`, `[1] x`, `"\x"`, `"\u12"`, `"` + "\xff" + `"`,
		strings.Repeat("[", jcs.MaxDepth+1) + strings.Repeat("]", jcs.MaxDepth+1),
	} {
		if got, err := jcs.Canonicalize([]byte(bad)); err == nil {
			t.Errorf("canonicalized %q as %q", bad, got)
		}
	}
	// Canonicalize (unlike Marshal) takes an escaped U+FFFD at its word.
	if got, err := jcs.Canonicalize([]byte(`"\ufffd"`)); err != nil || string(got) != "\"\ufffd\"" {
		t.Fatalf("escaped U+FFFD: %s %v", got, err)
	}
}

// Differential fuzzing against the reference Go implementation (github.com/gowebpki/jcs, a port
// of the RFC authors' code): whatever Rampart accepts, the reference accepts with the same
// output; Rampart may refuse more (integers beyond 2^53), never less.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `1e21`, `"\u2028\ud83d\ude00"`, `{"\u20ac":1,"\r":2}`, `[0.1,-0,1E-7]`, `{"a":{"a":{}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := jcs.Canonicalize(b)
		if err != nil {
			return
		}
		ref, rerr := refjcs.Transform(b)
		if rerr != nil {
			t.Fatalf("Rampart canonicalized %q as %q; the reference refuses it: %v", b, got, rerr)
		}
		if string(got) != string(ref) {
			t.Fatalf("%q:\nRampart   %q\nreference %q", b, got, ref)
		}
		// Canonical is a fixed point.
		if again, err := jcs.Canonicalize(got); err != nil || string(again) != string(got) {
			t.Fatalf("not idempotent: %q → %q (%v)", got, again, err)
		}
	})
}
