// Package postgres opens Rampart's store on PostgreSQL through pgx (github.com/jackc/pgx/v5),
// for production and several replicas.
//
// Every write transaction begins by locking the single ledger head row (SELECT … FOR UPDATE), so
// writers across all replicas are serialized and ledger sequence numbers follow commit order.
// Migrations take a transaction-scoped advisory lock so replicas starting together do not race.
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"rampart.dev/rampart/store/sqlstore"
)

// Dialect is PostgreSQL's.
var Dialect = sqlstore.Dialect{
	Name:           "postgres",
	Numbered:       true,
	LockWriter:     `SELECT size FROM ledger_head WHERE id = 1 FOR UPDATE`,
	LockMigrations: `SELECT pg_advisory_xact_lock(7262737)`,
}

// Open connects to dsn (a postgres:// URL or key=value string) and applies migrations.
func Open(ctx context.Context, dsn string) (*sqlstore.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres connection string: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(20)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres %s@%s:%d/%s: %w", cfg.User, cfg.Host, cfg.Port, cfg.Database, err)
	}
	s, err := sqlstore.Open(ctx, db, Dialect)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}
