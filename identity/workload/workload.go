// Package workload verifies Kubernetes service-account tokens (projected, with the audience
// Rampart is configured for) as workload identities: the subject k8s:<cluster>/<namespace>/<sa>
// that grants, checks and egress policies name.
//
// A token is checked against the signing keys the cluster publishes (its OIDC discovery document
// and JWKS): only asymmetric algorithms are accepted (RS256, RS384, RS512, ES256, ES384, PS256),
// so "none" and HMAC-with-the-public-key confusion cannot pass; the issuer must be a configured
// cluster's; the audience must include Rampart's; expiry and not-before are enforced with a small
// leeway. Unknown key ids trigger one JWKS refresh (key rotation), rate-limited so a flood of
// forged kids cannot hammer the API server.
package workload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/policy"
)

// Cluster is a Kubernetes cluster whose service-account tokens are trusted.
type Cluster struct {
	// Name is the cluster's name in subjects: k8s:<name>/<namespace>/<serviceaccount>.
	Name string `yaml:"name"`
	// Issuer is the tokens' iss (the API server's --service-account-issuer).
	Issuer string `yaml:"issuer"`
	// JWKSURL overrides the JWKS location found through Issuer + /.well-known/openid-configuration.
	JWKSURL string `yaml:"jwks_url"`
	// Audience the tokens must carry; default "rampart".
	Audience string `yaml:"audience"`
	// CAFile verifies the issuer's TLS certificate (the cluster CA); system roots if empty.
	CAFile string `yaml:"ca_file"`
}

// MaxTokenSize bounds an accepted token.
const MaxTokenSize = 16 << 10

// leeway tolerates clock skew on exp, nbf and iat.
const leeway = 60 * time.Second

// refreshEvery rate-limits JWKS refreshes triggered by unknown key ids.
const refreshEvery = 30 * time.Second

// maxKeyAge is how long a fetched key set is trusted before it is fetched again; keyGrace is how
// much longer it serves while the cluster cannot be reached.
const (
	maxKeyAge = 10 * time.Minute
	keyGrace  = time.Hour
)

var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256}

// Verifier checks service-account tokens from the configured clusters.
type Verifier struct {
	// CacheTTL bounds how long a verified token is remembered (1 s if zero, never past the
	// token's expiry; negative: no cache).
	CacheTTL time.Duration

	clusters map[string]*keys // by issuer
	now      func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]cachedToken // verified tokens by SHA-256, for cacheTTL
}

// A verified token is remembered for cacheTTL (never past its expiry), as API tokens are: a pod
// sends the same token on every call, and an RSA verification costs tens of microseconds.
const (
	cacheTTL  = time.Second
	maxCached = 10_000
)

type cachedToken struct {
	p     identity.Principal
	until time.Time
}

type keys struct {
	c       Cluster
	client  *http.Client
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetched time.Time
	jwksURL string
}

// New returns a verifier for the clusters. now is the clock (time.Now if nil).
func New(clusters []Cluster, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{clusters: map[string]*keys{}, now: now}
	for _, c := range clusters {
		if err := policy.ValidateName(c.Name); err != nil {
			return nil, fmt.Errorf("cluster name %q: %v", c.Name, err)
		}
		if c.Issuer == "" {
			return nil, fmt.Errorf("cluster %s: issuer is required", c.Name)
		}
		if c.Audience == "" {
			c.Audience = "rampart"
		}
		client := &http.Client{Timeout: 10 * time.Second}
		if c.CAFile != "" {
			pemBytes, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: CA: %w", c.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemBytes) {
				return nil, fmt.Errorf("cluster %s: %s holds no PEM certificate", c.Name, c.CAFile)
			}
			client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		}
		v.clusters[c.Issuer] = &keys{c: c, client: client, jwksURL: c.JWKSURL}
	}
	return v, nil
}

// serviceAccountClaims are the claims of a projected service-account token.
type serviceAccountClaims struct {
	jwt.Claims
	Kubernetes struct {
		Namespace      string `json:"namespace"`
		ServiceAccount struct {
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

// Verify checks a token and returns the workload it identifies. Every refusal wraps
// identity.ErrUnauthenticated and says why; a JWKS that cannot be fetched is another error
// (the caller refuses: fail closed).
func (v *Verifier) Verify(ctx context.Context, token string) (identity.Principal, error) {
	if len(token) > MaxTokenSize {
		return identity.Principal{}, fmt.Errorf("%w: service-account token: %d bytes is over the %d byte limit", identity.ErrUnauthenticated, len(token), MaxTokenSize)
	}
	ttl := v.CacheTTL
	if ttl == 0 {
		ttl = cacheTTL
	}
	h := sha256.Sum256([]byte(token))
	now := v.now()
	if ttl > 0 {
		v.mu.Lock()
		c, ok := v.cache[h]
		v.mu.Unlock()
		if ok && now.Before(c.until) && !now.Before(c.until.Add(-ttl)) {
			return c.p, nil
		}
	}
	p, exp, err := v.verify(ctx, token)
	if err != nil || ttl < 0 {
		return p, err
	}
	until := now.Add(ttl)
	if exp.Before(until) {
		until = exp
	}
	v.mu.Lock()
	if v.cache == nil || len(v.cache) >= maxCached {
		v.cache = map[[32]byte]cachedToken{}
	}
	v.cache[h] = cachedToken{p: p, until: until}
	v.mu.Unlock()
	return p, nil
}

// verify checks a token fully and returns its principal and expiry.
func (v *Verifier) verify(ctx context.Context, token string) (identity.Principal, time.Time, error) {
	bad := func(format string, args ...any) (identity.Principal, time.Time, error) {
		return identity.Principal{}, time.Time{}, fmt.Errorf("%w: service-account token: %s", identity.ErrUnauthenticated, fmt.Sprintf(format, args...))
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		return bad("not a signed JWT with an accepted algorithm (%s): %v", algNames(), err)
	}
	if len(tok.Headers) != 1 {
		return bad("exactly one signature is accepted")
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return bad("claims: %v", err)
	}
	k := v.clusters[unverified.Issuer]
	if k == nil {
		return bad("issuer %q is not a configured cluster", unverified.Issuer)
	}
	key, err := k.key(ctx, tok.Headers[0].KeyID, v.now())
	if err != nil {
		return identity.Principal{}, time.Time{}, err
	}
	var claims serviceAccountClaims
	if err := tok.Claims(key, &claims); err != nil {
		return bad("signature does not verify with key %q of cluster %s", tok.Headers[0].KeyID, k.c.Name)
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: k.c.Issuer, AnyAudience: jwt.Audience{k.c.Audience}, Time: v.now()}, leeway); err != nil {
		return bad("%v (issuer %s, audience %s)", err, k.c.Issuer, k.c.Audience)
	}
	if claims.Expiry == nil {
		return bad("no expiry; use a projected token (serviceAccountToken volume with expirationSeconds)")
	}
	ns, sa := claims.Kubernetes.Namespace, claims.Kubernetes.ServiceAccount.Name
	if want := "system:serviceaccount:" + ns + ":" + sa; ns == "" || sa == "" || claims.Subject != want {
		return bad("subject %q does not match its kubernetes.io claims (%s/%s)", claims.Subject, ns, sa)
	}
	subject := "k8s:" + k.c.Name + "/" + ns + "/" + sa
	if err := policy.ValidateSubject(subject); err != nil {
		return bad("%v", err)
	}
	return identity.Principal{Subject: subject, Kind: identity.KindWorkload, TokenID: claims.ID}, claims.Expiry.Time(), nil
}

func algNames() string {
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// key returns the public key with the id, fetching the JWKS first if needed or if the id is
// unknown (rotation), at most once per refreshEvery for unknown ids.
func (k *keys) key(ctx context.Context, kid string, now time.Time) (any, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if found := k.set.Key(kid); len(found) > 0 {
		if now.Sub(k.fetched) < maxKeyAge {
			return found[0].Key, nil
		}
		// A known key is re-checked every maxKeyAge, so a key the cluster retired (perhaps
		// because it leaked) stops verifying tokens even if no new key id ever shows up. If
		// the cluster cannot be reached, the cached set serves for keyGrace more.
		if err := k.fetch(ctx); err != nil {
			if now.Sub(k.fetched) < maxKeyAge+keyGrace {
				return found[0].Key, nil
			}
			return nil, fmt.Errorf("cluster %s keys unavailable for %s: %w", k.c.Name, now.Sub(k.fetched).Round(time.Second), err)
		}
		k.fetched = now
		if found := k.set.Key(kid); len(found) > 0 {
			return found[0].Key, nil
		}
		return nil, fmt.Errorf("%w: service-account token: key %q is no longer in cluster %s's key set", identity.ErrUnauthenticated, kid, k.c.Name)
	}
	if !k.fetched.IsZero() && now.Sub(k.fetched) < refreshEvery {
		return nil, fmt.Errorf("%w: service-account token: key %q is not in cluster %s's key set", identity.ErrUnauthenticated, kid, k.c.Name)
	}
	if err := k.fetch(ctx); err != nil {
		return nil, fmt.Errorf("cluster %s keys unavailable: %w", k.c.Name, err)
	}
	k.fetched = now
	if found := k.set.Key(kid); len(found) > 0 {
		return found[0].Key, nil
	}
	return nil, fmt.Errorf("%w: service-account token: key %q is not in cluster %s's key set", identity.ErrUnauthenticated, kid, k.c.Name)
}

func (k *keys) fetch(ctx context.Context) error {
	if k.jwksURL == "" {
		var disc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := k.getJSON(ctx, strings.TrimSuffix(k.c.Issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if disc.Issuer != k.c.Issuer {
			return fmt.Errorf("discovery document names issuer %q, not %q", disc.Issuer, k.c.Issuer)
		}
		if disc.JWKSURI == "" {
			return errors.New("discovery document has no jwks_uri")
		}
		k.jwksURL = disc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := k.getJSON(ctx, k.jwksURL, &set); err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	// Only public, asymmetric keys are kept: a symmetric key in a JWKS must never verify tokens.
	var keep []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Valid() && key.IsPublic() && key.KeyID != "" {
			keep = append(keep, key)
		}
	}
	k.set = jose.JSONWebKeySet{Keys: keep}
	return nil
}

func (k *keys) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
