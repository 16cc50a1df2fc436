package console

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/audit"
)

// TestAuditPrefilterIsNecessary: mayMatch, which spares decoding entries that cannot match,
// never drops one that match accepts. Random entries encoded as the ledger encodes them (with
// quotes, backslashes, non-ASCII and control characters in their fields) against random filters
// drawn from the same values, their prefixes and wildcards.
func TestAuditPrefilterIsNecessary(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 15))
	vals := []string{"alice", "bob", "al", "ali\"ce", `back\slash`, "zoë", "tab\there", "req_abc", "grt_x", "weights/frontier-7", "request.created", "request.cancelled", "grant.revoked", "rampart"}
	pick := func() string { return vals[rng.IntN(len(vals))] }
	codes := []string{"request.created", "request.cancelled", "grant.revoked", "signin.success"}
	matched := 0
	for i := range 20000 {
		ev := audit.Event{Code: codes[rng.IntN(len(codes))], Class: audit.ClassAuthentication, Activity: audit.ActivityCreate, ActivityName: "Logon",
			Time: time.Unix(1_700_000_000+int64(i), 0), Actor: pick(), User: pick(), Message: pick(),
			Resources: []string{pick()}, Details: map[string]any{"request_id": pick(), "grant_id": pick()}}
		raw, err := audit.Encode(int64(i), ev)
		if err != nil {
			t.Fatal(err)
		}
		e, err := parseEntry(raw)
		if err != nil {
			t.Fatal(err)
		}
		var f auditFilter
		for _, set := range []func(string){func(s string) { f.Actor = s }, func(s string) { f.Resource = s }, func(s string) { f.Request = s }} {
			if rng.IntN(2) == 0 {
				set(pick())
			}
		}
		switch rng.IntN(3) {
		case 0:
			f.Event = codes[rng.IntN(len(codes))]
		case 1:
			c := codes[rng.IntN(len(codes))]
			f.Event = c[:1+rng.IntN(len(c)-1)] + "*"
		}
		if f.match(e) {
			matched++
			if !f.mayMatch(raw) {
				t.Fatalf("mayMatch drops an entry match accepts:\nfilter %+v\nentry %s", f, raw)
			}
		}
	}
	if matched < 200 {
		t.Fatalf("only %d of 20000 random cases matched: the test would not notice a wrong prefilter", matched)
	}
}

// TestAuditPageEscapesHostileText: an entry whose message holds a right-to-left override or an
// escape sequence (written before the text rule, or by a compromised writer) is shown escaped.
func TestAuditPageEscapesHostileText(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	var buf strings.Builder
	d := auditData{Entries: []entry{{Seq: 1, Code: "request.create", Actor: "mal\u202elory", Message: "ok\x1b[2Jgone"}}}
	if err := pages["audit"].Execute(&buf, page{Title: "Audit", Data: d}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.ContainsAny(out, "\u202e\x1b") || !strings.Contains(out, `mal\u202elory`) || !strings.Contains(out, `ok\x1b[2Jgone`) {
		t.Fatalf("hostile characters reached the page:\n%s", out)
	}
}
