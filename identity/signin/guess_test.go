package signin_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"rampart.dev/rampart/identity"
)

// Invariant 8: with a person's password or a stolen password-only session, an attacker could
// send step-up codes without limit; a six-digit code (three steps accepted) falls to about
// 333,000 guesses, minutes at the rate a server answers. At most identity.MaxMFAAttempts codes
// of a person are checked per identity.MFAAttemptWindow: after that even the right code is
// refused (429) until the window ends, racing guesses included; a right code within the limit
// resets the count.
func TestOneTimeCodesCannotBeGuessed(t *testing.T) {
	e := newEnv(t, envOptions{stepUp: "totp"})

	// alice holds a factor, enrolled under the provider's multi-factor authentication.
	a := e.browser("")
	if done := a.signInAtProvider(a.get(e.srv.URL+"/login?step_up=1"), "alice", "alice-pw", totp(t, time.Now())); done.status != 200 {
		t.Fatalf("alice's multi-factor sign-in: %d %s", done.status, done.body)
	}
	alice := a.sessionCookie()
	st, enr := e.call(alice, "/v1/mfa/totp", "")
	if st != 200 {
		t.Fatalf("enrol: %d %v", st, enr)
	}
	key, _ := identity.DecodeTOTPSecret(enr["secret"].(string))
	code := func(at time.Time) string { return identity.TOTPAt(key, identity.TOTPStepAt(at)) }
	if st, out := e.call(alice, "/v1/mfa/totp/confirm", `{"otp":"`+code(e.now())+`"}`); st != 200 {
		t.Fatalf("confirm: %d %v", st, out)
	}
	wrong := func(at time.Time) string { // a code that is none of the three accepted at at
		for i := 0; ; i++ {
			c := fmt.Sprintf("%06d", i)
			if c != code(at.Add(-identity.TOTPStep)) && c != code(at) && c != code(at.Add(identity.TOTPStep)) {
				return c
			}
		}
	}

	// The thief has her password: a password-only session of hers.
	b := e.browser("")
	b.signInAtProvider(b.get(e.srv.URL+"/login"), "alice", "alice-pw", "")
	stolen := b.sessionCookie()
	// A right code within the limit resets the count: four wrong, one right, four wrong again.
	for i := 0; i < identity.MaxMFAAttempts-1; i++ {
		if st, out := e.call(stolen, "/v1/auth/step-up", `{"otp":"`+wrong(e.now())+`"}`); st != http.StatusForbidden {
			t.Fatalf("wrong code %d: %d %v", i+1, st, out)
		}
	}
	if st, out := e.call(alice, "/v1/auth/step-up", `{"otp":"`+code(e.now().Add(identity.TOTPStep))+`"}`); st != 200 {
		t.Fatalf("alice's own right code after four wrong ones: %d %v", st, out)
	}
	// Now a burst of guesses, racing: at most MaxMFAAttempts are looked at.
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _ := e.call(stolen, "/v1/auth/step-up", `{"otp":"`+wrong(e.now())+`"}`)
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[http.StatusForbidden] != identity.MaxMFAAttempts || statuses[http.StatusTooManyRequests] != 40-identity.MaxMFAAttempts {
		t.Fatalf("40 racing guesses: %v; want %d checked (403) and the rest refused unchecked (429)", statuses, identity.MaxMFAAttempts)
	}
	// Past the limit even the right code is refused, from any session, and says until when.
	right := code(e.now().Add(identity.TOTPStep))
	if st, out := e.call(alice, "/v1/auth/step-up", `{"otp":"`+right+`"}`); st != http.StatusTooManyRequests || !strings.Contains(fmt.Sprint(out["error_description"]), "no code is accepted until") {
		t.Fatalf("the right code past the limit: %d %v", st, out)
	}
	// When the window ends, codes are checked again.
	e.ahead.Add(int64(identity.MFAAttemptWindow))
	c := e.browser("")
	c.signInAtProvider(c.get(e.srv.URL+"/login"), "alice", "alice-pw", "") // her access token expired meanwhile
	if st, out := e.call(c.sessionCookie(), "/v1/auth/step-up", `{"otp":"`+code(e.now())+`"}`); st != 200 {
		t.Fatalf("the right code after the window: %d %v", st, out)
	}
}
