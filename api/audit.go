package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"rampart.dev/rampart/audit"
)

// LedgerKey names the ledger and the public key that verifies its checkpoints.
type LedgerKey struct {
	Origin string `json:"origin"`
	Key    string `json:"key"`
}

func (s *Server) auditKey(w http.ResponseWriter, r *http.Request, c caller) error {
	writeJSON(w, 200, LedgerKey{Origin: s.ledger.Origin(), Key: s.ledger.VerifierKey()})
	return nil
}

// CheckpointResponse carries a signed checkpoint and its parsed fields.
type CheckpointResponse struct {
	Checkpoint string `json:"checkpoint"`
	Size       uint64 `json:"size"`
	Root       []byte `json:"root"`
	// Time is when the ledger signed it (nil for checkpoints signed before they carried it).
	Time *time.Time `json:"time,omitempty"`
	// Cosignatures are the configured witnesses' cosignatures, as the server verified them.
	Cosignatures []audit.Cosignature `json:"cosignatures,omitempty"`
}

func (s *Server) checkpointResponse(signed []byte, cp audit.Checkpoint) CheckpointResponse {
	out := CheckpointResponse{Checkpoint: string(signed), Size: cp.Size, Root: cp.Root}
	if !cp.Time.IsZero() {
		t := cp.Time
		out.Time = &t
	}
	cos, err := s.ledger.Cosignatures(signed)
	if err != nil {
		s.log.Warn("a stored checkpoint's cosignatures do not verify", "size", cp.Size, "err", err)
	}
	for _, c := range cos {
		if !c.Time.IsZero() {
			out.Cosignatures = append(out.Cosignatures, c)
		}
	}
	return out
}

// latestCheckpoint returns the newest stored checkpoint; it writes nothing.
func (s *Server) latestCheckpoint(w http.ResponseWriter, r *http.Request, c caller) error {
	signed, cp, err := s.ledger.Latest(r.Context())
	if errors.Is(err, audit.ErrNoCheckpoint) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "no checkpoint has been issued yet; POST /v1/audit/checkpoint issues one"}
	}
	if err != nil {
		return ledgerError(err)
	}
	writeJSON(w, 200, s.checkpointResponse(signed, cp))
	return nil
}

// issueCheckpoint signs and stores a checkpoint covering every entry committed so far, if the
// ledger grew since the last one, and returns the newest. A checkpoint signs nothing but the
// log's current size and root, so any authenticated caller may ask for one; verification needs
// it to cover the newest entries.
func (s *Server) issueCheckpoint(w http.ResponseWriter, r *http.Request, c caller) error {
	if err := decodeOptional(w, r, &struct{}{}); err != nil {
		return err
	}
	signed, cp, err := s.ledger.Checkpoint(r.Context())
	if err != nil {
		return ledgerError(err)
	}
	writeJSON(w, 200, s.checkpointResponse(signed, cp))
	return nil
}

func ledgerError(err error) error {
	var te *audit.TamperError
	var se *audit.SequenceError
	if errors.As(err, &te) || errors.As(err, &se) {
		return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
	}
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "ledger unavailable: " + err.Error()}
}

// MaxEntriesPage bounds one page of ledger entries.
const MaxEntriesPage = 5000

func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 63)
	if err != nil {
		return 0, errInvalid("query parameter %q must be a non-negative whole number", name)
	}
	return n, nil
}

// entries streams ledger entries as JSON lines, byte for byte as stored and hashed, so the
// reader can recompute the tree. Admins and auditors only: entries name people and reasons.
func (s *Server) entries(w http.ResponseWriter, r *http.Request, c caller) error {
	if !c.admin() && !c.auditor() {
		return errForbidden("reading ledger entries needs the admin or auditor group; anyone can verify checkpoints and proofs")
	}
	from, err := uintParam(r, "from", 0)
	if err != nil {
		return err
	}
	limit, err := uintParam(r, "limit", 1000)
	if err != nil {
		return err
	}
	if limit == 0 || limit > MaxEntriesPage {
		return errInvalid("query parameter \"limit\" must be from 1 to %d", MaxEntriesPage)
	}
	recs, err := s.ledgerStore().Entries(r.Context(), int64(from), int(limit))
	if err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "store unavailable: " + err.Error()}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Rampart-Entries", strconv.Itoa(len(recs)))
	for _, rec := range recs {
		_, _ = w.Write(rec.Data)
		_, _ = w.Write([]byte("\n"))
	}
	return nil
}

// ProofResponse carries a Merkle proof.
type ProofResponse struct {
	Proof [][]byte `json:"proof"`
}

func (s *Server) inclusionProof(w http.ResponseWriter, r *http.Request, c caller) error {
	index, err := uintParam(r, "index", 0)
	if err != nil {
		return err
	}
	size, err := uintParam(r, "size", 0)
	if err != nil {
		return err
	}
	if index >= size {
		return errInvalid("query parameters need index < size (got index %d, size %d)", index, size)
	}
	p, err := s.ledger.InclusionProof(r.Context(), index, size)
	if err != nil {
		return proofError(err)
	}
	writeJSON(w, 200, ProofResponse{Proof: p})
	return nil
}

func (s *Server) consistencyProof(w http.ResponseWriter, r *http.Request, c caller) error {
	from, err := uintParam(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := uintParam(r, "to", 0)
	if err != nil {
		return err
	}
	if from > to {
		return errInvalid("query parameters need from <= to (got %d > %d)", from, to)
	}
	p, err := s.ledger.ConsistencyProof(r.Context(), from, to)
	if err != nil {
		return proofError(err)
	}
	if p == nil {
		p = [][]byte{}
	}
	writeJSON(w, 200, ProofResponse{Proof: p})
	return nil
}

func proofError(err error) error {
	if errors.Is(err, audit.ErrBeyondTree) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	}
	return ledgerError(err)
}

// ledgerStore is the store the ledger reads, for streaming entries.
func (s *Server) ledgerStore() audit.Store { return s.entriesStore }
