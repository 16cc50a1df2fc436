package signin

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"golang.org/x/oauth2"
)

// party is one client registration at the provider, discovered at first use.
type party struct {
	mu       sync.Mutex
	rp       rp.RelyingParty
	lastFail time.Time
	failErr  error
}

// authStyle is how the client authenticates at the token endpoint; a public client (no secret)
// sends only its id, in the form.
func (s *Service) authStyle() oauth2.AuthStyle {
	if s.cfg.ClientSecret == "" || s.cfg.ClientAuth == "client_secret_post" {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// clockSkew is how far the provider's clock may be ahead of Rampart's (iat, nbf).
const clockSkew = 30 * time.Second

// provider returns the relying party of the web application (ClientID), which serves the
// browser flow.
func (s *Service) provider(ctx context.Context) (rp.RelyingParty, error) {
	return s.discover(ctx, &s.web, s.cfg.ClientID, s.cfg.ClientSecret, s.authStyle())
}

// deviceProvider returns the relying party the device flow uses: the CLI's public application
// (CLIClientID) when one is configured, which authenticates with its id alone (and Google's
// non-confidential secret, in the form, when set); else the web application.
func (s *Service) deviceProvider(ctx context.Context) (rp.RelyingParty, error) {
	if s.cfg.CLIClientID == "" {
		return s.provider(ctx)
	}
	return s.discover(ctx, &s.cli, s.cfg.CLIClientID, s.cfg.CLIClientSecret, oauth2.AuthStyleInParams)
}

// discover returns p's relying party, discovering the provider on first use. After a failure
// it waits 5 seconds before trying again, so a down provider is not hammered.
func (s *Service) discover(ctx context.Context, p *party, clientID, secret string, style oauth2.AuthStyle) (rp.RelyingParty, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rp != nil {
		return p.rp, nil
	}
	if p.failErr != nil && time.Since(p.lastFail) < 5*time.Second {
		return nil, p.failErr
	}
	party, err := rp.NewRelyingPartyOIDC(ctx, s.cfg.Issuer, clientID, secret, s.RedirectURI(), s.cfg.Scopes,
		rp.WithHTTPClient(s.cfg.HTTPClient),
		rp.WithAuthStyle(style),
		rp.WithVerifierOpts(
			rp.WithNonce(func(ctx context.Context) string { n, _ := ctx.Value(nonceKey{}).(string); return n }),
			rp.WithIssuedAtOffset(clockSkew),
			rp.WithSupportedSigningAlgorithms("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"),
		))
	if err != nil {
		p.lastFail, p.failErr = time.Now(), fmt.Errorf("%w: the identity provider %s cannot be reached or its discovery document is unusable: %v", ErrProvider, s.cfg.Issuer, err)
		s.d.Logger.Error("oidc discovery failed", "issuer", s.cfg.Issuer, "client_id", clientID, "err", err)
		return nil, p.failErr
	}
	p.rp, p.failErr = party, nil
	return party, nil
}
