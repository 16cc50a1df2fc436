package egress

import (
	"context"
	"crypto/x509"
	"encoding/base64"
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
			return "", credential{}, &proxyError{status: http.StatusForbidden, msg: fmt.Sprintf("client certificate %x (%s) is revoked", cert.SerialNumber, cert.Subject.CommonName)}
		}
		subj, err := certSubject(cert, g.cfg.Cluster)
		if err != nil {
			return "", credential{}, &proxyError{status: http.StatusForbidden, msg: err.Error()}
		}
		return subj, credential{cert: cert}, nil
	}
	h := r.Header.Values("Proxy-Authorization")
	if len(h) == 0 {
		return "", credential{}, nil
	}
	if len(h) > 1 {
		return "", credential{}, &proxyError{status: http.StatusProxyAuthRequired, msg: "more than one Proxy-Authorization header; send one"}
	}
	tok, err := ProxyToken(h[0])
	if err != nil {
		return "", credential{}, &proxyError{status: http.StatusProxyAuthRequired, msg: err.Error(), next: signInAgain}
	}
	if g.cfg.Tokens == nil {
		return "", credential{}, &proxyError{status: http.StatusProxyAuthRequired, msg: "this gateway does not accept tokens; use a client certificate"}
	}
	p, err := g.cfg.Tokens.Verify(r.Context(), tok)
	if err != nil {
		if errors.Is(err, identity.ErrUnauthenticated) {
			return "", credential{}, &proxyError{status: http.StatusProxyAuthRequired, msg: err.Error(), next: signInAgain}
		}
		// The token store is unreachable: refuse rather than fall back to the default rule.
		return "", credential{}, &proxyError{status: http.StatusServiceUnavailable, msg: "cannot verify the token right now: " + err.Error()}
	}
	return p.Subject, credential{secret: tok}, nil
}

// signInAgain is the next step after a refused credential.
const signInAgain = "Sign in again (rampart login) and use a current token: http://rampart:TOKEN@gateway as the proxy URL, or Proxy-Authorization: Bearer TOKEN"

// maxProxyToken bounds a token carried in Proxy-Authorization (service-account tokens are JWTs of
// a few kilobytes).
const maxProxyToken = 16 << 10

// ProxyToken returns the token a Proxy-Authorization header value carries, in either scheme
// clients use:
//
//   - "Bearer <token>";
//   - "Basic base64(<user>:<token>)": what curl -x http://USER:TOKEN@host, git's http.proxy,
//     pip, Python's requests and urllib, Go's ProxyFromEnvironment and the Hugging Face hub client
//     send for a proxy URL with credentials. The token is the password; the user name is not
//     checked (the token alone says who the caller is, and a workload's subject, with its
//     colon, cannot be a Basic user name), so any name, or none, will do.
//
// The error says what is wrong for a person to fix.
func ProxyToken(h string) (string, error) {
	scheme, rest, ok := strings.Cut(strings.TrimLeft(h, " "), " ")
	rest = strings.Trim(rest, " \t")
	switch {
	case !ok || rest == "":
		return "", errors.New(`Proxy-Authorization must be "Bearer <token>" or "Basic <base64 of user:token>"`)
	case len(rest) > maxProxyToken*2:
		return "", fmt.Errorf("Proxy-Authorization is over %d bytes", maxProxyToken*2)
	case strings.EqualFold(scheme, "Bearer"):
		if strings.ContainsFunc(rest, notTokenChar) {
			return "", errors.New(`Proxy-Authorization "Bearer <token>" has a space inside the token, or characters no Rampart or service-account token has`)
		}
		return rest, nil
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			if raw, err = base64.RawStdEncoding.DecodeString(rest); err != nil {
				return "", errors.New("Proxy-Authorization Basic is not base64 of user:token")
			}
		}
		_, tok, ok := strings.Cut(string(raw), ":")
		switch {
		case !ok:
			return "", errors.New("Proxy-Authorization Basic has no colon: it must be base64 of user:token (the token is the password, e.g. http://rampart:TOKEN@proxy)")
		case tok == "":
			return "", errors.New("Proxy-Authorization Basic has an empty password: put the token in the password (http://rampart:TOKEN@proxy), not in the user name")
		case len(tok) > maxProxyToken:
			return "", fmt.Errorf("the token in Proxy-Authorization is over %d bytes", maxProxyToken)
		case strings.ContainsFunc(tok, notTokenChar):
			return "", errors.New("the token in Proxy-Authorization Basic has spaces or characters no Rampart or service-account token has")
		}
		return tok, nil
	default:
		return "", fmt.Errorf(`Proxy-Authorization scheme %q is not accepted: use "Bearer <token>" or Basic with the token as the password`, truncate(scheme, 20))
	}
}

// notTokenChar is true for what no token has: whitespace, control characters, non-ASCII.
func notTokenChar(r rune) bool { return r <= ' ' || r == 0x7f || r >= 0x80 }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
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
