package devop

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is an RS256 key pair. It is the op.SigningKey the provider signs with; publicKey is
// the op.Key it publishes in the JWKS.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devop: generate RSA signing key: %w", err)
	}
	// The kid is the RFC 7638 thumbprint, so it names the key and nothing else.
	thumb, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("devop: thumbprint of signing key: %w", err)
	}
	return &signingKey{kid: base64.RawURLEncoding.EncodeToString(thumb), priv: priv}, nil
}

// SignatureAlgorithm implements op.SigningKey.
func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }

// Key implements op.SigningKey.
func (k *signingKey) Key() any { return k.priv }

// ID implements op.SigningKey.
func (k *signingKey) ID() string { return k.kid }

// publicKey is the public half of a signingKey, as op.Key.
type publicKey struct{ k *signingKey }

// ID implements op.Key.
func (p publicKey) ID() string { return p.k.kid }

// Algorithm implements op.Key.
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }

// Use implements op.Key.
func (p publicKey) Use() string { return "sig" }

// Key implements op.Key.
func (p publicKey) Key() any { return &p.k.priv.PublicKey }
