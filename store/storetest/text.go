package storetest

import (
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/access"
)

// testTextRefused: every free text the workflow stores (a request's reason, a review's
// comment, a renewal's and a revocation's reason) is refused, not rewritten, when it breaks the
// text rule (invariant 7): a right-to-left override that would make `audit tail` show "approved"
// where the entry says otherwise, an isolate, an invisible tag character, a line separator, or a
// replacement character left by an earlier lossy conversion. Nothing is stored or recorded.
func testTextRefused(t *testing.T, h Harness) {
	e := newEnv(t, h)
	hostile := map[string]string{
		"override":    "routine \u202edevorppa\u202c check",
		"isolate":     "eval \u2067run\u2069 4411",
		"mark":        "eval\u200f 4411",
		"tag":         "eval\U000E0069\U000E0067\U000E006E run",
		"separator":   "line one\u2028line two",
		"replacement": "caf\ufffd run",
		"zero width":  "ev\u200bal",
	}
	for name, s := range hostile {
		t.Logf("reason: %s", name)
		in := weightsRequest()
		in.Reason = s
		e.refused(access.ErrInvalid, "reason contains U+", func() error { _, err := e.svc.Create(e.ctx, in); return err })
	}
	req := e.create(weightsRequest())
	for name, s := range hostile {
		t.Logf("comment: %s", name)
		e.refused(access.ErrInvalid, "comment contains U+", func() error {
			_, err := e.svc.Review(e.ctx, access.ReviewInput{RequestID: req.ID, Approver: "bob", Decision: access.Approve, Comment: s})
			return err
		})
	}
	e.mustReview(req.ID, "bob", access.Approve)
	v := e.mustReview(req.ID, "dave", access.Approve)
	if v.GrantID == "" {
		t.Fatalf("no grant after two approvals: %+v", v)
	}
	e.refused(access.ErrInvalid, "reason contains U+202E", func() error {
		_, err := e.svc.Revoke(e.ctx, v.GrantID, "alice", "done \u202e")
		return err
	})
	e.refused(access.ErrInvalid, "reason is not valid UTF-8", func() error {
		_, err := e.svc.Renew(e.ctx, v.GrantID, "alice", time.Hour, "more \xff")
		return err
	})
	rs, err := e.store.ListRequests(e.ctx, access.RequestFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if strings.ContainsAny(r.Reason, "\u202e\u2067\ufffd") {
			t.Fatalf("a hostile reason was stored: %q", r.Reason)
		}
	}
}
