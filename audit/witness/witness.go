// Package witness asks transparency-log witnesses to cosign the ledger's checkpoints, with the
// HTTP protocol of c2sp.org/tlog-witness: POST <prefix>/add-checkpoint with the size the
// witness cosigned last, a consistency proof from it, and the new checkpoint; the witness
// answers with its timestamped cosignature (c2sp.org/tlog-cosignature). A witness keeps the
// newest checkpoint it cosigned for each log and refuses anything inconsistent with it, so a
// ledger rolled back together with everything the server keeps (database and pinned checkpoint)
// can no longer get cosignatures, and the witness's answer proves what happened (invariant 5).
//
// The package is the client only; it fails closed: an answer it cannot verify with the
// witness's key is an error, never a cosignature. Conflicts that prove the ledger lost or
// rewrote history are typed (*AheadError, *InconsistentError) so the server can raise its tamper
// alarm on them and on nothing else.
package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// MaxProof is the most consistency proof lines the protocol allows.
const MaxProof = 63

// maxResponse bounds what is read of a witness's answer.
const maxResponse = 64 << 10

// Client submits checkpoints to one witness. It remembers the size the witness cosigned last
// (learning it from a 409 answer when it does not know), and is safe for concurrent use.
type Client struct {
	// URL is the witness's submission prefix; add-checkpoint is POSTed to URL + "/add-checkpoint".
	URL string
	// Verifier is the witness's cosignature key: an answer is accepted only if it verifies.
	Verifier note.Verifier
	// HTTP is the client to use (default: one with a 10s timeout).
	HTTP *http.Client

	mu    sync.Mutex
	known uint64 // size of the newest checkpoint the witness cosigned, as far as this client knows
}

// ProofFunc returns the RFC 6962 consistency proof from a tree of size old to the checkpoint's.
type ProofFunc func(ctx context.Context, old uint64) ([][]byte, error)

// AheadError is the witness's answer that it cosigned a checkpoint larger than the one
// submitted. If the ledger has fewer entries than Size, the ledger lost history that was
// witnessed: a rollback or truncation of its database.
type AheadError struct {
	Witness   string
	Size      uint64 // what the witness cosigned last
	Submitted uint64
}

func (e *AheadError) Error() string {
	return fmt.Sprintf("witness %s has cosigned a checkpoint of size %d, larger than the submitted one of size %d", e.Witness, e.Size, e.Submitted)
}

// InconsistentError is the witness's refusal (422) of a checkpoint whose consistency proof from
// the one it cosigned before does not verify: the ledger's history up to Old is not what the
// witness saw.
type InconsistentError struct {
	Witness   string
	Old, Size uint64
	Message   string
}

func (e *InconsistentError) Error() string {
	return fmt.Sprintf("witness %s refuses the checkpoint of size %d as inconsistent with the one of size %d it cosigned before: %s", e.Witness, e.Size, e.Old, e.Message)
}

// StatusError is any other refusal.
type StatusError struct {
	Witness string
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	hint := ""
	switch e.Status {
	case http.StatusNotFound, http.StatusForbidden:
		hint = " (does the witness know this ledger's origin and key? an operator adds them to the witness)"
	}
	return fmt.Sprintf("witness %s answered %d %s: %s%s", e.Witness, e.Status, http.StatusText(e.Status), e.Message, hint)
}

// Known returns the size this client believes the witness cosigned last (0 if it never heard).
func (c *Client) Known() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.known
}

// AddCheckpoint submits the signed checkpoint (of size size) and returns the witness's
// cosignature lines, verified with c.Verifier. When the witness answers that it knows another
// size, the request is made once more from that size.
func (c *Client) AddCheckpoint(ctx context.Context, signed []byte, size uint64, proof ProofFunc) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.known
	for attempt := 0; ; attempt++ {
		if old > size {
			return nil, &AheadError{Witness: c.Verifier.Name(), Size: old, Submitted: size}
		}
		var p [][]byte
		if old > 0 {
			var err error
			if p, err = proof(ctx, old); err != nil {
				return nil, fmt.Errorf("consistency proof from %d to %d for witness %s: %w", old, size, c.Verifier.Name(), err)
			}
			if len(p) > MaxProof {
				return nil, fmt.Errorf("consistency proof from %d to %d has %d hashes; the protocol allows %d", old, size, len(p), MaxProof)
			}
		}
		status, ctype, body, err := c.post(ctx, RequestBody(old, p, signed))
		if err != nil {
			return nil, err
		}
		switch status {
		case http.StatusOK:
			if err := verifyLines(signed, body, c.Verifier); err != nil {
				return nil, fmt.Errorf("witness %s: %w", c.Verifier.Name(), err)
			}
			c.known = size
			return body, nil
		case http.StatusConflict:
			known, err := ParseConflict(ctype, body)
			if err != nil {
				return nil, fmt.Errorf("witness %s answered 409 but %w", c.Verifier.Name(), err)
			}
			c.known = known
			if attempt > 0 || known == old {
				return nil, &StatusError{Witness: c.Verifier.Name(), Status: status, Message: fmt.Sprintf("it still says it cosigned size %d", known)}
			}
			old = known
		case http.StatusUnprocessableEntity:
			return nil, &InconsistentError{Witness: c.Verifier.Name(), Old: old, Size: size, Message: message(body)}
		default:
			return nil, &StatusError{Witness: c.Verifier.Name(), Status: status, Message: message(body)}
		}
	}
}

func (c *Client) post(ctx context.Context, body []byte) (status int, ctype string, resp []byte, err error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.URL, "/")+"/add-checkpoint", bytes.NewReader(body))
	if err != nil {
		return 0, "", nil, fmt.Errorf("witness %s: %w", c.Verifier.Name(), err)
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	r, err := hc.Do(req)
	if err != nil {
		return 0, "", nil, fmt.Errorf("witness %s is unreachable: %w", c.Verifier.Name(), err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, maxResponse+1))
	if err != nil {
		return 0, "", nil, fmt.Errorf("witness %s: reading the answer: %w", c.Verifier.Name(), err)
	}
	if len(b) > maxResponse {
		return 0, "", nil, fmt.Errorf("witness %s answered with more than %d bytes", c.Verifier.Name(), maxResponse)
	}
	return r.StatusCode, r.Header.Get("Content-Type"), b, nil
}

// RequestBody is an add-checkpoint request: the old size line, the proof lines, an empty line
// and the signed checkpoint.
func RequestBody(old uint64, proof [][]byte, signed []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(signed)
	return b.Bytes()
}

// ParseConflict reads the body of a 409 answer: the size the witness cosigned last, in decimal,
// and a newline, with the content type text/x.tlog.size.
func ParseConflict(ctype string, body []byte) (uint64, error) {
	if mt, _, _ := strings.Cut(ctype, ";"); strings.TrimSpace(mt) != "text/x.tlog.size" {
		return 0, fmt.Errorf("its content type is %q, not text/x.tlog.size", ctype)
	}
	s, ok := strings.CutSuffix(string(body), "\n")
	if !ok || s == "" || strings.ContainsAny(s, "\n") || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("its body %q is not a size and a newline", truncate(string(body), 40))
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("its body %q is not a size and a newline", truncate(string(body), 40))
	}
	return n, nil
}

// verifyLines checks that the answer is one or more note signature lines and that one of them
// is a valid cosignature of signed by the witness's key.
func verifyLines(signed, lines []byte, v note.Verifier) error {
	if len(lines) == 0 || !bytes.HasSuffix(lines, []byte("\n")) {
		return errors.New("the answer is not signature lines ending in a newline")
	}
	for _, l := range bytes.SplitAfter(lines[:len(lines)-1], []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("— ")) {
			return fmt.Errorf("the answer line %q is not a signature line", truncate(string(l), 60))
		}
	}
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return errors.New("the submitted checkpoint is not a signed note")
	}
	n, err := note.Open(append(signed[:i+2:i+2], lines...), note.VerifierList(v))
	if err != nil {
		return fmt.Errorf("its cosignature does not verify with its key: %w", err)
	}
	for _, s := range n.Sigs {
		if s.Name == v.Name() && s.Hash == v.KeyHash() {
			return nil
		}
	}
	return errors.New("the answer holds no cosignature by its key")
}

func message(body []byte) string {
	s := strings.TrimSpace(string(body))
	if s == "" {
		return "(no message)"
	}
	return truncate(s, 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
