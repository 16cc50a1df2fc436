package egress

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// credential is how a caller proved who they are: a bearer secret (an API, session or
// service-account token) or a client certificate. Open tunnels keep it, so that every
// revalidation asks again whether it still holds (invariant 8): a revoked or expired credential,
// or a disabled person, closes the tunnel within the revalidation interval plus the verifier's
// cache (one second), on this process and on a gateway running apart from the control plane.
type credential struct {
	secret string
	cert   *x509.Certificate
}

// identify returns the caller's subject ("" for none) and credential, or a refusal.
func (g *Gateway) identify(r *http.Request) (string, credential, *proxyError) {
	if st := tlsState(r); st != nil && len(st.PeerCertificates) > 0 {
		cert := st.PeerCertificates[0]
		if g.cfg.Revoked != nil && g.cfg.Revoked(cert) {
			return "", credential{}, &proxyError{http.StatusForbidden, fmt.Sprintf("client certificate %x (%s) is revoked", cert.SerialNumber, cert.Subject.CommonName)}
		}
		subj, err := certSubject(cert, g.cfg.Cluster)
		if err != nil {
			return "", credential{}, &proxyError{http.StatusForbidden, err.Error()}
		}
		return subj, credential{cert: cert}, nil
	}
	h := r.Header.Get("Proxy-Authorization")
	if h == "" {
		return "", credential{}, nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", credential{}, &proxyError{http.StatusProxyAuthRequired, "Proxy-Authorization must be \"Bearer <token>\""}
	}
	if g.cfg.Tokens == nil {
		return "", credential{}, &proxyError{http.StatusProxyAuthRequired, "this gateway does not accept tokens; use a client certificate"}
	}
	tok = strings.TrimSpace(tok)
	p, err := g.cfg.Tokens.Verify(r.Context(), tok)
	if err != nil {
		if errors.Is(err, identity.ErrUnauthenticated) {
			return "", credential{}, &proxyError{http.StatusProxyAuthRequired, err.Error()}
		}
		// The token store is unreachable: refuse rather than fall back to the default rule.
		return "", credential{}, &proxyError{http.StatusServiceUnavailable, "cannot verify the token right now: " + err.Error()}
	}
	return p.Subject, credential{secret: tok}, nil
}

// recheck says why an open tunnel's credential no longer holds, or nil. A bearer secret is
// verified again (revoked, expired, its session ended, its person disabled: all refuse it, and
// so does a store that cannot be read, failing closed); a client certificate must not have been
// revoked since (the CRL reloads) nor have expired.
func (g *Gateway) recheck(ctx context.Context, c credential, now time.Time) error {
	switch {
	case c.secret != "":
		if g.cfg.Tokens == nil {
			return errors.New("this gateway no longer verifies tokens")
		}
		if _, err := g.cfg.Tokens.Verify(ctx, c.secret); err != nil {
			if errors.Is(err, identity.ErrUnauthenticated) {
				return fmt.Errorf("the caller's credential no longer holds: %w", err)
			}
			return fmt.Errorf("the caller's credential cannot be verified (failing closed): %w", err)
		}
	case c.cert != nil:
		if g.cfg.Revoked != nil && g.cfg.Revoked(c.cert) {
			return fmt.Errorf("client certificate %x (%s) was revoked", c.cert.SerialNumber, c.cert.Subject.CommonName)
		}
		if now.After(c.cert.NotAfter) {
			return fmt.Errorf("client certificate %x (%s) expired at %s", c.cert.SerialNumber, c.cert.Subject.CommonName, c.cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// certSubject maps a verified client certificate to a subject: a SPIFFE URI SAN
// spiffe://<cluster>/ns/<namespace>/sa/<serviceaccount> becomes k8s:<cluster>/<namespace>/<sa>;
// otherwise the common name must itself be a valid subject.
func certSubject(cert *x509.Certificate, cluster string) (string, error) {
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		parts := strings.Split(strings.Trim(u.Path, "/"), "/")
		if len(parts) == 4 && parts[0] == "ns" && parts[2] == "sa" {
			td := u.Host
			if cluster != "" && td == "" {
				td = cluster
			}
			subj := "k8s:" + td + "/" + parts[1] + "/" + parts[3]
			if err := policy.ValidateSubject(subj); err != nil {
				return "", fmt.Errorf("client certificate SPIFFE ID %s: %v", u, err)
			}
			return subj, nil
		}
		return "", fmt.Errorf("client certificate SPIFFE ID %s is not spiffe://<trust-domain>/ns/<namespace>/sa/<serviceaccount>", u)
	}
	if err := policy.ValidateSubject(cert.Subject.CommonName); err != nil {
		return "", fmt.Errorf("client certificate names no SPIFFE ID and its common name is not a subject: %v", err)
	}
	return cert.Subject.CommonName, nil
}
