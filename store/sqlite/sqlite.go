// Package sqlite opens Rampart's store on an embedded SQLite database (modernc.org/sqlite, pure
// Go, no cgo): the default for `rampart dev` and single-node installs.
//
// The database runs in WAL mode with a busy timeout; write transactions begin IMMEDIATE, which
// takes SQLite's write lock at once, so writers are serialized as the store requires.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"rampart.dev/rampart/store/sqlstore"
)

// Dialect is SQLite's.
var Dialect = sqlstore.Dialect{Name: "sqlite", SerializeInProcess: true}

// Open opens (creating if needed) the database file at path and applies migrations. The file is
// created readable only by its owner: it holds the ledger and token hashes.
func Open(ctx context.Context, path string) (*sqlstore.DB, error) {
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create directory for %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		f.Close()
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if path == ":memory:" {
		db.SetMaxOpenConns(1) // every connection would be a different empty database
	} else {
		// Readers run in parallel under WAL; keep the connections open rather than reopening
		// (and re-running the pragmas) for every burst of requests.
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
	}
	s, err := sqlstore.Open(ctx, db, Dialect)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return s, nil
}
