package weights

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/vault/blob"
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
	// breakGlass: the grant that allowed the read is a break-glass grant.
	breakGlass bool
	err        error
	closed     bool
}

// Get opens a version for reading (0: the newest). The caller needs an active grant for read.
// Before it returns, the version's manifest, its header and its first segment are verified, so
// that a corrupt version is refused (a *CorruptError naming the part) before anything is sent.
func (s *Service) Get(ctx context.Context, p identity.Principal, name string, version uint64) (*Download, error) {
	dl, _, err := s.open(ctx, p, name, version)
	return dl, err
}

// open is Get; it also returns the version it found, even when that version is corrupt.
func (s *Service) open(ctx context.Context, p identity.Principal, name string, version uint64) (*Download, Object, error) {
	if err := CheckName(name); err != nil {
		return nil, Object{}, err
	}
	d, err := s.authorize(ctx, p, ActionRead, name)
	if err != nil {
		return nil, Object{}, err
	}
	o, err := s.find(ctx, name, version)
	if err != nil {
		return nil, o, err
	}
	if err := s.checkManifest(o); err != nil {
		return nil, o, err
	}
	h, err := s.header(ctx, o)
	if err != nil {
		return nil, o, err
	}
	dek, err := s.dataKey(ctx, o, h)
	if err != nil {
		return nil, o, err
	}
	rc, err := s.data(ctx, o)
	if err != nil {
		return nil, o, err
	}
	r, err := vault.NewReader(rc, h, dek)
	if err != nil {
		rc.Close()
		return nil, o, corrupt(o, err)
	}
	// Before each verified segment is released, the last one included: a grant that ends
	// between two segments stops the download there, and one revoked before the last segment
	// means the client never sees the end (invariant 2).
	check := s.stillAllowed(p, ActionRead, name)
	r.Gate = func(segment uint32, _ bool) error { return check(segment, r.Size()) }
	dl := &Download{Object: o, s: s, ctx: ctx, p: p, body: rc, r: r, grant: d.GrantID, breakGlass: d.BreakGlass}
	if err := r.Prime(); err != nil {
		dl.err = readErr(o, err)
		_ = dl.Close() // recorded as a read that stopped before its first byte
		return nil, o, dl.err
	}
	return dl, o, nil
}

// data opens o's stored segments.
func (s *Service) data(ctx context.Context, o Object) (io.ReadCloser, error) {
	rc, _, err := s.Blobs.Get(ctx, dataBlob(o))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, corruptf(o, "segment 0", "the data is missing from the blob store")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err)
	}
	return rc, nil
}

// readErr is what a failed read of o says: the corrupt part, the grant that ended, or the
// store that could not be read.
func readErr(o Object, err error) error {
	if errors.Is(err, vault.ErrCorrupt) {
		return corrupt(o, err)
	}
	if errors.Is(err, ErrGrantEnded) {
		return err
	}
	return fmt.Errorf("%w: %s version %d: %v", ErrUnavailable, Resource(o.Name), o.Version, err)
}

// Read returns verified plaintext.
func (dl *Download) Read(b []byte) (int, error) {
	n, err := dl.r.Read(b)
	if err != nil && err != io.EOF {
		err = readErr(dl.Object, err)
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
		Details: readDetails(map[string]any{"version": dl.Object.Version, "bytes": dl.r.Size(), "complete": complete, "grant_id": dl.grant}, dl.breakGlass, dl.p.IP)})
}

// VerifyResult is what Verify found.
type VerifyResult struct {
	Object   Object `json:"object"`
	OK       bool   `json:"ok"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Manifest string `json:"manifest_text"`
	// Part names what failed: PartHeader, PartManifest or "segment N"; Problem says how.
	Part    string `json:"part,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Verify decrypts a whole version and compares it with its signed manifest. It needs read. A
// corrupt version is a result (OK false, with the part and the problem), not an error.
func (s *Service) Verify(ctx context.Context, p identity.Principal, name string, version uint64) (VerifyResult, error) {
	dl, o, err := s.open(ctx, p, name, version)
	var ce *CorruptError
	if errors.As(err, &ce) {
		return VerifyResult{Object: o, Part: ce.Part, Problem: ce.Error()}, nil
	}
	if err != nil {
		return VerifyResult{}, err
	}
	defer dl.Close()
	res := VerifyResult{Object: o}
	res.Manifest, _ = s.OpenNote([]byte(o.Manifest)) // verified by open
	sum, n, err := sha(dl)
	res.Size, res.SHA256 = n, sum
	switch {
	case errors.As(err, &ce):
		res.Part, res.Problem = ce.Part, ce.Error()
	case err != nil:
		return res, err
	case n != o.Size || sum != o.SHA256:
		res.Part, res.Problem = PartManifest, corruptf(o, PartManifest, "the data decrypts to %d bytes with SHA-256 %s; the manifest says %d bytes, %s", n, sum, o.Size, o.SHA256).Error()
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
	if err := s.checkManifest(o); err != nil {
		return nil, o, err
	}
	rc, err := s.data(ctx, o)
	if err != nil {
		return nil, o, err
	}
	size := vault.CiphertextSize(o.Size, o.SegmentSize)
	g := &segmentGate{r: rc, segLen: int64(o.SegmentSize) + vault.TagSize, check: s.stillAllowed(p, ActionRead, name)}
	return &ciphertextRead{g: g, s: s, ctx: ctx, p: p, body: rc, size: size, o: o, grant: d.GrantID, breakGlass: d.BreakGlass}, o, nil
}

// ciphertextRead is a Segments stream: gated at each segment, and recorded when closed.
type ciphertextRead struct {
	g     *segmentGate
	s     *Service
	ctx   context.Context
	p     identity.Principal
	body  io.Closer
	size  int64
	o     Object
	grant string
	// breakGlass: the grant that allowed the read is a break-glass grant.
	breakGlass bool
	err        error
	closed     bool
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
		Details: readDetails(map[string]any{"version": c.o.Version, "bytes": c.g.n, "complete": complete, "ciphertext": true, "grant_id": c.grant}, c.breakGlass, p.IP)})
}

// readDetails marks a read under a break-glass grant ("break_glass": true) and records where
// the reader was ("client_ip" and its "network": the /24, or the /64 of an IPv6 address):
// detection pages on weights read under break-glass, and on a workload reading from a network
// it never used.
func readDetails(d map[string]any, breakGlass bool, ip string) map[string]any {
	if breakGlass {
		d["break_glass"] = true
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		a = a.Unmap()
		bits := 24
		if a.Is6() {
			bits = 64
		}
		n, _ := a.Prefix(bits)
		d["client_ip"], d["network"] = a.String(), n.String()
	}
	return d
}

func sha(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
