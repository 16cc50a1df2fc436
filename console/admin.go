package console

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rampart.dev/rampart/api"
	"rampart.dev/rampart/audit"
	"rampart.dev/rampart/identity"
)

func asServerError(err error, se **api.ServerError) bool { return errors.As(err, se) }

func (c *Console) clearCookies(w http.ResponseWriter) {
	for _, ck := range identity.ClearSessionCookies(c.secure) {
		http.SetCookie(w, ck)
	}
}

// entry is a ledger entry as the audit page shows and filters it; Seq < 0 marks one the
// prefilter skipped.
type entry = audit.Summary

func parseEntry(data []byte) (entry, error) { return audit.Summarize(data) }

// auditFilter is the audit page's query.
type auditFilter struct {
	Actor, Event, Resource, Request string
	From, To                        time.Time
	FromText, ToText                string
}

// mayMatch is a cheap necessary condition for match on an entry's raw JSON: entries are
// canonical JSON (RFC 8785), which escapes only quotes, backslashes and control characters, so a
// term without those that an entry's field holds appears in it verbatim. Entries that cannot
// match are not decoded.
func (f auditFilter) mayMatch(raw []byte) bool {
	for _, term := range []string{f.Actor, strings.TrimSuffix(f.Event, "*"), f.Resource, f.Request} {
		if term != "" && !strings.ContainsFunc(term, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 }) &&
			!bytes.Contains(raw, []byte(term)) {
			return false
		}
	}
	return true
}

func (f auditFilter) match(e entry) bool {
	switch {
	case f.Actor != "" && e.Actor != f.Actor && e.User != f.Actor:
		return false
	case f.Event != "" && e.Code != f.Event && !strings.HasPrefix(e.Code, strings.TrimSuffix(f.Event, "*")):
		return false
	case f.Request != "" && e.RequestID != f.Request && e.GrantID != f.Request:
		return false
	case !f.From.IsZero() && e.Time.Before(f.From):
		return false
	case !f.To.IsZero() && !e.Time.Before(f.To):
		return false
	}
	if f.Resource != "" {
		for _, r := range e.Resources {
			if r == f.Resource {
				return true
			}
		}
		return false
	}
	return true
}

// parseWhen reads a time filter: RFC 3339, or a date, or a datetime-local input's value (UTC).
func parseWhen(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is not a time; use 2026-12-07, 2026-12-07T18:00 (UTC) or RFC 3339", field, s)
}

// auditPageSize is how many matching entries a page shows; auditScan how many entries one page
// reads at most, newest first (the next page continues from there), so that a page costs the
// same on a ledger of any size.
const (
	auditPageSize = 50
	auditScan     = 5000
	auditChunk    = 1000
)

type auditData struct {
	Filter     auditFilter
	Entries    []entry
	Size       uint64
	Scanned    int
	Older      string
	Checkpoint *api.CheckpointResponse
	Verified   string
	Problem    string
}

func (c *Console) audit(v *view) error {
	if !v.me.Admin && !v.me.Auditor {
		c.problem(v, http.StatusForbidden, "Not allowed", "Reading the ledger needs the admin or auditor group (anyone can verify checkpoints with `rampart audit verify`).")
		return nil
	}
	q := v.r.URL.Query()
	d := auditData{Filter: auditFilter{Actor: q.Get("actor"), Event: q.Get("event"), Resource: q.Get("resource"), Request: q.Get("request"), FromText: q.Get("from"), ToText: q.Get("to")}}
	var err error
	if d.Filter.From, err = parseWhen("from", d.Filter.FromText); err != nil {
		d.Problem = err.Error()
	}
	if d.Filter.To, err = parseWhen("to", d.Filter.ToText); err != nil {
		d.Problem = err.Error()
	}
	cp, err := v.api.LatestCheckpoint(v.ctx())
	if err == nil {
		d.Checkpoint = &cp
		d.Verified = c.verifyCheckpoint(v, cp)
	} else if !api.IsStatus(err, http.StatusNotFound) {
		return err
	}
	// The end of the ledger: the checkpoint's size, then whatever was appended since.
	end := uint64(0)
	if d.Checkpoint != nil {
		end = d.Checkpoint.Size
	}
	for {
		n := uint64(0)
		if err := v.api.Entries(v.ctx(), end, api.MaxEntriesPage, func(uint64, []byte) error { n++; return nil }); err != nil {
			return err
		}
		end += n
		if n < api.MaxEntriesPage {
			break
		}
	}
	d.Size = end
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n > end {
			d.Problem = fmt.Sprintf("before %q is not a position in this ledger (0 to %d)", b, end)
		} else {
			end = n
		}
	}
	if d.Problem == "" {
		// Read back from the end in growing chunks: an unfiltered page needs one small read, a
		// rare event a few large ones.
		chunk := uint64(2 * auditPageSize)
		for end > 0 && d.Scanned < auditScan && len(d.Entries) < auditPageSize {
			from := uint64(0)
			if end > chunk {
				from = end - chunk
			}
			chunk = min(chunk*4, auditChunk)
			var read []entry
			err := v.api.Entries(v.ctx(), from, end-from, func(seq uint64, data []byte) error {
				if !d.Filter.mayMatch(data) {
					read = append(read, entry{Seq: -1})
					return nil
				}
				e, err := parseEntry(data)
				if err != nil {
					return fmt.Errorf("ledger entry %d: %w", seq, err)
				}
				read = append(read, e)
				return nil
			})
			if err != nil {
				return err
			}
			for i := len(read) - 1; i >= 0 && len(d.Entries) < auditPageSize; i-- {
				d.Scanned++
				end = from + uint64(i)
				if read[i].Seq >= 0 && d.Filter.match(read[i]) {
					d.Entries = append(d.Entries, read[i])
				}
			}
		}
		if end > 0 {
			o := url.Values{}
			for k, vs := range q {
				o[k] = vs
			}
			o.Set("before", strconv.FormatUint(end, 10))
			d.Older = "/audit?" + o.Encode()
		}
	}
	c.render(v, http.StatusOK, "audit", page{Title: "Audit", Nav: "audit", Data: d})
	return nil
}

// verifyCheckpoint checks the newest checkpoint's signature with the ledger's public key and says
// what was checked, in words.
func (c *Console) verifyCheckpoint(v *view, cp api.CheckpointResponse) string {
	key, err := v.api.LedgerKey(v.ctx())
	if err != nil {
		return "not verified: the ledger's key could not be read (" + problemText(err) + ")"
	}
	ver, err := audit.NewVerifier(key.Key)
	if err != nil {
		return "not verified: " + err.Error()
	}
	got, err := audit.OpenCheckpoint([]byte(cp.Checkpoint), ver)
	if err != nil {
		return "FAILED: " + err.Error()
	}
	if got.Size != cp.Size {
		return fmt.Sprintf("FAILED: the signed checkpoint is for %d entries, the server says %d", got.Size, cp.Size)
	}
	msg := fmt.Sprintf("signature valid (key %s), %d entries", key.Origin, got.Size)
	if n := len(cp.Cosignatures); n > 0 {
		msg += fmt.Sprintf(", cosigned by %d witness(es)", n)
	}
	return msg + ". For a full check against an export, run `rampart audit verify`."
}

type adminData struct {
	Users    []identity.User
	Sessions []identity.Session
	Tokens   []identity.Token
}

func (c *Console) admin(v *view) error {
	if !v.me.Admin && !v.me.Auditor {
		c.problem(v, http.StatusForbidden, "Not allowed", "The admin page needs the admin group (auditors may look, not change).")
		return nil
	}
	var d adminData
	var err error
	if d.Users, err = v.api.Users(v.ctx()); err != nil && !api.IsStatus(err, http.StatusNotFound) {
		return err
	}
	if d.Sessions, err = v.api.Sessions(v.ctx(), "", true); err != nil && !api.IsStatus(err, http.StatusNotFound) {
		return err
	}
	if d.Tokens, err = v.api.Tokens(v.ctx(), "", true); err != nil && !api.IsStatus(err, http.StatusNotFound) {
		return err
	}
	c.render(v, http.StatusOK, "admin", page{Title: "Admin", Nav: "admin", Data: d})
	return nil
}

func (c *Console) userAction(v *view) error {
	subject, action := v.r.PathValue("subject"), v.r.PathValue("action")
	var err error
	switch action {
	case "disable":
		_, err = v.api.DisableUser(v.ctx(), subject, v.r.PostForm.Get("reason"))
	case "enable":
		err = v.api.UserAction(v.ctx(), subject, action)
	default:
		c.problem(v, http.StatusNotFound, "Not found", "The console can disable and enable people; use the CLI for "+action+".")
		return nil
	}
	if err != nil {
		return err
	}
	return seeOther(v, "/admin", "done")
}

func (c *Console) revokeSession(v *view) error {
	if err := v.api.RevokeSession(v.ctx(), v.r.PathValue("id"), v.r.PostForm.Get("reason")); err != nil {
		return err
	}
	return seeOther(v, "/admin", "done")
}

func (c *Console) revokeToken(v *view) error {
	if err := v.api.RevokeToken(v.ctx(), v.r.PathValue("id")); err != nil {
		return err
	}
	return seeOther(v, "/admin", "done")
}
