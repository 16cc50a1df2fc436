package signin_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
)

// call posts body to a Rampart endpoint with a bearer token.
func (e *env) call(tok, path, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	return e.do(req)
}

// Issue 11, item 7 (invariant 8): from a password-only session an attacker enrolled a TOTP
// factor and then satisfied require_step_up with it. Enrolling or replacing a factor now needs a
// factor the person already has (or the provider's multi-factor authentication, or an
// administrator's allowance); it is a High ledger entry marked for the person to be told; and a
// factor enrolled in the last day, other than under the provider's multi-factor authentication,
// does not count for approvals.
func TestStepUpNeedsAFactorTheAttackerDoesNotControl(t *testing.T) {
	e := newEnv(t, envOptions{stepUp: "totp"})
	ctx := context.Background()

	// The attack: a password-only session (the thief has frank's password, or his session).
	b := e.browser("")
	b.signInAtProvider(b.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	stolen := b.sessionCookie()
	if st, out := e.call(stolen, "/v1/mfa/totp", ""); st != http.StatusForbidden || out["error"] != "mfa_required" {
		t.Fatalf("a password-only session enrolled a factor: %d %v", st, out)
	}
	if f, err := e.store.MFAFactor(ctx, "frank"); err == nil {
		t.Fatalf("the refused enrolment left a factor: %+v", f)
	}

	// The provider's multi-factor authentication enrols a factor that counts at once.
	a := e.browser("")
	done := a.signInAtProvider(a.get(e.srv.URL+"/login?step_up=1"), "alice", "alice-pw", totp(t, time.Now()))
	if done.status != 200 {
		t.Fatalf("alice's multi-factor sign-in: %d %s", done.status, done.body)
	}
	alice := a.sessionCookie()
	st, enr := e.call(alice, "/v1/mfa/totp", "")
	if st != 200 || enr["via"] != identity.MFAViaIdP {
		t.Fatalf("enrolment under the provider's MFA: %d %v", st, enr)
	}
	key, _ := identity.DecodeTOTPSecret(enr["secret"].(string))
	code := func(at time.Time) string { return identity.TOTPAt(key, identity.TOTPStepAt(at)) }
	if st, out := e.call(alice, "/v1/mfa/totp/confirm", `{"otp":"`+code(e.now())+`"}`); st != 200 {
		t.Fatalf("confirm: %d %v", st, out)
	}
	entry := e.entriesOf("mfa.enrolled")
	if len(entry) != 1 || !strings.Contains(entry[0].raw, `"severity_id":4`) || !strings.Contains(entry[0].raw, `"notify":{"subject":"alice"`) {
		t.Fatalf("the enrolment entry: %+v", entry)
	}
	if st, out := e.call(alice, "/v1/auth/step-up", `{"otp":"`+code(e.now().Add(identity.TOTPStep))+`"}`); st != 200 || out["trusted_mfa_at"] == nil {
		t.Fatalf("a step-up with a factor enrolled under the provider's MFA: %d %v", st, out)
	}

	// frank lost his phone: an administrator allows one enrolment. The factor works, but a
	// step-up with it does not count for approvals for a day.
	if _, err := e.sessions.AllowMFAEnrolment(ctx, "frank", "erin"); err != nil {
		t.Fatal(err)
	}
	st, enr = e.call(stolen, "/v1/mfa/totp", "")
	if st != 200 || enr["via"] != identity.MFAViaAdmin {
		t.Fatalf("enrolment under an allowance: %d %v", st, enr)
	}
	fkey, _ := identity.DecodeTOTPSecret(enr["secret"].(string))
	fcode := func(at time.Time) string { return identity.TOTPAt(fkey, identity.TOTPStepAt(at)) }
	// Only the session that started an enrolment confirms it.
	other := e.browser("")
	other.signInAtProvider(other.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	if st, out := e.call(other.sessionCookie(), "/v1/mfa/totp/confirm", `{"otp":"`+fcode(e.now())+`"}`); st != http.StatusConflict {
		t.Fatalf("a confirmation from another session: %d %v", st, out)
	}
	if st, out := e.call(stolen, "/v1/mfa/totp/confirm", `{"otp":"`+fcode(e.now())+`"}`); st != 200 {
		t.Fatalf("confirm: %d %v", st, out)
	}
	if st, out := e.call(stolen, "/v1/mfa/totp", ""); st != http.StatusForbidden {
		t.Fatalf("the allowance was used twice: %d %v", st, out)
	}
	if st, out := e.call(stolen, "/v1/auth/step-up", `{"otp":"`+fcode(e.now().Add(identity.TOTPStep))+`"}`); st != 200 || out["trusted_mfa_at"] != nil {
		t.Fatalf("a step-up with a factor enrolled an hour ago: %d %v", st, out)
	}
	p, err := e.auth.Verify(ctx, stolen)
	if err != nil || p.MFAAt.IsZero() || !p.TrustedMFAAt.IsZero() {
		t.Fatalf("the session after a step-up with a young factor: %+v %v; want MFAAt set and TrustedMFAAt zero", p, err)
	}

	// A day later the factor is trusted.
	e.ahead.Add(int64(identity.FactorTrustAge + time.Hour))
	f2 := e.browser("")
	f2.signInAtProvider(f2.get(e.srv.URL+"/login"), "frank", "frank-pw", "")
	later := f2.sessionCookie()
	if st, out := e.call(later, "/v1/auth/step-up", `{"otp":"`+fcode(e.now())+`"}`); st != 200 || out["trusted_mfa_at"] == nil {
		t.Fatalf("a step-up with a day-old factor: %d %v", st, out)
	}

	// Replacing it needs a code of it; the replacement is young again, and recorded.
	if st, out := e.call(later, "/v1/mfa/totp", `{"otp":"000000"}`); st != http.StatusForbidden {
		t.Fatalf("replacement with a wrong code: %d %v", st, out)
	}
	st, enr = e.call(later, "/v1/mfa/totp", `{"otp":"`+fcode(e.now().Add(identity.TOTPStep))+`"}`)
	if st != 200 || enr["via"] != identity.MFAViaFactor {
		t.Fatalf("replacement with the current factor: %d %v", st, enr)
	}
	nkey, _ := identity.DecodeTOTPSecret(enr["secret"].(string))
	// Until confirmed, the old factor is the one in use.
	if st, out := e.call(later, "/v1/auth/step-up", `{"otp":"`+fcode(e.now().Add(-identity.TOTPStep))+`"}`); st != http.StatusForbidden {
		t.Fatalf("an older code of the old factor: %d %v", st, out)
	}
	if st, out := e.call(later, "/v1/mfa/totp/confirm", `{"otp":"`+identity.TOTPAt(nkey, identity.TOTPStepAt(e.now()))+`"}`); st != 200 {
		t.Fatalf("confirm the replacement: %d %v", st, out)
	}
	if got := e.entriesOf("mfa.replaced"); len(got) != 1 || !strings.Contains(got[0].raw, `"severity_id":4`) {
		t.Fatalf("the replacement entry: %+v", got)
	}
}
