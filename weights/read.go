package weights

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
)

// Download is a running read of one version: plaintext, verified segment by segment, while the
// grant holds. Close records the read (with its byte count) in the ledger.
type Download struct {
	Object Object
	s      *Service
	ctx    context.Context
	p      identity.Principal
	body   io.Closer
	r      *vault.Reader
	grant  string
	err    error
	closed bool
}

// Get opens a version for reading (0: the newest). The caller needs an active grant for read.
func (s *Service) Get(ctx context.Context, p identity.Principal, name string, version uint64) (*Download, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	d, err := s.authorize(ctx, p, ActionRead, name)
	if err != nil {
		return nil, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return nil, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return nil, err
	}
	rc, _, err := s.Blobs.Get(ctx, dataKey(name, o.Version))
	if err != nil {
		return nil, fmt.Errorf("read %s version %d: %w", Resource(name), o.Version, err)
	}
	r, err := vault.Decrypt(ctx, s.Keys, h, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	// Before each verified segment is released, the last one included: a grant that ends
	// between two segments stops the download there, and one revoked before the last segment
	// means the client never sees the end (invariant 2).
	check := s.stillAllowed(p, ActionRead, name)
	r.Gate = func(segment uint32, _ bool) error { return check(segment, r.Size()) }
	return &Download{Object: o, s: s, ctx: ctx, p: p, body: rc, r: r, grant: d.GrantID}, nil
}

// Read returns verified plaintext.
func (dl *Download) Read(b []byte) (int, error) {
	n, err := dl.r.Read(b)
	if err != nil && err != io.EOF {
		dl.err = err
	}
	return n, err
}

// Complete reports whether the whole object was read and verified.
func (dl *Download) Complete() bool { return dl.err == nil && dl.r.Size() == dl.Object.Size }

// Close ends the read and records it.
func (dl *Download) Close() error {
	if dl.closed {
		return nil
	}
	dl.closed = true
	dl.body.Close()
	complete := dl.Complete()
	sev, msg := audit.SeverityLow, fmt.Sprintf("%s read %s version %d: %d of %d bytes", dl.p.Subject, Resource(dl.Object.Name), dl.Object.Version, dl.r.Size(), dl.Object.Size)
	if !complete {
		sev = audit.SeverityMedium
		if dl.err != nil {
			msg += " (stopped: " + dl.err.Error() + ")"
		}
	}
	return dl.s.Record(context.WithoutCancel(dl.ctx), audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: sev, Time: dl.s.now(), Actor: dl.p.Subject, Resources: []string{Resource(dl.Object.Name)}, Message: msg,
		Details: map[string]any{"version": dl.Object.Version, "bytes": dl.r.Size(), "complete": complete, "grant_id": dl.grant}})
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Object   Object `json:"object"`
	OK       bool   `json:"ok"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Manifest string `json:"manifest_text"`
	Problem  string `json:"problem,omitempty"`
}

// Verify decrypts a whole version and compares it with its signed manifest. It needs read.
func (s *Service) Verify(ctx context.Context, p identity.Principal, name string, version uint64, openNote func([]byte) (string, error)) (VerifyResult, error) {
	dl, err := s.Get(ctx, p, name, version)
	if err != nil {
		return VerifyResult{}, err
	}
	defer dl.Close()
	res := VerifyResult{Object: dl.Object}
	text, err := openNote([]byte(dl.Object.Manifest))
	if err != nil {
		res.Problem = "the manifest's signature does not verify: " + err.Error()
		return res, nil
	}
	res.Manifest = text
	sum, n, err := sha(dl)
	res.Size, res.SHA256 = n, sum
	switch {
	case err != nil:
		res.Problem = err.Error()
	case text != manifestText(dl.Object):
		res.Problem = "the stored metadata differs from the signed manifest"
	case n != dl.Object.Size || sum != dl.Object.SHA256:
		res.Problem = fmt.Sprintf("decrypted %d bytes with SHA-256 %s; the manifest says %d bytes, %s", n, sum, dl.Object.Size, dl.Object.SHA256)
	default:
		res.OK = true
	}
	return res, nil
}

// Segments streams a version's raw ciphertext segments (for a workload that holds a key
// release). It needs read, re-checked before each segment is passed on, and it is recorded
// like a read (weights.read with "ciphertext": true) when the stream is closed.
func (s *Service) Segments(ctx context.Context, p identity.Principal, name string, version uint64) (io.ReadCloser, Object, error) {
	if err := CheckName(name); err != nil {
		return nil, Object{}, err
	}
	d, err := s.authorize(ctx, p, ActionRead, name)
	if err != nil {
		return nil, Object{}, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return nil, Object{}, err
	}
	rc, info, err := s.Blobs.Get(ctx, dataKey(name, o.Version))
	if err != nil {
		return nil, o, fmt.Errorf("%w: read %s version %d: %v", ErrUnavailable, Resource(name), o.Version, err)
	}
	g := &segmentGate{r: rc, segLen: int64(o.SegmentSize) + vault.TagSize, check: s.stillAllowed(p, ActionRead, name)}
	return &ciphertextRead{g: g, s: s, ctx: ctx, p: p, body: rc, size: info.Size, o: o, grant: d.GrantID}, o, nil
}

// ciphertextRead is a Segments stream: gated at each segment, and recorded when closed.
type ciphertextRead struct {
	g      *segmentGate
	s      *Service
	ctx    context.Context
	p      identity.Principal
	body   io.Closer
	size   int64
	o      Object
	grant  string
	err    error
	closed bool
}

func (c *ciphertextRead) Read(b []byte) (int, error) {
	n, err := c.g.Read(b)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *ciphertextRead) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	c.body.Close()
	s, p := c.s, c.p
	complete := c.err == nil && c.g.n == c.size
	sev, msg := audit.SeverityLow, fmt.Sprintf("%s read the ciphertext of %s version %d: %d of %d bytes", p.Subject, Resource(c.o.Name), c.o.Version, c.g.n, c.size)
	if !complete {
		sev = audit.SeverityMedium
		if c.err != nil {
			msg += " (stopped: " + c.err.Error() + ")"
		}
	}
	return s.Record(context.WithoutCancel(c.ctx), audit.Event{Code: "weights.read", Class: audit.ClassDatastoreActivity, Activity: audit.ActivityRead, ActivityName: "Read",
		Severity: sev, Time: s.now(), Actor: p.Subject, Resources: []string{Resource(c.o.Name)}, Message: msg,
		Details: map[string]any{"version": c.o.Version, "bytes": c.g.n, "complete": complete, "ciphertext": true, "grant_id": c.grant}})
}

func sha(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
