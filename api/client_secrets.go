package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"time"

	"rampart.dev/rampart/secrets"
)

// secretPath is a secret route with the name as one segment ('/' written %2F). The name is
// checked here first, so a path trick never leaves the client.
func secretPath(route, name string) (string, error) {
	if err := secrets.CheckName(name); err != nil {
		return "", err
	}
	return route + url.PathEscape(name), nil
}

// readSecret decodes a read's answer; the caller wipes it.
func readSecret(r io.Reader) (secrets.Secret, error) {
	raw, err := io.ReadAll(io.LimitReader(r, 1<<20))
	defer clear(raw)
	if err != nil {
		return secrets.Secret{}, err
	}
	var s secrets.Secret
	err = json.NewDecoder(bytes.NewReader(raw)).Decode(&s)
	return s, err
}

// PutSecret stores value as a new version of name.
func (c *Client) PutSecret(ctx context.Context, name string, value []byte) (secrets.Version, error) {
	p, err := secretPath("/v1/secrets/", name)
	if err != nil {
		return secrets.Version{}, err
	}
	var v secrets.Version
	err = c.do(ctx, http.MethodPut, p, nil, PutSecretBody{Value: value}, &v)
	return v, err
}

// GetSecret reads a version of name (0: the newest), with a lease when leaseTTL is not zero.
// The caller wipes the answer (Secret.Wipe) once done with it.
func (c *Client) GetSecret(ctx context.Context, name string, version uint64, leaseTTL time.Duration) (secrets.Secret, error) {
	p, err := secretPath("/v1/secrets/", name)
	if err != nil {
		return secrets.Secret{}, err
	}
	q := versionQuery(version)
	if leaseTTL > 0 {
		if q == nil {
			q = url.Values{}
		}
		q.Set("lease_ttl", leaseTTL.String())
	}
	var s secrets.Secret
	_, err = c.doRaw(ctx, http.MethodGet, p, q, nil, func(r io.Reader) error {
		var err error
		s, err = readSecret(r)
		return err
	})
	return s, err
}

// RenewSecretLease renews one of the caller's leases and reads its version again.
func (c *Client) RenewSecretLease(ctx context.Context, id string) (secrets.Secret, error) {
	if err := secrets.CheckLeaseID(id); err != nil {
		return secrets.Secret{}, err
	}
	var s secrets.Secret
	_, err := c.doRaw(ctx, http.MethodPost, "/v1/secret-leases/"+id+"/renew", nil, nil, func(r io.Reader) error {
		var err error
		s, err = readSecret(r)
		return err
	})
	return s, err
}

// RevokeSecretLease ends a lease.
func (c *Client) RevokeSecretLease(ctx context.Context, id string) (secrets.Lease, error) {
	if err := secrets.CheckLeaseID(id); err != nil {
		return secrets.Lease{}, err
	}
	var l secrets.Lease
	err := c.do(ctx, http.MethodPost, "/v1/secret-leases/"+id+"/revoke", nil, nil, &l)
	return l, err
}

// ListSecrets lists the newest version of each secret the caller may see.
func (c *Client) ListSecrets(ctx context.Context) ([]secrets.Version, error) {
	var out struct {
		Secrets []secrets.Version `json:"secrets"`
	}
	err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, nil, &out)
	return out.Secrets, err
}

// SecretVersions lists every version of name.
func (c *Client) SecretVersions(ctx context.Context, name string) ([]secrets.Version, error) {
	p, err := secretPath("/v1/secret-versions/", name)
	if err != nil {
		return nil, err
	}
	var out struct {
		Versions []secrets.Version `json:"versions"`
	}
	err = c.do(ctx, http.MethodGet, p, nil, nil, &out)
	return out.Versions, err
}

// DeleteSecret deletes every version of name and says how many.
func (c *Client) DeleteSecret(ctx context.Context, name string) (int, error) {
	p, err := secretPath("/v1/secrets/", name)
	if err != nil {
		return 0, err
	}
	var out struct {
		Deleted int `json:"deleted"`
	}
	err = c.do(ctx, http.MethodDelete, p, nil, nil, &out)
	return out.Deleted, err
}
