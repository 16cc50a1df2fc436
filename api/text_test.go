package api_test

import (
	"context"
	"strings"
	"testing"

	"rampart.dev/rampart/access"
	"rampart.dev/rampart/api"
)

// Bad text over real HTTP (invariant 7): each body below was accepted before, the first stored
// as "caf\ufffd" (encoding/json repaired it), the second as "evil" (the last copy won over the
// one a proxy or a log in front would have read), the third with a right-to-left override that
// makes `audit tail` show another text. Each is refused with 400 naming the field, and nothing
// is stored or recorded.
func TestBadTextRefusedOverHTTP(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	alice := r.client("alice")
	tok := alice.Token
	c, err := alice.CreateRequest(ctx, api.CreateRequestBody{Role: "weights-reader-frontier-7", Reason: "eval run 4411", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	bob := r.client("bob")
	for _, tc := range []struct {
		name, path, token, body, want string
	}{
		{"invalid UTF-8", "/v1/requests", tok, "{\"role\":\"weights-reader-frontier-7\",\"reason\":\"caf\xe9 run\"}", `field "reason" is not valid UTF-8`},
		{"duplicate key", "/v1/requests", tok, `{"role":"weights-reader-frontier-7","reason":"benign","reason":"evil"}`, `field "reason" appears twice`},
		{"bidi override", "/v1/requests", tok, `{"role":"weights-reader-frontier-7","reason":"routine \u202edevorppa\u202c"}`, `field "reason" contains U+202E RIGHT-TO-LEFT OVERRIDE`},
		{"lone surrogate", "/v1/requests", tok, `{"role":"weights-reader-frontier-7","reason":"x\udbff"}`, `field "reason" has an unpaired UTF-16 surrogate`},
		{"duplicate role", "/v1/requests", tok, `{"role":"weights-reader-frontier-7","role":"weights-writer-frontier-7","reason":"x"}`, `field "role" appears twice`},
		{"comment", "/v1/requests/" + c.Request.ID + "/approve", bob.Token, `{"comment":"looks fine \u2066\u2069"}`, `field "comment" contains U+2066 LEFT-TO-RIGHT ISOLATE`},
		{"check batch", "/v1/check/batch", tok, `{"checks":[{"subject":"alice","action":"read","resource":"weights/frontier-7","resource":"x"}]}`, `field "checks[0].resource" appears twice`},
	} {
		before := r.ledgerSize()
		status, m := r.raw("POST", tc.path, tc.token, "application/json", []byte(tc.body))
		if status != 400 || !strings.Contains(errMsg(m), tc.want) {
			t.Errorf("%s: %d %q, want 400 saying %q", tc.name, status, errMsg(m), tc.want)
		}
		if after := r.ledgerSize(); after != before {
			t.Errorf("%s: the ledger grew (%d → %d)", tc.name, before, after)
		}
	}
	rs, _ := r.in.Store.ListRequests(ctx, access.RequestFilter{})
	if len(rs) != 1 {
		t.Fatalf("%d requests stored, want only the honest one", len(rs))
	}
	if v, _ := alice.GetRequest(ctx, c.Request.ID); len(v.Reviews) != 0 {
		t.Fatalf("a review with a hostile comment was stored: %+v", v.Reviews)
	}
}
