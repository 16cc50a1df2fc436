package signin

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/risk"
	"rampart.dev/rampart/internal/strictjson"
)

// Grant types of POST /v1/auth/token.
const (
	GrantCode    = "authorization_code"
	GrantDevice  = "urn:ietf:params:oauth:grant-type:device_code"
	GrantRefresh = "refresh_token"
	// GrantOTP finishes a sign-in that needs a second factor (error mfa_required) with a code
	// of the person's Rampart TOTP factor.
	GrantOTP = "urn:rampart:params:oauth:grant-type:otp"
)

// TokenResponse is what POST /v1/auth/token returns on success.
type TokenResponse struct {
	AccessToken  string           `json:"access_token"`
	RefreshToken string           `json:"refresh_token"`
	TokenType    string           `json:"token_type"`
	ExpiresIn    int              `json:"expires_in"`
	Session      identity.Session `json:"session"`
}

// TokenError is an OAuth-style error (RFC 6749 section 5.2, RFC 8628 section 3.5).
type TokenError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	// MFAToken is set with error mfa_required: redeem it with grant GrantOTP.
	MFAToken string `json:"mfa_token,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// oauthCode is the OAuth error code for an error.
func oauthCode(err error) string {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, identity.ErrRefreshReused):
		return "invalid_grant"
	case errors.Is(err, ErrDenied):
		return "access_denied"
	case errors.Is(err, identity.ErrUnauthenticated):
		return "invalid_grant"
	}
	return "temporarily_unavailable"
}

func (s *Service) tokenError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if errors.Is(err, identity.ErrUnauthenticated) || errors.Is(err, identity.ErrRefreshReused) {
		status = http.StatusBadRequest
	}
	if status >= 500 {
		s.d.Logger.Error("sign-in failed", "err", err)
	}
	writeJSON(w, status, TokenError{Error: oauthCode(err), Description: err.Error()})
}

// Token is POST /v1/auth/token (application/x-www-form-urlencoded, as OAuth clients send).
func (s *Service) Token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: "the body must be an application/x-www-form-urlencoded form of at most 16 KiB: " + err.Error()})
		return
	}
	f := r.PostForm
	var (
		iss identity.Issued
		err error
	)
	switch g := f.Get("grant_type"); g {
	case GrantCode:
		iss, err = s.redeemCode(r, f.Get("code"), f.Get("code_verifier"), f.Get("redirect_uri"))
	case GrantDevice:
		iss, err = s.pollDevice(w, r, f.Get("device_code"))
		if err == errAnswered {
			return
		}
	case GrantRefresh:
		iss, err = s.refresh(r, f.Get("refresh_token"))
	case GrantOTP:
		iss, err = s.redeemOTP(r, f.Get("mfa_token"), f.Get("otp"))
	default:
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "unsupported_grant_type",
			Description: fmt.Sprintf("grant_type %q is not one of %s, %s, %s, %s", g, GrantCode, GrantDevice, GrantRefresh, GrantOTP)})
		return
	}
	if err != nil {
		var mfa *mfaRequired
		if errors.As(err, &mfa) {
			writeJSON(w, http.StatusUnauthorized, TokenError{Error: "mfa_required", Description: err.Error(), MFAToken: mfa.token})
			return
		}
		s.tokenError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenResponse{AccessToken: iss.AccessToken, RefreshToken: iss.RefreshToken, TokenType: "Bearer",
		ExpiresIn: int(iss.AccessExpiresAt.Sub(s.d.Now()) / time.Second), Session: iss.Session})
}

// errAnswered means the handler already wrote the response.
var errAnswered = errors.New("answered")

// mfaRequired asks the client for a TOTP code.
type mfaRequired struct {
	token, why string
}

func (m *mfaRequired) Error() string {
	return "this sign-in needs a code from your authenticator app (" + m.why + "); send it with grant_type " + GrantOTP
}

// redeemCode finishes a loopback CLI sign-in: the one-time code, the CLI's PKCE verifier and
// the same redirect URI. A wrong verifier burns the code.
func (s *Service) redeemCode(r *http.Request, code, verifier, redirect string) (identity.Issued, error) {
	var p pending
	if err := s.takeFlow(r.Context(), code, "code", &p); err != nil {
		return identity.Issued{}, err
	}
	c := s.clientOf(r)
	switch {
	case p.CLI == nil:
		return identity.Issued{}, fmt.Errorf("%w: not a CLI sign-in code", ErrBadRequest)
	case redirect != p.CLI.RedirectURI:
		return identity.Issued{}, s.refuse(r.Context(), p.ID, c, p.Method, p.decision(), fmt.Errorf("%w: redirect_uri differs from the one the sign-in started with", ErrBadRequest))
	case len(verifier) < 43 || len(verifier) > 128 || subtle.ConstantTimeCompare([]byte(s256(verifier)), []byte(p.CLI.Challenge)) != 1:
		return identity.Issued{}, s.refuse(r.Context(), p.ID, c, p.Method, p.decision(), fmt.Errorf("%w: the PKCE code_verifier does not match the challenge; the code is spent, sign in again", ErrBadRequest))
	}
	// The session belongs to the CLI that redeemed the code (the browser only did the
	// provider's part): its refreshes are compared with this client.
	p.Client = c
	return s.open(r.Context(), p, nil)
}

// admitAPI finishes a sign-in that has no browser (device flow): allow, ask for a TOTP code, or
// refuse.
func (s *Service) admitAPI(ctx context.Context, id identityClaims, c client, method string) (identity.Issued, error) {
	d, err := s.assess(ctx, id, c, risk.KindSignIn)
	if err != nil {
		return identity.Issued{}, s.refuse(ctx, id, c, method, decision{}, err)
	}
	p := pending{ID: id, Client: c, Method: method}
	p.setDecision(d)
	switch d.outcome {
	case risk.Allow:
		return s.open(ctx, p, nil)
	case risk.StepUp:
		m, err := s.stepUpMethod(ctx, id.Subject)
		if err != nil {
			return identity.Issued{}, s.refuse(ctx, id, c, method, d, err)
		}
		if m == StepUpIdP {
			return identity.Issued{}, s.refuse(ctx, id, c, method, d, fmt.Errorf(
				"%w: this sign-in needs a fresh multi-factor authentication (%s), which the device flow cannot ask the identity provider for; run `rampart login --browser`", ErrDenied, d.assessment))
		}
		ev := s.authEvent("signin.step_up_required", id, c, method, d, false, fmt.Sprintf("sign-in of %s needs a second factor (totp): %s", id.Subject, d.assessment))
		if err := s.d.Record(ctx, ev); err != nil {
			return identity.Issued{}, err
		}
		h, err := s.putFlow(ctx, "mfa", mfaFlowTTL, p)
		if err != nil {
			return identity.Issued{}, err
		}
		return identity.Issued{}, &mfaRequired{token: h, why: d.assessment.String()}
	}
	return identity.Issued{}, s.refuse(ctx, id, c, method, d, fmt.Errorf("%w: this sign-in looks too risky (%s); ask your security team, quoting the time %s",
		ErrDenied, d.assessment, s.d.Now().UTC().Format(time.RFC3339)))
}

// redeemOTP finishes a sign-in that needed a second factor.
func (s *Service) redeemOTP(r *http.Request, h, code string) (identity.Issued, error) {
	var p pending
	if err := s.takeFlow(r.Context(), h, "mfa", &p); err != nil {
		return identity.Issued{}, err
	}
	f, err := s.checkTOTP(r.Context(), p.ID.Subject, code)
	if err != nil {
		return identity.Issued{}, s.refuse(r.Context(), p.ID, s.clientOf(r), "totp", p.decision(), fmt.Errorf("%w (sign in again)", err))
	}
	p.TOTP, p.TOTPTrusted = true, f.Trusted(s.d.Now())
	p.Decision.Outcome, p.Decision.Reason = risk.Allow, "Rampart TOTP factor"
	return s.open(r.Context(), p, []string{"otp"})
}

// refresh rotates a session's tokens after the risk engine has compared this client with the
// one the session was last used from. High risk ends the session; medium asks for a new sign-in.
// The assessment runs before the rotation's transaction (it reads the history, and a refusal
// writes to the ledger).
func (s *Service) refresh(r *http.Request, token string) (identity.Issued, error) {
	ctx := r.Context()
	c := s.clientOf(r)
	if len(token) > 128 {
		return identity.Issued{}, fmt.Errorf("%w: not a Rampart refresh token", identity.ErrUnauthenticated)
	}
	ses, tok, _, err := s.d.Sessions.Store.SessionByToken(ctx, identity.HashToken(token))
	if errors.Is(err, identity.ErrSessionNotFound) {
		return identity.Issued{}, fmt.Errorf("%w: unknown refresh token; sign in again", identity.ErrUnauthenticated)
	} else if err != nil {
		return identity.Issued{}, err
	}
	// A token already used is a replay, which Sessions.Refresh answers by revoking the session:
	// it is not scored first, or a replay from a risky place would be refused and spare it.
	if ses.Active(s.d.Now()) && tok.UsedAt.IsZero() {
		sip, _ := netip.ParseAddr(ses.IP)
		as, err := s.d.Risk.Assess(ctx, risk.Attempt{Subject: ses.Subject, Username: ses.Subject, Time: s.d.Now(), IP: c.IP, Fingerprint: c.Fingerprint,
			Kind: risk.KindRefresh, Success: true, SessionIP: sip, SessionFingerprint: ses.Fingerprint, SessionLastSeen: ses.LastSeenAt})
		if err != nil {
			return identity.Issued{}, fmt.Errorf("%w: the risk engine cannot score this refresh (%v)", ErrDenied, err)
		}
		if out := s.cfg.Outcomes.For(as.Level); out != risk.Allow {
			id := identityClaims{Subject: ses.Subject, AMR: ses.AMR}
			err := s.refuse(ctx, id, c, "refresh", decision{outcome: out, assessment: as},
				fmt.Errorf("%w: refreshing session %s looks risky (%s); sign in again", ErrDenied, ses.ID, as))
			if out == risk.Block {
				if rerr := s.d.Sessions.Revoke(context.WithoutCancel(ctx), ses.ID, "rampart", "risky refresh: "+as.String()); rerr != nil {
					s.d.Logger.Error("cannot revoke a session after a risky refresh", "session", ses.ID, "err", rerr)
				}
			}
			return identity.Issued{}, err
		}
	}
	return s.d.Sessions.Refresh(ctx, token, c.IP.String(), c.Fingerprint, func(cur identity.Session) error {
		if cur.ID != ses.ID {
			return fmt.Errorf("%w: the refresh token changed hands during the refresh", ErrBadRequest)
		}
		return nil
	})
}

// sessionOTP authenticates a signed-in session and reads {"otp": "…"}; it answers the request
// itself (false) when either is wrong. With optional, an empty body or no otp is accepted.
func (s *Service) sessionOTP(w http.ResponseWriter, r *http.Request, notSession string, optional bool) (identity.Principal, string, bool) {
	p, err := s.d.Auth.Authenticate(r)
	if err != nil {
		writeJSON(w, http.StatusUnauthorized, TokenError{Error: "invalid_token", Description: err.Error()})
		return p, "", false
	}
	// The session itself: not a token minted from it, which could be anywhere.
	if p.SessionID == "" || p.TokenID != p.SessionID {
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: notSession})
		return p, "", false
	}
	var body struct {
		OTP string `json:"otp"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	raw, err := io.ReadAll(r.Body)
	if err == nil && (len(bytes.TrimSpace(raw)) > 0 || !optional) {
		err = json.Unmarshal(raw, &body)
	}
	if err != nil || (body.OTP == "" && !optional) {
		want := `{"otp": "<6-digit code>"}`
		if optional {
			want = `empty, {}, or {"otp": "<6-digit code of your current factor>"}`
		}
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: "the body must be " + want})
		return p, "", false
	}
	// Duplicate names, invalid UTF-8 and hostile characters are refused, as by the API's decoder
	// (invariant 7).
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := strictjson.Check(raw); err != nil {
			writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: err.Error()})
			return p, "", false
		}
	}
	return p, body.OTP, true
}

// StepUp records a TOTP code as a fresh second factor in the caller's session: POST
// /v1/auth/step-up {"otp": "123456"}. It counts for approvals only if the factor does
// (identity.MFAFactor.Trusted): one enrolled in the last day, other than under the provider's
// multi-factor authentication, does not (invariant 8).
func (s *Service) StepUp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, otp, ok := s.sessionOTP(w, r, "only a signed-in session can step up; API tokens cannot (sign in with rampart login)", false)
	if !ok {
		return
	}
	c := s.clientOf(r)
	id := identityClaims{Subject: p.Subject}
	f, err := s.checkTOTP(ctx, p.Subject, otp)
	if err != nil {
		s.tokenError(w, s.refuse(ctx, id, c, "totp-step-up", decision{}, err))
		return
	}
	now := s.d.Now()
	trusted := f.Trusted(now)
	id.MFA, id.AMR = true, []string{"otp"}
	ev := s.authEvent("session.step_up", id, c, "totp", decision{outcome: risk.Allow}, true, fmt.Sprintf("%s stepped up session %s with a one-time code", p.Subject, p.SessionID))
	ev.Details["session_id"], ev.Details["counts_for_approvals"] = p.SessionID, trusted
	if err := s.d.Sessions.StepUp(ctx, p.SessionID, []string{"otp"}, trusted, ev); err != nil {
		s.tokenError(w, err)
		return
	}
	out := map[string]any{"session_id": p.SessionID, "mfa_at": now.UTC()}
	if trusted {
		out["trusted_mfa_at"] = now.UTC()
	} else {
		out["note"] = fmt.Sprintf("this factor was enrolled at %s and counts for approvals from %s; until then step up at the identity provider (rampart login --step-up)",
			f.ConfirmedAt.UTC().Format(time.RFC3339), f.ConfirmedAt.Add(identity.FactorTrustAge).UTC().Format(time.RFC3339))
	}
	writeJSON(w, http.StatusOK, out)
}

// enrolFresh is how recent the provider's multi-factor authentication must be to enrol a factor
// on its strength.
const enrolFresh = 15 * time.Minute

// EnrolTOTP starts enrolling a TOTP factor for the caller: POST /v1/mfa/totp, from the signed-in
// session itself. Enrolling or replacing a factor needs a factor the person already has
// (invariant 8), so that a stolen password-only session cannot add its own and then satisfy
// require_step_up with it: a code of the current factor ({"otp": "…"}), or a multi-factor
// authentication at the identity provider in the last 15 minutes (rampart login --step-up), or
// an administrator's one-time allowance (rampart mfa allow-enrol). The new factor waits, beside
// the one in use, for its first code (ConfirmTOTP).
func (s *Service) EnrolTOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, otp, ok := s.sessionOTP(w, r, "enrol a second factor from your signed-in session itself (rampart login), not with an API token", true)
	if !ok {
		return
	}
	now := s.d.Now()
	if now.Sub(p.AuthTime) > enrolFresh {
		writeJSON(w, http.StatusForbidden, TokenError{Error: "login_required", Description: "enrolling a second factor needs a sign-in from the last 15 minutes; run rampart login and try again"})
		return
	}
	f, err := s.d.Store.MFAFactor(ctx, p.Subject)
	if err != nil && !errors.Is(err, identity.ErrNoFactor) {
		s.tokenError(w, err)
		return
	}
	f.Subject = p.Subject
	has := !f.ConfirmedAt.IsZero()
	var via string
	switch age := now.Sub(p.IdPMFAAt); {
	case otp != "":
		if !has {
			writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_request", Description: p.Subject + " has no second factor whose code could prove this enrolment; leave otp out"})
			return
		}
		if _, err := s.checkTOTP(ctx, p.Subject, otp); err != nil {
			s.tokenError(w, s.refuse(ctx, identityClaims{Subject: p.Subject}, s.clientOf(r), "totp-enrol", decision{}, err))
			return
		}
		via = identity.MFAViaFactor
	case !p.IdPMFAAt.IsZero() && age <= enrolFresh && age >= -time.Minute:
		via = identity.MFAViaIdP
	default:
		u, err := s.d.Sessions.Store.UserRecord(ctx, p.Subject)
		if err != nil {
			s.tokenError(w, err)
			return
		}
		if now.Before(u.MFAEnrolUntil) {
			via = identity.MFAViaAdmin
			break
		}
		how := "a multi-factor sign-in at the identity provider in the last 15 minutes (rampart login --step-up, then enrol again), or an administrator's allowance (rampart mfa allow-enrol " + p.Subject + ")"
		if has {
			how = "a code of your current factor (rampart mfa enrol --otp CODE), " + how
		}
		writeJSON(w, http.StatusForbidden, TokenError{Error: "mfa_required", Description: "enrolling a second factor needs one you already have: " + how})
		return
	}
	secret := identity.NewTOTPSecret()
	f.Pending = &identity.PendingFactor{SecretEnc: s.d.Sealer.Seal(p.Subject, secret), At: now, Via: via, SessionID: p.SessionID}
	if err := s.d.Store.PutMFAFactor(ctx, f); err != nil {
		s.tokenError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"secret": secret, "otpauth_uri": identity.TOTPURI("Rampart", p.Subject, secret), "via": via,
		"next": "add it to your authenticator app, then confirm with POST /v1/mfa/totp/confirm {\"otp\": \"<code>\"} (rampart mfa confirm) from this session within 15 minutes"})
}

// ConfirmTOTP confirms an enrolment with a first code of the new factor: POST
// /v1/mfa/totp/confirm {"otp"}, from the session that started it. The factor becomes usable in
// one transaction with its High ledger entry (mfa.enrolled or mfa.replaced), marked for the
// person to be told.
func (s *Service) ConfirmTOTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, otp, ok := s.sessionOTP(w, r, "confirm the enrolment from the signed-in session that started it; API tokens cannot", false)
	if !ok {
		return
	}
	f, err := s.d.Store.MFAFactor(ctx, p.Subject)
	if errors.Is(err, identity.ErrNoFactor) || (err == nil && f.Pending == nil) {
		writeJSON(w, http.StatusConflict, TokenError{Error: "invalid_request", Description: "there is no enrolment waiting for confirmation; start one with POST /v1/mfa/totp"})
		return
	} else if err != nil {
		s.tokenError(w, err)
		return
	}
	secret, err := s.d.Sealer.Open(p.Subject, f.Pending.SecretEnc)
	if err != nil {
		s.tokenError(w, err)
		return
	}
	key, _ := identity.DecodeTOTPSecret(secret)
	step, ok := identity.MatchTOTP(key, otp, s.d.Now())
	if !ok {
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "invalid_grant", Description: "the code does not match; check the authenticator app's clock and try the next code"})
		return
	}
	nf, err := s.d.Sessions.ConfirmFactor(ctx, p.Subject, p.SessionID, f.Pending.SecretEnc, step)
	if errors.Is(err, identity.ErrEnrolment) {
		writeJSON(w, http.StatusConflict, TokenError{Error: "invalid_request", Description: err.Error()})
		return
	} else if err != nil {
		s.tokenError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subject": p.Subject, "confirmed_at": nf.ConfirmedAt.UTC(), "via": nf.EnrolledVia,
		"counts_for_approvals_from": nf.ConfirmedAt.Add(trustDelay(nf)).UTC()})
}

func trustDelay(f identity.MFAFactor) time.Duration {
	if f.EnrolledVia == identity.MFAViaIdP {
		return 0
	}
	return identity.FactorTrustAge
}
