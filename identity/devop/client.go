package devop

import (
	"errors"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// client is a configured Client as the op package sees it (op.Client).
type client struct {
	Client
	idTokenTTL time.Duration
	loginURL   func(authRequestID string) string
}

func (c *client) public() bool { return c.Secret == "" }

// redirectAllowed reports whether uri is one of the client's redirect URIs: byte for byte, or,
// for a registered http loopback URI, the same URI with any port (RFC 8252, section 7.3).
func (c *client) redirectAllowed(uri string) bool {
	if slices.Contains(c.Client.RedirectURIs, uri) {
		return true
	}
	req, err := url.Parse(uri)
	if err != nil || req.Scheme != "http" || req.User != nil || req.Fragment != "" || req.Opaque != "" {
		return false
	}
	if port := req.Port(); port != "" && !allDigits(port) {
		return false
	}
	for _, registered := range c.Client.RedirectURIs {
		reg, err := url.Parse(registered)
		if err != nil || reg.Scheme != "http" || !isLoopbackHost(reg.Hostname()) {
			continue
		}
		if req.Hostname() == reg.Hostname() && req.EscapedPath() == reg.EscapedPath() && req.RawQuery == reg.RawQuery {
			return true
		}
	}
	return false
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func validateRedirectURI(uri string) error {
	u, err := url.Parse(uri)
	switch {
	case err != nil:
		return err
	case u.Scheme == "" || (u.Host == "" && u.Opaque == ""):
		return errors.New("must be an absolute URI, e.g. http://127.0.0.1/callback")
	case u.Fragment != "":
		return errors.New("must not have a fragment (RFC 6749, section 3.1.2)")
	}
	return nil
}

// GetID implements op.Client.
func (c *client) GetID() string { return c.ID }

// RedirectURIs implements op.Client.
func (c *client) RedirectURIs() []string { return slices.Clone(c.Client.RedirectURIs) }

// PostLogoutRedirectURIs implements op.Client; logout is not supported.
func (c *client) PostLogoutRedirectURIs() []string { return nil }

// ApplicationType implements op.Client: confidential clients are web applications, public ones
// native (which the op package requires to authenticate with PKCE alone).
func (c *client) ApplicationType() op.ApplicationType {
	if c.public() {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// AuthMethod implements op.Client.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public() {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic // client_secret_post is accepted as well
}

// ResponseTypes implements op.Client.
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

// GrantTypes implements op.Client: the configured ones, by default both grants.
func (c *client) GrantTypes() []oidc.GrantType {
	if len(c.Client.GrantTypes) > 0 {
		return slices.Clone(c.Client.GrantTypes)
	}
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeDeviceCode}
}

// LoginURL implements op.Client.
func (c *client) LoginURL(authRequestID string) string { return c.loginURL(authRequestID) }

// AccessTokenType implements op.Client: opaque tokens, so that their expiry follows the
// provider's clock and a disabled user's tokens stop working at once.
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }

// IDTokenLifetime implements op.Client.
func (c *client) IDTokenLifetime() time.Duration { return c.idTokenTTL }

// DevMode implements op.Client. Redirect URIs are checked by this package (redirectAllowed).
func (c *client) DevMode() bool { return false }

// RestrictAdditionalIdTokenScopes implements op.Client.
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// RestrictAdditionalAccessTokenScopes implements op.Client.
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed implements op.Client: scopes beyond the standard ones are dropped.
func (c *client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion implements op.Client: the ID token carries the user's claims
// even when an access token is issued with it.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

// ClockSkew implements op.Client.
func (c *client) ClockSkew() time.Duration { return 0 }
