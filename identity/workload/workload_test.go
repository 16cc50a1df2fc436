package workload

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/internal/clocktest"
)

// fakeKubernetesIssuer is a FAKE of a Kubernetes API server's service-account issuer: it serves
// the OIDC discovery document and JWKS and signs tokens the way the API server does.
type fakeKubernetesIssuer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	keys     map[string]any // kid → private key
	current  string
	jwksHits atomic.Int64
	extra    []jose.JSONWebKey // published as they are (a hostile JWKS)
}

func newIssuer(t *testing.T) *fakeKubernetesIssuer {
	f := &fakeKubernetesIssuer{keys: map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "jwks_uri": f.srv.URL + "/openid/v1/jwks"})
	})
	mux.HandleFunc("/openid/v1/jwks", func(w http.ResponseWriter, r *http.Request) {
		f.jwksHits.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range f.keys {
			var pub any
			switch k := k.(type) {
			case *rsa.PrivateKey:
				pub = &k.PublicKey
			case *ecdsa.PrivateKey:
				pub = &k.PublicKey
			}
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: kid, Use: "sig"})
		}
		set.Keys = append(set.Keys, f.extra...)
		_ = json.NewEncoder(w).Encode(set)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	f.rotate("key-1")
	return f
}

// rotate adds a new signing key and signs with it from now on (old keys stay published).
func (f *fakeKubernetesIssuer) rotate(kid string) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys[kid], f.current = k, kid
}

type saClaims struct {
	jwt.Claims
	K8s map[string]any `json:"kubernetes.io"`
}

func (f *fakeKubernetesIssuer) token(t *testing.T, ns, sa string, mutate func(*saClaims), now time.Time) string {
	f.mu.Lock()
	key := f.keys[f.current]
	kid := f.current
	f.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	c := saClaims{Claims: jwt.Claims{Issuer: f.srv.URL, Subject: "system:serviceaccount:" + ns + ":" + sa, Audience: jwt.Audience{"rampart"},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)), ID: "tok-1"},
		K8s: map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "u-1"}}}
	if mutate != nil {
		mutate(&c)
	}
	raw, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var epoch = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func newVerifier(t *testing.T, f *fakeKubernetesIssuer, clock *clocktest.Clock) *Verifier {
	v, err := New([]Cluster{{Name: "prod", Issuer: f.srv.URL}}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidToken(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	p, err := v.Verify(context.Background(), f.token(t, "ml", "trainer", nil, epoch))
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "k8s:prod/ml/trainer" || p.Kind != identity.KindWorkload {
		t.Fatalf("principal %+v", p)
	}
}

func TestAttacksRefused(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	good := f.token(t, "ml", "trainer", nil, epoch)
	parts := strings.Split(good, ".")

	// alg none: header {"alg":"none"} with the same claims and no signature.
	none := b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."
	// HS256 signed with the RSA public key as the HMAC secret (key confusion).
	f.mu.Lock()
	pub := &f.keys["key-1"].(*rsa.PrivateKey).PublicKey
	f.mu.Unlock()
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER}, (&jose.SignerOptions{}).WithHeader("kid", "key-1"))
	confused, _ := jwt.Signed(hs).Claims(jwt.Claims{Issuer: f.srv.URL, Subject: "system:serviceaccount:ml:trainer", Audience: jwt.Audience{"rampart"},
		Expiry: jwt.NewNumericDate(epoch.Add(time.Hour))}).Serialize()
	// A valid signature from a key the cluster does not publish.
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	es, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: stranger}, (&jose.SignerOptions{}).WithHeader("kid", "key-1"))
	forged, _ := jwt.Signed(es).Claims(jwt.Claims{Issuer: f.srv.URL, Subject: "system:serviceaccount:ml:trainer", Audience: jwt.Audience{"rampart"},
		Expiry: jwt.NewNumericDate(epoch.Add(time.Hour))}).Serialize()
	// Tampered payload with the original signature.
	tampered := parts[0] + "." + b64(strings.Replace(unb64(parts[1]), `"trainer"`, `"admin"`, -1)) + "." + parts[2]

	cases := map[string]struct {
		token string
		want  string
	}{
		"alg none":          {none, "not a signed JWT"},
		"HS/RS confusion":   {confused, "not a signed JWT"},
		"foreign key":       {forged, "does not verify"},
		"tampered payload":  {tampered, "does not verify"},
		"wrong issuer":      {f.token(t, "ml", "trainer", func(c *saClaims) { c.Issuer = "https://evil.example" }, epoch), "not a configured cluster"},
		"wrong audience":    {f.token(t, "ml", "trainer", func(c *saClaims) { c.Audience = jwt.Audience{"vault"} }, epoch), "audience"},
		"expired":           {f.token(t, "ml", "trainer", nil, epoch.Add(-3*time.Hour)), "expired"},
		"not yet valid":     {f.token(t, "ml", "trainer", func(c *saClaims) { c.NotBefore = jwt.NewNumericDate(epoch.Add(time.Hour)) }, epoch), "not valid yet"},
		"no expiry":         {f.token(t, "ml", "trainer", func(c *saClaims) { c.Expiry = nil }, epoch), "no expiry"},
		"subject mismatch":  {f.token(t, "ml", "trainer", func(c *saClaims) { c.Subject = "system:serviceaccount:kube-system:admin" }, epoch), "does not match"},
		"oversized":         {strings.Repeat("a", MaxTokenSize+1), "over the"},
		"garbage":           {"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "not a configured cluster"},
		"not a JWT":         {"hello", "not a signed JWT"},
		"bad subject chars": {f.token(t, "ML", "trainer", func(c *saClaims) { c.Subject = "system:serviceaccount:ML:trainer" }, epoch), "workload subject"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), c.token)
			if err == nil {
				t.Fatalf("accepted as %+v", p)
			}
			if !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to say %q", err, c.want)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	old := f.token(t, "ml", "trainer", nil, epoch)
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	f.rotate("key-2")
	fresh := f.token(t, "ml", "trainer", nil, epoch)
	// The new kid is unknown: the verifier refetches once, after the rate limit.
	clock.Advance(refreshEvery)
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("token from the rotated key: %v", err)
	}
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatalf("token from the old key, still published: %v", err)
	}
	// A flood of unknown kids does not refetch more than once per interval.
	before := f.jwksHits.Load()
	for i := 0; i < 20; i++ {
		f.rotate("flood")
		_, _ = v.Verify(context.Background(), f.token(t, "ml", "trainer", nil, epoch))
	}
	if hits := f.jwksHits.Load() - before; hits > 1 {
		t.Fatalf("%d JWKS fetches for unknown kids within one interval", hits)
	}
}

func TestIssuerDownFailsClosed(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	tok := f.token(t, "ml", "trainer", nil, epoch)
	f.srv.Close()
	_, err := v.Verify(context.Background(), tok)
	if err == nil || errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "keys unavailable") {
		t.Fatalf("issuer down: %v (want an availability error, not a silent allow or a credential error)", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add(strings.Repeat(".", 100))
	v, _ := New([]Cluster{{Name: "prod", Issuer: "https://issuer.invalid"}}, func() time.Time { return epoch })
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := v.Verify(context.Background(), token); err == nil {
			t.Fatalf("accepted %q", token)
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func unb64(s string) string {
	b, _ := base64.RawURLEncoding.DecodeString(s)
	return string(b)
}

// retire stops publishing a key and returns it (an old key that leaked).
func (f *fakeKubernetesIssuer) retire(kid string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[kid]
	delete(f.keys, kid)
	return k
}

func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, c any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// More of the attack list: the clock checks beyond the leeway, key confusion with the
// public key as PEM, a symmetric key slipped into the JWKS, a token claiming another configured
// cluster's issuer, a key never published. Each is refused as unauthenticated and says why.
func TestMoreAttacksRefused(t *testing.T) {
	f, other := newIssuer(t), newIssuer(t)
	secret := []byte("a symmetric key published in the JWKS, 256 bits at least")
	f.mu.Lock()
	f.extra = []jose.JSONWebKey{{Key: secret, KeyID: "sym", Algorithm: string(jose.HS256), Use: "sig"}}
	f.mu.Unlock()
	clock := clocktest.New(epoch)
	v, err := New([]Cluster{{Name: "prod", Issuer: f.srv.URL}, {Name: "staging", Issuer: other.srv.URL}}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	claims := f.token(t, "ml", "trainer", nil, epoch)
	payload := unb64(strings.Split(claims, ".")[1])
	var c saClaims
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	pub := &f.keys["key-1"].(*rsa.PrivateKey).PublicKey
	f.mu.Unlock()
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)

	cases := map[string]struct {
		token string
		want  string
	}{
		"HS256 keyed with the public key (PEM)":     {signWith(t, jose.HS256, pemKey, "key-1", c), "not a signed JWT"},
		"HS256 keyed with the JWKS's symmetric key": {signWith(t, jose.HS256, secret, "sym", c), "not a signed JWT"},
		"RS256 under the symmetric key's kid":       {signWith(t, jose.RS256, stranger, "sym", c), `key "sym" is not in cluster prod's key set`},
		"a key never published, unknown kid":        {signWith(t, jose.RS256, stranger, "ghost", c), `key "ghost" is not in cluster prod's key set`},
		"a key never published, no kid":             {signWith(t, jose.RS256, stranger, "", c), `key "" is not in cluster prod's key set`},
		"issued 2 minutes in the future": {f.token(t, "ml", "trainer", func(c *saClaims) {
			c.IssuedAt = jwt.NewNumericDate(epoch.Add(2 * time.Minute))
		}, epoch), "issued in the future"},
		"expired 2 minutes ago": {f.token(t, "ml", "trainer", func(c *saClaims) {
			c.Expiry = jwt.NewNumericDate(epoch.Add(-2 * time.Minute))
		}, epoch.Add(-time.Hour)), "expired"},
		"not valid for 2 minutes": {f.token(t, "ml", "trainer", func(c *saClaims) {
			c.NotBefore = jwt.NewNumericDate(epoch.Add(2 * time.Minute))
		}, epoch), "not valid yet"},
		"audience of another service among several": {f.token(t, "ml", "trainer", func(c *saClaims) {
			c.Audience = jwt.Audience{"vault", "https://kubernetes.default.svc"}
		}, epoch), "audience"},
		"signed by this cluster, claiming the other's issuer": {f.token(t, "ml", "trainer", func(c *saClaims) {
			c.Issuer = other.srv.URL
		}, epoch), "does not verify with key \"key-1\" of cluster staging"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted as %+v", p)
			}
			if !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}

	// Ordinary clock skew (30 s, inside the leeway) passes: the refusals above are for the time,
	// not for the form of the claims.
	for name, tok := range map[string]string{
		"expired 30 s ago":            f.token(t, "ml", "trainer", func(c *saClaims) { c.Expiry = jwt.NewNumericDate(epoch.Add(-30 * time.Second)) }, epoch.Add(-time.Hour)),
		"valid in 30 s (nbf)":         f.token(t, "ml", "trainer", func(c *saClaims) { c.NotBefore = jwt.NewNumericDate(epoch.Add(30 * time.Second)) }, epoch),
		"issued in 30 s (iat)":        f.token(t, "ml", "trainer", func(c *saClaims) { c.IssuedAt = jwt.NewNumericDate(epoch.Add(30 * time.Second)) }, epoch),
		"Rampart among the audiences": f.token(t, "ml", "trainer", func(c *saClaims) { c.Audience = jwt.Audience{"vault", "rampart"} }, epoch),
	} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Rotation, the other way round: a key rotated in is refused until the rate limit lets the
// JWKS be fetched again, then accepted; a retired key stops working once the JWKS has been
// fetched again.
func TestKeyRotationWindowAndRetirement(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	if _, err := v.Verify(context.Background(), f.token(t, "ml", "trainer", nil, epoch)); err != nil {
		t.Fatal(err)
	}
	f.rotate("key-2")
	fresh := f.token(t, "ml", "trainer", nil, epoch)
	clock.Advance(refreshEvery / 2)
	if _, err := v.Verify(context.Background(), fresh); err == nil || !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), `key "key-2" is not in cluster prod's key set`) {
		t.Fatalf("rotated-in key inside the rate limit: %v", err)
	}
	clock.Advance(refreshEvery / 2)
	if _, err := v.Verify(context.Background(), fresh); err != nil {
		t.Fatalf("rotated-in key after the rate limit: %v", err)
	}

	old := f.retire("key-1")
	f.rotate("key-3")
	clock.Advance(refreshEvery)
	if _, err := v.Verify(context.Background(), f.token(t, "ml", "trainer", nil, epoch)); err != nil { // fetches: key-2, key-3
		t.Fatalf("key-3: %v", err)
	}
	c := saClaims{Claims: jwt.Claims{Issuer: f.srv.URL, Subject: "system:serviceaccount:ml:trainer", Audience: jwt.Audience{"rampart"},
		IssuedAt: jwt.NewNumericDate(epoch), Expiry: jwt.NewNumericDate(epoch.Add(time.Hour))},
		K8s: map[string]any{"namespace": "ml", "serviceaccount": map[string]any{"name": "trainer", "uid": "u-1"}}}
	if _, err := v.Verify(context.Background(), signWith(t, jose.RS256, old, "key-1", c)); err == nil || !errors.Is(err, identity.ErrUnauthenticated) {
		t.Fatalf("retired key: %v", err)
	}
}

// A retired key stops verifying within maxKeyAge even when no new key id ever appears (nothing
// prompts a refresh); while the cluster is unreachable, the cached keys serve for keyGrace more,
// then every token is refused as unavailable.
func TestKnownKeysAreRecheckedAndExpire(t *testing.T) {
	f := newIssuer(t)
	clock := clocktest.New(epoch)
	v := newVerifier(t, f, clock)
	if _, err := v.Verify(context.Background(), f.token(t, "ml", "trainer", nil, clock.Now())); err != nil {
		t.Fatal(err)
	}
	f.rotate("key-2")
	old := f.retire("key-1")
	c := saClaims{Claims: jwt.Claims{Issuer: f.srv.URL, Subject: "system:serviceaccount:ml:trainer", Audience: jwt.Audience{"rampart"}},
		K8s: map[string]any{"namespace": "ml", "serviceaccount": map[string]any{"name": "trainer", "uid": "u-1"}}}
	leaked := func() string {
		c.IssuedAt, c.Expiry = jwt.NewNumericDate(clock.Now()), jwt.NewNumericDate(clock.Now().Add(time.Hour))
		return signWith(t, jose.RS256, old, "key-1", c)
	}
	clock.Advance(maxKeyAge - time.Second)
	if _, err := v.Verify(context.Background(), leaked()); err != nil {
		t.Fatalf("inside maxKeyAge the cached key still verifies: %v", err)
	}
	clock.Advance(2 * time.Second)
	if _, err := v.Verify(context.Background(), leaked()); err == nil || !errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "no longer in cluster prod's key set") {
		t.Fatalf("retired key after maxKeyAge: %v", err)
	}

	// The cluster goes away: cached keys serve for the grace period, then nothing does.
	current := func() string { return f.token(t, "ml", "trainer", nil, clock.Now()) }
	if _, err := v.Verify(context.Background(), current()); err != nil {
		t.Fatal(err)
	}
	f.srv.Close()
	clock.Advance(maxKeyAge + keyGrace/2)
	if _, err := v.Verify(context.Background(), current()); err != nil {
		t.Fatalf("inside the grace period: %v", err)
	}
	clock.Advance(keyGrace)
	if _, err := v.Verify(context.Background(), current()); err == nil || errors.Is(err, identity.ErrUnauthenticated) || !strings.Contains(err.Error(), "keys unavailable") {
		t.Fatalf("after the grace period: %v", err)
	}
}
