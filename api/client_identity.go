package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/identity/signin"
)

// OAuthError is an error answer of the sign-in endpoints (OAuth style).
type OAuthError struct {
	Status int
	signin.TokenError
}

func (e *OAuthError) Error() string {
	if e.Description != "" {
		return e.Description
	}
	return fmt.Sprintf("sign-in failed: %s (HTTP %d)", e.TokenError.Error, e.Status)
}

// authCall posts to a sign-in endpoint: a form (token endpoint) or JSON, decoding success into
// out and OAuth-style errors into *OAuthError.
func (c *Client) authCall(ctx context.Context, path string, form url.Values, jsonBody any, out any) error {
	var body io.Reader
	ctype := ""
	switch {
	case form != nil:
		body, ctype = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
	case jsonBody != nil:
		b, err := json.Marshal(jsonBody)
		if err != nil {
			return err
		}
		body, ctype = strings.NewReader(string(b)), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Device != "" {
		req.Header.Set(signin.DeviceHeader, c.Device)
	}
	req.Header.Set("User-Agent", "rampart-cli")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := guarded(hc).Do(req)
	if perr := refused(err); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("cannot reach the Rampart server at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		oe := &OAuthError{Status: resp.StatusCode}
		if json.Unmarshal(raw, &oe.TokenError) != nil || oe.TokenError.Error == "" {
			var e struct {
				Error *Error `json:"error"`
			}
			se := &ServerError{Status: resp.StatusCode, Body: string(raw)}
			if json.Unmarshal(raw, &e) == nil && e.Error != nil {
				se.Code, se.Message = e.Error.Code, e.Error.Message
			}
			return se
		}
		return oe
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// DeviceAuthorization starts a device sign-in.
func (c *Client) DeviceAuthorization(ctx context.Context) (signin.DeviceResponse, error) {
	var out signin.DeviceResponse
	err := c.authCall(ctx, "/v1/auth/device", nil, nil, &out)
	return out, err
}

// AuthToken calls the token endpoint with a grant.
func (c *Client) AuthToken(ctx context.Context, form url.Values) (signin.TokenResponse, error) {
	var out signin.TokenResponse
	err := c.authCall(ctx, "/v1/auth/token", form, nil, &out)
	return out, err
}

// StepUp records a TOTP code as a fresh second factor in the caller's session.
func (c *Client) StepUp(ctx context.Context, otp string) error {
	return c.authCall(ctx, "/v1/auth/step-up", nil, map[string]string{"otp": otp}, nil)
}

// EnrolTOTP starts enrolling a TOTP factor: the secret and its otpauth URI. otp, if set, is a
// code of the factor it replaces (the proof that the person holds it).
func (c *Client) EnrolTOTP(ctx context.Context, otp string) (map[string]string, error) {
	var out map[string]string
	var body any
	if otp != "" {
		body = map[string]string{"otp": otp}
	}
	err := c.authCall(ctx, "/v1/mfa/totp", nil, body, &out)
	return out, err
}

// ConfirmTOTP confirms the enrolment with a first code.
func (c *Client) ConfirmTOTP(ctx context.Context, otp string) error {
	return c.authCall(ctx, "/v1/mfa/totp/confirm", nil, map[string]string{"otp": otp}, nil)
}

// Sessions lists sign-in sessions: the caller's, a subject's, or everyone's (all).
func (c *Client) Sessions(ctx context.Context, subject string, all bool) ([]identity.Session, error) {
	q := url.Values{}
	if subject != "" {
		q.Set("subject", subject)
	}
	if all {
		q.Set("all", "true")
	}
	var out []identity.Session
	err := c.do(ctx, "GET", "/v1/sessions", q, nil, &out)
	return out, err
}

// RevokeSession ends a session now.
func (c *Client) RevokeSession(ctx context.Context, id, reason string) error {
	return c.do(ctx, "POST", "/v1/sessions/"+url.PathEscape(id)+"/revoke", nil, map[string]string{"reason": reason}, nil)
}

// Users lists the people Rampart has seen sign in or has disabled.
func (c *Client) Users(ctx context.Context) ([]identity.User, error) {
	var out []identity.User
	err := c.do(ctx, "GET", "/v1/users", nil, nil, &out)
	return out, err
}

// UserAction disables, enables or unbinds a user, or resets their second factor ("mfa/reset").
func (c *Client) UserAction(ctx context.Context, subject, action string) error {
	return c.do(ctx, "POST", "/v1/users/"+url.PathEscape(subject)+"/"+action, nil, nil, nil)
}

// DisableUser disables a person and says what that ended (admins).
func (c *Client) DisableUser(ctx context.Context, subject, reason string) (UserDisabled, error) {
	var out UserDisabled
	err := c.do(ctx, "POST", "/v1/users/"+url.PathEscape(subject)+"/disable", nil, map[string]string{"reason": reason}, &out)
	return out, err
}
