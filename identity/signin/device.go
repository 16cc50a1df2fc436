package signin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	oidcclient "github.com/zitadel/oidc/v3/pkg/client"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"rampart.dev/rampart/identity"
)

// DeviceResponse is what POST /v1/auth/device returns.
type DeviceResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// deviceFlow is a device authorization at the provider, polled through Rampart.
type deviceFlow struct {
	DeviceCode string    `json:"device_code"` // the provider's; never leaves Rampart
	Interval   int       `json:"interval"`    // seconds
	LastPoll   time.Time `json:"last_poll"`
}

// Device begins a device sign-in: POST /v1/auth/device.
func (s *Service) Device(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if wait, err := s.admitStart(ctx, s.clientOf(r), "oidc-device"); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeJSON(w, http.StatusTooManyRequests, TokenError{Error: "temporarily_unavailable", Description: err.Error()})
		return
	}
	party, err := s.deviceProvider(ctx)
	if err != nil {
		s.tokenError(w, err)
		return
	}
	if party.GetDeviceAuthorizationEndpoint() == "" {
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "unsupported_grant_type",
			Description: "the identity provider does not offer the device authorization grant; run `rampart login --browser` on a machine with a browser (it uses a loopback redirect)"})
		return
	}
	resp, err := rp.DeviceAuthorization(ctx, s.cfg.Scopes, party, nil)
	if err != nil {
		if why, ok := s.deviceRefused(err); ok {
			// The provider has the grant but not for this client: Okta and Auth0 allow it only to
			// native applications, Entra ID only with public client flows enabled. The CLI falls
			// back to the browser on unsupported_grant_type.
			s.d.Logger.Warn("the identity provider refused the device flow", "client_id", party.OAuthConfig().ClientID, "err", err)
			writeJSON(w, http.StatusBadRequest, TokenError{Error: "unsupported_grant_type", Description: why})
			return
		}
		s.tokenError(w, classify(err))
		return
	}
	interval := max(resp.Interval, 5)
	if resp.Interval > 0 && resp.Interval < 5 {
		interval = resp.Interval // a provider may ask for faster polling (the development one does)
	}
	ttl := time.Duration(resp.ExpiresIn) * time.Second
	if ttl <= 0 || ttl > 30*time.Minute {
		ttl = 15 * time.Minute
	}
	h, err := s.putFlow(ctx, "device", ttl, deviceFlow{DeviceCode: resp.DeviceCode, Interval: interval})
	if err != nil {
		s.tokenError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, DeviceResponse{DeviceCode: h, UserCode: resp.UserCode, VerificationURI: resp.VerificationURI,
		VerificationURIComplete: resp.VerificationURIComplete, ExpiresIn: int(ttl / time.Second), Interval: interval})
}

// deviceRefused recognises the provider's refusal to let this client use the device grant, and
// says what to do about it.
func (s *Service) deviceRefused(err error) (string, bool) {
	var oe *oidc.Error
	if !errors.As(err, &oe) {
		return "", false
	}
	switch oe.ErrorType {
	case oidc.UnauthorizedClient, oidc.InvalidClient, oidc.UnsupportedGrantType:
	default:
		return "", false
	}
	client, fix := s.cfg.ClientID, "register a public (native) application for the CLI with the device flow allowed, and name it in oidc.cli_client_id (docs/identity.md)"
	if s.cfg.CLIClientID != "" {
		client, fix = s.cfg.CLIClientID, "allow the device authorization grant for it at the provider, and no client secret unless the provider demands one (docs/identity.md)"
	}
	return fmt.Sprintf("the identity provider does not let client %q use the device flow (%s: %s): %s; meanwhile sign in with `rampart login --browser`",
		client, oe.ErrorType, providerText(oe.Description), fix), true
}

// pollDevice asks the provider once whether the person finished the device sign-in.
func (s *Service) pollDevice(w http.ResponseWriter, r *http.Request, h string) (identity.Issued, error) {
	ctx := r.Context()
	if h == "" || len(h) > 128 {
		return identity.Issued{}, fmt.Errorf("%w: device_code is missing", ErrBadRequest)
	}
	id := identity.HashToken(h)
	fl, err := s.d.Store.GetFlow(ctx, id, "device", s.d.Now())
	if errors.Is(err, identity.ErrFlowNotFound) {
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "expired_token", Description: "this device sign-in is unknown, finished or expired; run rampart login again"})
		return identity.Issued{}, errAnswered
	} else if err != nil {
		return identity.Issued{}, err
	}
	var df deviceFlow
	if err := json.Unmarshal(fl.Data, &df); err != nil {
		return identity.Issued{}, err
	}
	now := s.d.Now()
	if !df.LastPoll.IsZero() && now.Sub(df.LastPoll) < time.Duration(df.Interval)*time.Second/2 {
		df.Interval += 5
		df.LastPoll = now
		b, _ := json.Marshal(df)
		_ = s.d.Store.ReplaceFlowData(ctx, id, b)
		writeJSON(w, http.StatusBadRequest, TokenError{Error: "slow_down", Description: fmt.Sprintf("poll at most every %d seconds", df.Interval)})
		return identity.Issued{}, errAnswered
	}
	df.LastPoll = now
	b, _ := json.Marshal(df)
	if err := s.d.Store.ReplaceFlowData(ctx, id, b); err != nil {
		return identity.Issued{}, fmt.Errorf("%w: this device sign-in was already finished", ErrBadRequest)
	}
	party, err := s.deviceProvider(ctx)
	if err != nil {
		return identity.Issued{}, err
	}
	resp, err := pollOnce(ctx, party, df.DeviceCode)
	var oe *oidc.Error
	if errors.As(err, &oe) {
		switch oe.ErrorType {
		case oidc.AuthorizationPending, oidc.SlowDown:
			if oe.ErrorType == oidc.SlowDown {
				df.Interval += 5
				b, _ := json.Marshal(df)
				_ = s.d.Store.ReplaceFlowData(ctx, id, b)
			}
			writeJSON(w, http.StatusBadRequest, TokenError{Error: string(oe.ErrorType), Description: "waiting for the sign-in in the browser"})
			return identity.Issued{}, errAnswered
		}
		_, _ = s.d.Store.TakeFlow(ctx, id, "device", now)
		err := fmt.Errorf("%w: the identity provider ended the device sign-in: %s %s", ErrDenied, oe.ErrorType, providerText(oe.Description))
		if why, ok := s.deviceRefused(oe); ok {
			err = fmt.Errorf("%w: %s", ErrDenied, why) // e.g. Entra ID refusing a secret from a public client
		}
		return identity.Issued{}, s.refuse(ctx, identityClaims{}, s.clientOf(r), "oidc-device", decision{}, err)
	} else if err != nil {
		return identity.Issued{}, classify(err)
	}
	// Only one poller may finish the flow.
	if _, err := s.d.Store.TakeFlow(ctx, id, "device", now); err != nil {
		return identity.Issued{}, fmt.Errorf("%w: this device sign-in was already finished", ErrBadRequest)
	}
	claims, err := rp.VerifyIDToken[*oidc.IDTokenClaims](ctx, resp.IDToken, party.IDTokenVerifier())
	c := s.clientOf(r)
	if err != nil {
		return identity.Issued{}, s.refuse(ctx, identityClaims{}, c, "oidc-device", decision{}, classify(err))
	}
	idc, err := s.claimsOf(claims)
	if err != nil {
		return identity.Issued{}, s.refuse(ctx, idc, c, "oidc-device", decision{}, err)
	}
	return s.admitAPI(ctx, idc, c, "oidc-device")
}

// pollOnce makes one device access token request (rp.DeviceAccessToken loops until done; the
// CLI does the waiting here, so each of its polls is one request to the provider). A public
// client sends its id in the form and no secret: Entra ID refuses a secret from one.
func pollOnce(ctx context.Context, party rp.RelyingParty, deviceCode string) (*oidc.AccessTokenResponse, error) {
	req := &oidcclient.DeviceAccessTokenRequest{
		DeviceAccessTokenRequest: oidc.DeviceAccessTokenRequest{GrantType: oidc.GrantTypeDeviceCode, DeviceCode: deviceCode},
		ClientCredentialsRequest: &oidc.ClientCredentialsRequest{},
	}
	cfg := party.OAuthConfig()
	var authFn any
	if cfg.ClientSecret != "" && cfg.Endpoint.AuthStyle != oauth2.AuthStyleInParams {
		authFn = httphelper.AuthorizeBasic(cfg.ClientID, cfg.ClientSecret) // client_secret_basic, the OAuth default
	} else {
		authFn = httphelper.FormAuthorization(func(v url.Values) {
			v.Set("client_id", cfg.ClientID)
			if cfg.ClientSecret != "" {
				v.Set("client_secret", cfg.ClientSecret)
			}
		})
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := oidcclient.CallDeviceAccessTokenEndpointWithAuthFn(ctx, req, tokenCaller{party}, authFn)
	if err == nil && resp.IDToken == "" {
		return nil, rp.ErrMissingIDToken
	}
	return resp, err
}

type tokenCaller struct{ rp.RelyingParty }

func (t tokenCaller) TokenEndpoint() string { return t.OAuthConfig().Endpoint.TokenURL }
