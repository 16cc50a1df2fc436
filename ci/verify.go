package ci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rampart.dev/rampart/policy"
)

// MaxTokenSize bounds an ID token accepted for exchange.
const MaxTokenSize = 16 << 10

// leeway tolerates clock skew between the CI system and Rampart on exp, nbf and iat.
const leeway = 30 * time.Second

// Key set freshness: a fetched JWKS is trusted for maxKeyAge and refetched after; a key id not in
// it triggers one refetch (rotation) at most every refreshEvery, so a flood of forged key ids
// cannot hammer the CI system; if the CI system cannot be reached the cached set serves for
// keyGrace more.
const (
	maxKeyAge    = 10 * time.Minute
	refreshEvery = 30 * time.Second
	keyGrace     = time.Hour
)

// algorithms are the accepted signature algorithms: asymmetric only, so "none" and HMAC keyed
// with a public key cannot verify.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.PS256}

// Verifier checks CI ID tokens against the discovery documents and key sets of the issuers the
// policy declares. It is safe for concurrent use; key sets are cached per issuer URL.
type Verifier struct {
	// Client fetches discovery documents and key sets (a client with a 10 s timeout if nil).
	Client *http.Client
	// Now is the clock (time.Now if nil).
	Now func() time.Time

	mu   sync.Mutex
	sets map[string]*keySet // by issuer URL
}

type keySet struct {
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	fetched time.Time
	// unknownRefresh is when an unknown key id last caused a refetch.
	unknownRefresh time.Time
	jwksURL        string
}

// Verified is a verified ID token: its issuer as the policy declares it and its claims.
type Verified struct {
	Issuer *policy.CIIssuer
	Claims map[string]any
	// Expiry is the token's exp.
	Expiry time.Time
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) client() *http.Client {
	if v.Client != nil {
		return v.Client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// Verify checks the token's signature (with the key its issuer publishes, the key set refetched
// when the key id is unknown), issuer (a CIIssuer of pol), audience, expiry and not-before. Every
// refusal is a *Refusal saying which condition failed; a key set that cannot be fetched is an
// error wrapping ErrUnavailable (the caller refuses: fail closed).
func (v *Verifier) Verify(ctx context.Context, pol *policy.Policy, token string) (Verified, error) {
	if len(token) > MaxTokenSize {
		return Verified{}, refuse(CondMalformed, "the ID token is %d bytes; the limit is %d", len(token), MaxTokenSize)
	}
	tok, err := jwt.ParseSigned(token, algorithms)
	if err != nil {
		if strings.Contains(err.Error(), "unexpected signature algorithm") {
			return Verified{}, refuse(CondAlgorithm, "the ID token's algorithm is not accepted (only %s; never none or HMAC): %v", algNames(), err)
		}
		return Verified{}, refuse(CondMalformed, "not a signed JWT: %v", err)
	}
	if len(tok.Headers) != 1 {
		return Verified{}, refuse(CondMalformed, "exactly one signature is accepted, the token has %d", len(tok.Headers))
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Verified{}, refuse(CondMalformed, "claims: %v", err)
	}
	iss, ok := pol.CIIssuerByURL(unverified.Issuer)
	if !ok {
		return Verified{}, refuse(CondIssuer, "issuer %.200q is not a CIIssuer of the policy", unverified.Issuer)
	}
	now := v.now()
	key, err := v.key(ctx, iss, tok.Headers[0].KeyID, now)
	if err != nil {
		return Verified{}, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(key, &std, &all); err != nil {
		return Verified{}, refuse(CondSignature, "the signature does not verify with key %q of issuer %s", tok.Headers[0].KeyID, iss.Name)
	}
	if std.Expiry == nil {
		return Verified{}, refuse(CondExpired, "the ID token has no exp")
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: iss.Issuer, AnyAudience: jwt.Audience{iss.Audience}, Time: now}, leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Verified{}, refuse(CondAudience, "the ID token's audience %q does not include %q, the audience issuer %s is configured for", []string(std.Audience), iss.Audience, iss.Name)
	case errors.Is(err, jwt.ErrExpired):
		return Verified{}, refuse(CondExpired, "the ID token expired at %s; ask the CI system for a fresh one", std.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return Verified{}, refuse(CondNotYetValid, "the ID token is not valid before %s", std.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Verified{}, refuse(CondNotYetValid, "the ID token was issued in the future (iat %s)", std.IssuedAt.Time().UTC().Format(time.RFC3339))
	default:
		return Verified{}, refuse(CondIssuer, "%v", err)
	}
	return Verified{Issuer: iss, Claims: all, Expiry: std.Expiry.Time()}, nil
}

func algNames() string {
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

func (v *Verifier) keys(issuer string) *keySet {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.sets == nil {
		v.sets = map[string]*keySet{}
	}
	ks := v.sets[issuer]
	if ks == nil {
		ks = &keySet{}
		v.sets[issuer] = ks
	}
	return ks
}

// key returns the public key with id kid of the issuer.
func (v *Verifier) key(ctx context.Context, iss *policy.CIIssuer, kid string, now time.Time) (any, error) {
	ks := v.keys(iss.Issuer)
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if found := ks.set.Key(kid); len(found) > 0 && now.Sub(ks.fetched) < maxKeyAge {
		return found[0].Key, nil
	}
	known := len(ks.set.Key(kid)) > 0
	if !known && !ks.fetched.IsZero() && now.Sub(ks.fetched) < maxKeyAge {
		// An unknown key id in a fresh set: the issuer may have rotated. Refetch, at most once
		// per refreshEvery for unknown ids.
		if !ks.unknownRefresh.IsZero() && now.Sub(ks.unknownRefresh) < refreshEvery {
			return nil, refuse(CondSignature, "key %q is not in issuer %s's key set (rotated out, or never its key)", kid, iss.Name)
		}
		ks.unknownRefresh = now
	}
	if err := ks.fetch(ctx, v.client(), iss.Issuer); err != nil {
		if known && now.Sub(ks.fetched) < maxKeyAge+keyGrace {
			return ks.set.Key(kid)[0].Key, nil
		}
		return nil, fmt.Errorf("%w: issuer %s's keys: %v", ErrUnavailable, iss.Name, err)
	}
	ks.fetched = now
	if found := ks.set.Key(kid); len(found) > 0 {
		return found[0].Key, nil
	}
	return nil, refuse(CondSignature, "key %q is not in issuer %s's key set (rotated out, or never its key)", kid, iss.Name)
}

func (ks *keySet) fetch(ctx context.Context, client *http.Client, issuer string) error {
	if ks.jwksURL == "" {
		var disc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := getJSON(ctx, client, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &disc); err != nil {
			return fmt.Errorf("discovery: %w", err)
		}
		if disc.Issuer != issuer {
			return fmt.Errorf("the discovery document names issuer %q, not %q", disc.Issuer, issuer)
		}
		if !strings.HasPrefix(disc.JWKSURI, "https://") && !strings.HasPrefix(disc.JWKSURI, strings.TrimSuffix(issuer, "/")+"/") {
			return fmt.Errorf("the discovery document's jwks_uri %q is neither https nor under the issuer", disc.JWKSURI)
		}
		ks.jwksURL = disc.JWKSURI
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, client, ks.jwksURL, &set); err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}
	// Only public, asymmetric keys with ids are kept: a symmetric key must never verify.
	var keep []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() && k.KeyID != "" {
			keep = append(keep, k)
		}
	}
	ks.set = jose.JSONWebKeySet{Keys: keep}
	return nil
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s answered %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
