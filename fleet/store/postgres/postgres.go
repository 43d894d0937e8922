// Package postgres is the fleet store's engine for PostgreSQL (through
// pgx), which service replicas share: leases are taken with FOR UPDATE
// SKIP LOCKED, so replicas split the due agents between them, and
// migrations run under a transaction-scoped advisory lock, so replicas
// starting together migrate once.
package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlstore"
)

// MaxConns bounds the connections one service node opens.
const MaxConns = 16

// lockKey is the advisory lock of schema changes (and policy versions).
const lockKey = 0x62706661 // "bpfa"

var dialect = sqlstore.Dialect{
	Name:       "postgres",
	Blob:       "BYTEA",
	Serial:     "id BIGSERIAL PRIMARY KEY",
	Dollar:     true,
	ForUpdate:  " FOR UPDATE",
	SkipLocked: " FOR UPDATE SKIP LOCKED",
	LockMigrations: func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey)
		return err
	},
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, as libpq takes) and brings its schema up to date.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(MaxConns)
	db.SetMaxIdleConns(MaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s, err := sqlstore.Open(ctx, db, db, dialect, db.Close)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return s, nil
}
