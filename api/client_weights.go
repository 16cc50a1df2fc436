package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"rampart.dev/rampart/weights"
)

// transferClient has no overall timeout (a multi-gigabyte transfer takes as long as it takes);
// the context bounds it.
var transferClient = &http.Client{}

func (c *Client) transfer(ctx context.Context, method, path string, q url.Values, body io.Reader, size int64) (*http.Response, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = size
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := guarded(transferClient).Do(req)
	if perr := refused(err); perr != nil {
		return nil, perr
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, fmt.Errorf("cannot reach the Rampart server at %s: %w", c.BaseURL, err)
		}
		return nil, fmt.Errorf("the Rampart server at %s gave no answer to %s %s: %w", c.BaseURL, method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e struct {
			Error *Error `json:"error"`
		}
		se := &ServerError{Status: resp.StatusCode, Body: string(raw)}
		if json.Unmarshal(raw, &e) == nil && e.Error != nil {
			se.Code, se.Message = e.Error.Code, e.Error.Message
		}
		return nil, se
	}
	return resp, nil
}

func versionQuery(v uint64) url.Values {
	if v == 0 {
		return nil
	}
	return url.Values{"version": {strconv.FormatUint(v, 10)}}
}

// PutWeights uploads a file as a new version of name (size -1 if unknown).
func (c *Client) PutWeights(ctx context.Context, name string, body io.Reader, size int64) (weights.Object, error) {
	resp, err := c.transfer(ctx, http.MethodPut, "/v1/weights/"+url.PathEscape(name), nil, body, size)
	if err != nil {
		return weights.Object{}, err
	}
	defer resp.Body.Close()
	var o weights.Object
	return o, json.NewDecoder(resp.Body).Decode(&o)
}

// ErrIncomplete means a download ended before the server confirmed the whole object verified.
var ErrIncomplete = errors.New("the download ended before the whole object was verified")

// GetWeights streams a version's plaintext into w and returns what the server said of it. It
// fails with ErrIncomplete unless the stream ended with the server's verification trailer and
// the bytes received hash to it and to the manifest: a caller writing a file must discard it on
// any error.
func (c *Client) GetWeights(ctx context.Context, name string, version uint64, w io.Writer) (weights.Object, error) {
	resp, err := c.transfer(ctx, http.MethodGet, "/v1/weights/"+url.PathEscape(name), versionQuery(version), nil, 0)
	if err != nil {
		return weights.Object{}, err
	}
	defer resp.Body.Close()
	o := weights.Object{Name: name, SHA256: resp.Header.Get(HeaderSHA256)}
	o.Version, _ = strconv.ParseUint(resp.Header.Get(HeaderVersion), 10, 64)
	o.Size, _ = strconv.ParseInt(resp.Header.Get(HeaderSize), 10, 64)
	seg, _ := strconv.ParseUint(resp.Header.Get(HeaderSegmentSize), 10, 32)
	o.SegmentSize = uint32(seg)
	sum := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, sum), resp.Body)
	if err != nil {
		// The server sends each segment only after it verified, and cuts the connection when
		// one fails or the grant ends: say where it stopped, and how to find out why.
		at := ""
		if o.SegmentSize > 0 {
			at = fmt.Sprintf(" (at segment %d of %d)", n/int64(o.SegmentSize), max((o.Size+int64(o.SegmentSize)-1)/int64(o.SegmentSize), 1))
		}
		return o, fmt.Errorf("%w: the server cut the download after %d of %d bytes%s: that segment failed verification (the version is corrupt), your grant ended, or the connection broke (%v); rampart weights verify %s --version %d names a corrupt part",
			ErrIncomplete, n, o.Size, at, err, name, o.Version)
	}
	got := hex.EncodeToString(sum.Sum(nil))
	switch verified := resp.Trailer.Get(TrailerVerified); {
	case verified == "":
		return o, fmt.Errorf("%w: %d of %d bytes and no verification from the server", ErrIncomplete, n, o.Size)
	case verified != got || got != o.SHA256 || n != o.Size:
		return o, fmt.Errorf("%w: received %d bytes with SHA-256 %s; the server verified %s and the manifest says %d bytes, %s", ErrIncomplete, n, got, verified, o.Size, o.SHA256)
	}
	return o, nil
}

// ListWeights lists the stored versions the caller may see.
func (c *Client) ListWeights(ctx context.Context) ([]weights.Object, error) {
	var out struct {
		Objects []weights.Object `json:"objects"`
	}
	err := c.do(ctx, "GET", "/v1/weights", nil, nil, &out)
	return out.Objects, err
}

// DeleteWeights deletes a version (0: all versions) of name.
func (c *Client) DeleteWeights(ctx context.Context, name string, version uint64) ([]weights.Object, error) {
	var out struct {
		Deleted []weights.Object `json:"deleted"`
	}
	err := c.do(ctx, "DELETE", "/v1/weights/"+url.PathEscape(name), versionQuery(version), nil, &out)
	return out.Deleted, err
}

// VerifyWeights asks the server to decrypt a version fully and check it against its manifest.
func (c *Client) VerifyWeights(ctx context.Context, name string, version uint64) (weights.VerifyResult, error) {
	var out weights.VerifyResult
	err := c.doLong(ctx, "POST", "/v1/weights/"+url.PathEscape(name)+"/verify", versionQuery(version), &out)
	return out, err
}

// RekeyWeights re-encrypts a version (0: every version) of name under new data keys (needs
// write), and returns the versions re-encrypted.
func (c *Client) RekeyWeights(ctx context.Context, name string, version uint64) ([]weights.Object, error) {
	var out struct {
		Rekeyed []weights.Object `json:"rekeyed"`
	}
	err := c.doLong(ctx, "POST", "/v1/weights/"+url.PathEscape(name)+"/rekey", versionQuery(version), &out)
	return out.Rekeyed, err
}

// ReleaseKey asks for a version's data key sealed to an ephemeral X25519 public key.
func (c *Client) ReleaseKey(ctx context.Context, name string, version uint64, publicKey []byte) (weights.KeyRelease, error) {
	var out weights.KeyRelease
	err := c.do(ctx, "POST", "/v1/weights/"+url.PathEscape(name)+"/key", nil,
		KeyReleaseBody{PublicKey: base64.StdEncoding.EncodeToString(publicKey), Version: version}, &out)
	return out, err
}

// Segments streams a version's raw ciphertext segments.
func (c *Client) Segments(ctx context.Context, name string, version uint64) (io.ReadCloser, error) {
	resp, err := c.transfer(ctx, http.MethodGet, "/v1/weights/"+url.PathEscape(name)+"/segments", versionQuery(version), nil, 0)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// RotateVault adds a key-encryption key and re-wraps every data key under it (admins).
func (c *Client) RotateVault(ctx context.Context) (string, int, error) {
	var out struct {
		KeyID     string `json:"key_id"`
		Rewrapped int    `json:"rewrapped"`
	}
	err := c.doLong(ctx, "POST", "/v1/vault/rotate", nil, &out)
	return out.KeyID, out.Rewrapped, err
}

// RetireVaultKey retires a key-encryption key no object uses (admins).
func (c *Client) RetireVaultKey(ctx context.Context, keyID string) error {
	return c.do(ctx, "POST", "/v1/vault/retire", nil, RetireBody{KeyID: keyID}, nil)
}

// doLong is do without the client's overall timeout (operations over whole objects).
func (c *Client) doLong(ctx context.Context, method, path string, q url.Values, out any) error {
	resp, err := c.transfer(ctx, method, path, q, nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}
