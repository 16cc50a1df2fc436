package api

import (
	"strings"
	"testing"
	"time"
)

// FuzzEvidenceOf: a detect.alert entry read back from the store is parsed for its evidence; no
// input makes it panic or yield a negative sequence number.
func FuzzEvidenceOf(f *testing.F) {
	f.Add([]byte(`{"unmapped":{"evidence":[1,2,3]}}`))
	f.Add([]byte(`{"unmapped":{"evidence":[-1,1.5,"x",9007199254740993]}}`))
	f.Add([]byte(`{"unmapped":{"evidence":{}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range EvidenceOf(b) {
			if s < 0 {
				t.Fatalf("negative evidence %d from %q", s, b)
			}
		}
	})
}

// FuzzParseSince: the since query parameter is a time or a duration before now, never in the
// future by a negative duration, and nothing else.
func FuzzParseSince(f *testing.F) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"24h", "-1h", "2026-12-01T00:00:00Z", "yesterday", "", "1e9h", "9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSince(s, now)
		if err != nil {
			if !strings.Contains(err.Error(), "neither") {
				t.Fatalf("%q: an error that does not say what to write: %v", s, err)
			}
			return
		}
		if _, perr := time.Parse(time.RFC3339, s); perr != nil && got.After(now) {
			t.Fatalf("%q: a duration gave %s, after now", s, got)
		}
	})
}
