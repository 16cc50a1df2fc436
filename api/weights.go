package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"rampart.dev/rampart/vault"
	"rampart.dev/rampart/weights"
)

// Headers of weight transfers.
const (
	// HeaderVersion is the object version served or stored.
	HeaderVersion = "X-Rampart-Version"
	// HeaderSize and HeaderSHA256 are the manifest's plaintext size and SHA-256.
	HeaderSize   = "X-Rampart-Size"
	HeaderSHA256 = "X-Rampart-SHA256"
	// HeaderSegmentSize is the plaintext bytes per segment: a client whose download was cut
	// can say at which segment.
	HeaderSegmentSize = "X-Rampart-Segment-Size"
	// TrailerVerified is the SHA-256 of the plaintext the server streamed, sent as a trailer
	// only when the whole object was read and verified. A download without it is incomplete.
	TrailerVerified = "X-Rampart-Verified"
)

// weightsErr maps vault errors to API errors.
func weightsErr(err error) error {
	var d *weights.Denied
	switch {
	case errors.As(err, &d):
		return errForbidden("%s", err.Error())
	case errors.Is(err, weights.ErrGrantEnded):
		return errForbidden("%s", err.Error())
	case errors.Is(err, weights.ErrInvalid):
		return errInvalid("%s", err.Error())
	case errors.Is(err, weights.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, weights.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, weights.ErrUnavailable), errors.Is(err, vault.ErrKey):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: err.Error()}
	case errors.Is(err, vault.ErrCorrupt):
		// A *weights.CorruptError names the version, the part and what to do.
		var ce *weights.CorruptError
		if !errors.As(err, &ce) {
			return &Error{Status: http.StatusInternalServerError, Code: CodeCorrupt, Message: err.Error() + " (the stored object fails verification; restore it from backup)"}
		}
		return &Error{Status: http.StatusInternalServerError, Code: CodeCorrupt, Message: err.Error()}
	}
	return err
}

func (s *Server) vaultOr404() error {
	if s.weights == nil {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "this server has no weights vault configured (vault section of the server configuration)"}
	}
	return nil
}

// objectName checks that the vault is on and returns the {name} of an object route.
func (s *Server) objectName(r *http.Request) (string, error) {
	if err := s.vaultOr404(); err != nil {
		return "", err
	}
	return pathName(r)
}

// objectRef is objectName and the optional ?version=N (0: the newest).
func (s *Server) objectRef(r *http.Request) (string, uint64, error) {
	name, err := s.objectName(r)
	if err != nil {
		return "", 0, err
	}
	version, err := queryVersion(r)
	return name, version, err
}

func pathName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := weights.CheckName(name); err != nil {
		return "", errInvalid("%v", err)
	}
	return name, nil
}

func queryVersion(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, errInvalid("version %q must be a positive whole number (or absent for the newest)", v)
	}
	return n, nil
}

// listWeights is GET /v1/weights: the versions the caller may read or write (everything for
// admins and auditors).
func (s *Server) listWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.vaultOr404(); err != nil {
		return err
	}
	list, err := s.weights.List(r.Context(), c.Principal, c.admin() || c.auditor())
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"objects": list})
	return nil
}

// putWeights is PUT /v1/weights/{name}: the body (application/octet-stream) is the plaintext,
// streamed, encrypted and stored as a new version.
func (s *Server) putWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.objectName(r)
	if err != nil {
		return err
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/octet-stream" {
		ct := r.Header.Get("Content-Type")
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupported, Message: fmt.Sprintf("the body must be application/octet-stream (the file itself), not %q", ct)}
	}
	o, err := s.weights.Put(r.Context(), c.Principal, name, &idleReader{r: r.Body, rc: http.NewResponseController(w), idle: transferIdle})
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusCreated, o)
	return nil
}

// getWeights is GET /v1/weights/{name}[?version=N]: the plaintext, streamed as it verifies.
// The manifest, the header and the first segment are verified before the status line, so a
// corrupt version is a 500 naming the part. The trailer X-Rampart-Verified is sent only after
// the whole object verified; if the grant ends or a later segment fails, the connection is cut
// and no trailer comes.
func (s *Server) getWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := noHead(w, r); err != nil {
		return err
	}
	name, version, err := s.objectRef(r)
	if err != nil {
		return err
	}
	dl, err := s.weights.Get(r.Context(), c.Principal, name, version)
	if err != nil {
		return weightsErr(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderVersion, strconv.FormatUint(dl.Object.Version, 10))
	h.Set(HeaderSize, strconv.FormatInt(dl.Object.Size, 10))
	h.Set(HeaderSHA256, dl.Object.SHA256)
	h.Set(HeaderSegmentSize, strconv.FormatUint(uint64(dl.Object.SegmentSize), 10))
	h.Set("Trailer", TrailerVerified)
	w.WriteHeader(http.StatusOK)
	// The status line goes out now: a failure later is a cut body, never a missing answer
	// (which a client would take for a server it cannot reach).
	_ = http.NewResponseController(w).Flush()
	sum := sha256.New()
	_, cerr := io.Copy(io.MultiWriter(&idleWriter{w: w, rc: http.NewResponseController(w), idle: transferIdle}, sum), dl)
	complete := cerr == nil && dl.Complete()
	if err := dl.Close(); err != nil {
		s.log.Error("cannot record a weights read in the ledger", "name", name, "err", err)
	}
	if !complete {
		s.log.Warn("weights download stopped", "name", name, "subject", c.Subject, "err", cerr)
		panic(http.ErrAbortHandler) // cut the connection: the client sees no trailer and discards the file
	}
	h.Set(TrailerVerified, hex.EncodeToString(sum.Sum(nil)))
	return nil
}

// deleteWeights is DELETE /v1/weights/{name}[?version=N] (every version without one).
func (s *Server) deleteWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	name, version, err := s.objectRef(r)
	if err != nil {
		return err
	}
	gone, err := s.weights.Delete(r.Context(), c.Principal, name, version)
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"deleted": gone})
	return nil
}

// verifyWeights is POST /v1/weights/{name}/verify[?version=N]: decrypt the whole object and
// compare it with its signed manifest.
func (s *Server) verifyWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	name, version, err := s.objectRef(r)
	if err != nil {
		return err
	}
	var res weights.VerifyResult
	err = working(w, func() error {
		res, err = s.weights.Verify(r.Context(), c.Principal, name, version)
		return err
	})
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// rekeyWeights is POST /v1/weights/{name}/rekey[?version=N] (every ready version without one):
// re-encrypt under new data keys, so that data keys released before decrypt nothing stored.
// Needs write.
func (s *Server) rekeyWeights(w http.ResponseWriter, r *http.Request, c caller) error {
	name, version, err := s.objectRef(r)
	if err != nil {
		return err
	}
	var done []weights.Object
	err = working(w, func() error {
		done, err = s.weights.Rekey(r.Context(), c.Principal, name, version)
		return err
	})
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"rekeyed": done})
	return nil
}

// working runs fn, an operation over whole objects whose answer comes only at the end, keeping
// the connection's write deadline ahead of it: the server's whole-request timeout would
// otherwise cut a verification or a rekey of a large object while it is still working.
func working(w http.ResponseWriter, fn func() error) error {
	rc := http.NewResponseController(w)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)
	_ = rc.SetWriteDeadline(time.Now().Add(transferIdle))
	wg.Go(func() {
		t := time.NewTicker(transferIdle / 8)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				_ = rc.SetWriteDeadline(now.Add(transferIdle))
			}
		}
	})
	return fn()
}

// KeyReleaseBody is the body of POST /v1/weights/{name}/key.
type KeyReleaseBody struct {
	// PublicKey is the workload's ephemeral X25519 public key, base64 (32 bytes).
	PublicKey string `json:"public_key"`
	Version   uint64 `json:"version,omitempty"`
}

// releaseKey is POST /v1/weights/{name}/key: the data key sealed to the caller's ephemeral
// X25519 key (HPKE), for a workload that decrypts locally.
func (s *Server) releaseKey(w http.ResponseWriter, r *http.Request, c caller) error {
	name, err := s.objectName(r)
	if err != nil {
		return err
	}
	var b KeyReleaseBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	pub, err := base64.StdEncoding.DecodeString(b.PublicKey)
	if err != nil || len(pub) != 32 {
		return errInvalid("public_key must be a base64 X25519 public key (32 bytes)")
	}
	kr, err := s.weights.ReleaseKey(r.Context(), c.Principal, name, b.Version, pub)
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, kr)
	return nil
}

// getSegments is GET /v1/weights/{name}/segments[?version=N]: the raw ciphertext segments, for
// a workload that holds a key release (which carries the header).
func (s *Server) getSegments(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := noHead(w, r); err != nil {
		return err
	}
	name, version, err := s.objectRef(r)
	if err != nil {
		return err
	}
	rc, o, err := s.weights.Segments(r.Context(), c.Principal, name, version)
	if err != nil {
		return weightsErr(err)
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set(HeaderVersion, strconv.FormatUint(o.Version, 10))
	h.Set("Content-Length", strconv.FormatInt(vault.CiphertextSize(o.Size, o.SegmentSize), 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(&idleWriter{w: w, rc: http.NewResponseController(w), idle: transferIdle}, rc); err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// rotateVault is POST /v1/vault/rotate (admins): re-wrap every data key under the key
// provider's current key.
func (s *Server) rotateVault(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.vaultOr404(); err != nil {
		return err
	}
	if !c.admin() {
		return errForbidden("re-wrapping the vault's keys needs an admin")
	}
	kid, n, err := s.weights.Rotate(r.Context(), c.Subject)
	if err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"key_id": kid, "rewrapped": n})
	return nil
}

// RetireBody is the body of POST /v1/vault/retire.
type RetireBody struct {
	KeyID string `json:"key_id"`
}

// retireKey is POST /v1/vault/retire (admins): a key-encryption key no object uses any more
// stops unwrapping.
func (s *Server) retireKey(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := s.vaultOr404(); err != nil {
		return err
	}
	if !c.admin() {
		return errForbidden("retiring a vault key needs an admin")
	}
	var b RetireBody
	if err := decode(w, r, &b); err != nil {
		return err
	}
	if b.KeyID == "" {
		return errInvalid("key_id is required")
	}
	if err := s.weights.Retire(r.Context(), c.Subject, b.KeyID); err != nil {
		return weightsErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]string{"key_id": b.KeyID, "status": "retired"})
	return nil
}

// noHead refuses HEAD on a download: Go's mux sends HEAD to GET handlers, and a HEAD would
// otherwise decrypt the whole object and be recorded as a read.
func noHead(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodHead {
		return nil
	}
	w.Header().Set("Allow", "GET")
	return &Error{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed, Message: "HEAD is not served on downloads (it would read the whole object); use GET, or GET /v1/weights for sizes"}
}

// transferIdle is how long a weights transfer may make no progress. Transfers of many
// gigabytes outlast the server's whole-request timeouts, so for them those are replaced by a
// deadline that each read or write pushes forward: a slow but moving transfer completes, a
// stalled one is cut.
var transferIdle = time.Minute

// idleReader pushes the connection's deadlines forward as the body is read.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	last time.Time
}

func (i *idleReader) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(i.last) > i.idle/8 {
		i.last = now
		// The answer comes after the whole body: its write deadline moves too. (Writers that
		// do not support deadlines keep the server's timeouts.)
		_ = i.rc.SetReadDeadline(now.Add(i.idle))
		_ = i.rc.SetWriteDeadline(now.Add(i.idle))
	}
	return i.r.Read(p)
}

// idleWriter pushes the connection's write deadline forward as the answer is written.
type idleWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
	last time.Time
}

func (i *idleWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(i.last) > i.idle/8 {
		i.last = now
		_ = i.rc.SetWriteDeadline(now.Add(i.idle))
	}
	return i.w.Write(p)
}
