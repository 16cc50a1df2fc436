package change_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/change"
)

func TestReadUpdates(t *testing.T) {
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	ups, err := change.ReadUpdates(strings.NewReader(a + " " + b + " refs/heads/main\n" + b + " " + a + " refs/tags/v1\n"))
	if err != nil || len(ups) != 2 || ups[1].Ref != "refs/tags/v1" || ups[0].New != b {
		t.Fatalf("ReadUpdates: %+v, %v", ups, err)
	}
	for _, bad := range []string{
		a + " " + b + " main\n",                          // not under refs/
		a + " " + b[:39] + " refs/heads/main\n",          // short id
		a + " " + strings.Repeat("b", 64) + " refs/x\n",  // mixed hash lengths
		a + "  " + b + " refs/heads/main\n",              // doubled space
		a + " " + b + " refs/heads/../x\n",               // ..
		a + " " + b + " refs/heads/ma\x01in\n",           // control character
		a + " " + b + " refs/heads/main extra\n",         // extra field
		strings.Repeat("x", 5000) + "\n",                 // over-long line
		strings.ToUpper(a) + " " + b + " refs/heads/m\n", // upper-case hex
	} {
		if _, err := change.ReadUpdates(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadUpdates(%.60q) accepted it", bad)
		}
	}
}

func FuzzReadUpdates(f *testing.F) {
	a, b := strings.Repeat("a", 40), strings.Repeat("b", 40)
	f.Add(a + " " + b + " refs/heads/main\n")
	f.Add(strings.Repeat("0", 40) + " " + b + " refs/heads/x\n" + a + " " + strings.Repeat("0", 40) + " refs/heads/y")
	f.Add("\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		ups, err := change.ReadUpdates(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, u := range ups {
			if !change.IsObjectID(u.Old) || !change.IsObjectID(u.New) || !strings.HasPrefix(u.Ref, "refs/") || strings.ContainsAny(u.Ref, " \n\x00") {
				t.Fatalf("accepted a malformed update %+v from %q", u, in)
			}
		}
	})
}

// seedBundle is a real bundle signed by a real ledger, for the fuzzers' corpus.
func seedBundle(t testing.TB) ([]byte, *audit.Ledger) {
	f := newFixture(t)
	f.branch("readme", map[string]string{"README": "x\n"})
	_, v := f.land("readme", "erin", "bob", "carol")
	if !v.Allowed || v.Bundle == nil {
		t.Fatalf("seed landing: %+v", v)
	}
	return v.Bundle.Marshal(), f.key
}

func TestParseBundleStrict(t *testing.T) {
	good, l := seedBundle(t)
	b, err := change.ParseBundle(good)
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := change.OpenBundle(b, l.Verifier())
	if err != nil || len(entries) != 4 || entries[3].Land == nil {
		t.Fatalf("OpenBundle: %d entries, %v", len(entries), err)
	}
	var m map[string]any
	if err := json.Unmarshal(good, &m); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"unknown member":  bytes.Replace(good, []byte(`{"format"`), []byte(`{"extra":1,"format"`), 1),
		"duplicate":       bytes.Replace(good, []byte(`{"format"`), []byte(`{"format":"x","format"`), 1),
		"trailing data":   append(append([]byte{}, good...), []byte(`{}`)...),
		"other format":    bytes.Replace(good, []byte(change.BundleFormat), []byte("rampart-change-bundle/v0"), 1),
		"no entries":      []byte(`{"format":"` + change.BundleFormat + `","checkpoint":"eA==","entries":[]}`),
		"over the limit":  append([]byte(`{"format":"`+change.BundleFormat+`","checkpoint":"`), bytes.Repeat([]byte("A"), change.MaxBundle)...),
		"truncated":       good[:len(good)/2],
		"not base64 ckpt": bytes.Replace(good, []byte(`"checkpoint":"`), []byte(`"checkpoint":"!`), 1),
	} {
		if _, err := change.ParseBundle(bad); err == nil {
			t.Errorf("%s: ParseBundle accepted it", name)
		}
	}
	// Parsed, but not opened: an entry swapped for another keeps its index but not its proof.
	b2, _ := change.ParseBundle(good)
	b2.Entries[1].Entry, b2.Entries[2].Entry = b2.Entries[2].Entry, b2.Entries[1].Entry
	if _, _, err := change.OpenBundle(b2, l.Verifier()); err == nil || !strings.Contains(err.Error(), "not in the signed checkpoint") {
		t.Errorf("swapped entries: %v", err)
	}
	b3, _ := change.ParseBundle(good)
	b3.Entries[0].Index++
	if _, _, err := change.OpenBundle(b3, l.Verifier()); err == nil {
		t.Error("an entry moved to another index was accepted")
	}
}

func FuzzParseBundle(f *testing.F) {
	good, l := seedBundle(f)
	f.Add(good)
	f.Add([]byte(`{"format":"rampart-change-bundle/v1","checkpoint":"eA==","entries":[{"index":0,"entry":"{}","proof":[]}]}`))
	f.Add([]byte(`{}`))
	key := l.Verifier()
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := change.ParseBundle(data)
		if err != nil {
			return
		}
		if len(b.Entries) == 0 || b.Format != change.BundleFormat {
			t.Fatalf("accepted %+v", b)
		}
		// Opening never panics; whatever opens is exactly what the ledger signed.
		entries, cp, err := change.OpenBundle(b, key)
		if err != nil {
			return
		}
		for i, e := range entries {
			if uint64(e.Seq) >= cp.Size || e.Seq != int64(b.Entries[i].Index) {
				t.Fatalf("opened entry %d at %d of a checkpoint of %d", e.Seq, b.Entries[i].Index, cp.Size)
			}
		}
	})
}
