package api

import (
	"testing"

	"rampart.dev/rampart/identity"
)

// Every kind of credential against the review rule (invariant 8): only a person's own session,
// or a token bound to it, reviews.
func TestOwnSession(t *testing.T) {
	for _, tc := range []struct {
		p  identity.Principal
		ok bool
	}{
		{identity.Principal{Subject: "bob", Kind: identity.KindUser, TokenID: "ses_a", SessionID: "ses_a"}, true},
		{identity.Principal{Subject: "bob", Kind: identity.KindUser, TokenID: "tok_a", SessionID: "ses_a"}, true},
		{identity.Principal{Subject: "bob", Kind: identity.KindUser, TokenID: "tok_a"}, false},
		{identity.Principal{Subject: "service:ci", Kind: identity.KindService, TokenID: "tok_b"}, false},
		{identity.Principal{Subject: "service:ci", Kind: identity.KindService, TokenID: "tok_b", SessionID: "ses_x"}, false},
		{identity.Principal{Subject: "k8s:prod/ml/trainer", Kind: identity.KindWorkload}, false},
		{identity.Principal{Subject: "k8s:prod/ml/trainer", Kind: identity.KindWorkload, SessionID: "ses_x"}, false},
	} {
		if err := ownSession(caller{Principal: tc.p}, "approve"); (err == nil) != tc.ok {
			t.Errorf("%+v: %v, want ok=%v", tc.p, err, tc.ok)
		}
	}
}
