package main_test

import (
	"bytes"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	refjcs "github.com/gowebpki/jcs"

	"rampart.dev/rampart/audit"
	rserver "rampart.dev/rampart/server"
)

// Issue 11, item 11: every entry the end-to-end tests make a server write is checked, once the
// whole run is over, against an independent implementation of RFC 8785
// (github.com/gowebpki/jcs): it must be byte-equal to its canonical form. When a server stops,
// startServer reads its ledger from its database (SQLite file or PostgreSQL schema). With every
// test run (no -run) under RAMPART_REQUIRE_INTEGRATION=1, as in CI, every code Rampart writes
// (ledgerCodes) must have been seen, and every code seen must be listed there.

// ledgerCodes is every entry code Rampart writes to the ledger (docs/ledger.md has the table).
var ledgerCodes = []string{
	"request.create", "request.approve", "request.deny", "request.denied", "request.cancel", "request.expire",
	"request.post_review.approve", "request.post_review.deny", "request.post_review.accepted", "request.post_review.rejected",
	"request.approval_withdrawn",
	"grant.activate", "grant.renew", "grant.break_glass", "grant.revoke", "grant.expire", "grant.pin",
	"policy.load", "policy.refused",
	"token.issue", "token.revoke",
	"session.revoke", "session.refresh_reused", "session.step_up",
	"signin.success", "signin.refused", "signin.step_up_required",
	"user.enable", "user.disable", "user.unbind",
	"mfa.enrol_allowed", "mfa.enrolled", "mfa.replaced", "mfa.reset",
	"scim.user.create", "scim.user.update", "scim.user.replace", "scim.user.delete",
	"scim.group.create", "scim.group.update", "scim.group.replace", "scim.group.delete",
	"egress.budget_exhausted", "egress.transfer", "egress.denied",
	"kube.admission.denied", "kube.admission.excepted", "kube.binding.create", "kube.binding.delete", "kube.drift",
	"kube.netpol.created", "kube.netpol.restored", "kube.netpol.widened", "kube.netpol.removed", "kube.pod.deleted", "kube.exec", "ledger.start_refused",
	"weights.put", "weights.read", "weights.denied", "weights.key_release", "weights.delete", "weights.rekey",
	"secret.put", "secret.read", "secret.denied", "secret.delete", "secret.lease_renew", "secret.lease_revoke",
	"vault.rotate", "vault.retire",
	"change.request", "change.approve", "change.deny", "change.land", "change.void", "change.refused",
	"notification.failed",
	"ci.exchange", "ci.exchange.refused", "pipeline.trigger", "pipeline.trigger.refused", "pipeline.trigger.failed",
	"iac.drift", "iac.drift_cleared",
	"detect.alert", "alert.ack", "alert.resolve",
}

var ledgerTap struct {
	mu      sync.Mutex
	entries int
	codes   map[string]string // code → the test that first produced it
	bad     []string
}

// collectLedger reads the ledger of a stopped server started with args and checks each entry.
func collectLedger(t *testing.T, args []string) {
	t.Helper()
	db, err := openServerDB(args)
	if err != nil {
		t.Errorf("read the ledger of rampart %s to check its entries: %v", strings.Join(args, " "), err)
		return
	}
	if db == nil {
		return // not a control plane (egress gateway, KMS plugin)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT seq, entry FROM ledger ORDER BY seq`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "does not exist") {
			return // stopped before it created its schema
		}
		t.Errorf("read the ledger: %v", err)
		return
	}
	defer rows.Close()
	ledgerTap.mu.Lock()
	defer ledgerTap.mu.Unlock()
	if ledgerTap.codes == nil {
		ledgerTap.codes = map[string]string{}
	}
	for rows.Next() {
		var seq int64
		var entry string
		if err := rows.Scan(&seq, &entry); err != nil {
			t.Error(err)
			return
		}
		ledgerTap.entries++
		canon, err := refjcs.Transform([]byte(entry))
		if err != nil || !bytes.Equal(canon, []byte(entry)) {
			ledgerTap.bad = append(ledgerTap.bad, fmt.Sprintf("%s: entry %d is not in RFC 8785 canonical form (%v):\n  stored    %s\n  canonical %s", t.Name(), seq, err, entry, canon))
		}
		for _, problem := range checkLedgerEntry([]byte(entry)) {
			ledgerTap.bad = append(ledgerTap.bad, fmt.Sprintf("%s: entry %d does not match the LedgerEntry schema of api/openapi.json: %s\n  %s", t.Name(), seq, problem, entry))
		}
		s, err := audit.Summarize([]byte(entry))
		if err != nil {
			ledgerTap.bad = append(ledgerTap.bad, fmt.Sprintf("%s: entry %d: %v", t.Name(), seq, err))
			continue
		}
		if _, ok := ledgerTap.codes[s.Code]; !ok {
			ledgerTap.codes[s.Code] = t.Name()
		}
	}
	if err := rows.Err(); err != nil {
		t.Error(err)
	}
}

// openServerDB opens the database of `rampart dev --data D` or `rampart server --config F`.
func openServerDB(args []string) (*sql.DB, error) {
	flagValue := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
		return ""
	}
	switch {
	case len(args) > 0 && args[0] == "dev":
		data := flagValue("--data")
		if data == "" {
			data = ".rampart-dev"
		}
		return openSQLite(filepath.Join(data, "rampart.db"))
	case len(args) > 0 && args[0] == "server":
		cfg, err := rserver.LoadConfig(flagValue("--config"))
		if err != nil {
			return nil, err
		}
		if cfg.Store.Driver == "postgres" {
			dsn := cfg.Store.DSN
			if dsn == "" {
				dsn = os.Getenv("RAMPART_POSTGRES_DSN")
			}
			return sql.Open("pgx", dsn)
		}
		path := cfg.Store.Path
		if path == "" {
			path = filepath.Join(cfg.DataDir, "rampart.db")
		}
		return openSQLite(path)
	}
	return nil, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	return sql.Open("sqlite", "file:"+path+"?mode=ro")
}

// reportLedger prints what the run's entries showed; it returns false if the run must fail.
func reportLedger(w io.Writer) bool {
	ledgerTap.mu.Lock()
	defer ledgerTap.mu.Unlock()
	ok := true
	for _, b := range ledgerTap.bad {
		fmt.Fprintln(w, "FAIL (ledger):", b)
		ok = false
	}
	everything := flag.Lookup("test.run").Value.String() == "" && os.Getenv("RAMPART_REQUIRE_INTEGRATION") == "1"
	var missing, unlisted []string
	for _, c := range ledgerCodes {
		if _, seen := ledgerTap.codes[c]; !seen {
			missing = append(missing, c)
		}
	}
	for c := range ledgerTap.codes {
		if !slices.Contains(ledgerCodes, c) {
			unlisted = append(unlisted, c)
		}
	}
	sort.Strings(unlisted)
	if len(unlisted) > 0 {
		fmt.Fprintf(w, "FAIL (ledger): entry codes written but not listed in ledgerCodes (add them there and to docs/ledger.md): %s\n", strings.Join(unlisted, ", "))
		ok = false
	}
	switch {
	case len(missing) > 0 && everything:
		fmt.Fprintf(w, "FAIL (ledger): no end-to-end test made a server write these entry codes, so their canonical form went unchecked: %s\n", strings.Join(missing, ", "))
		ok = false
	case len(missing) > 0:
		fmt.Fprintf(w, "ledger: %d entries checked against RFC 8785; %d of %d codes seen (not a full run: the codes not seen are not checked)\n", ledgerTap.entries, len(ledgerCodes)-len(missing), len(ledgerCodes))
	default:
		fmt.Fprintf(w, "ledger: %d entries checked against RFC 8785, covering all %d entry codes\n", ledgerTap.entries, len(ledgerCodes))
	}
	return ok
}
