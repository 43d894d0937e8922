// Package sqlite is the fleet store's embedded engine: one SQLite file
// (modernc.org/sqlite, pure Go) in write-ahead-log mode, for a service
// running as one node. One connection writes, a few read beside it; a
// second process must not open the same file (it would wait on the write
// lock: run replicas on PostgreSQL instead).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlstore"
)

// Readers is the number of read connections beside the writer.
const Readers = 4

// dialect is SQLite's: one writer at a time, so no row locks.
var dialect = sqlstore.Dialect{
	Name:   "sqlite",
	Blob:   "BLOB",
	Serial: "id INTEGER PRIMARY KEY AUTOINCREMENT",
}

// Open opens (creating it if needed) the database file at path and brings
// its schema up to date.
func Open(ctx context.Context, path string) (store.Store, error) {
	// synchronous(NORMAL) in WAL mode: a commit is durable once the
	// next checkpoint syncs it; a power loss may lose the last
	// verifications (the agents' logs still hold what they covered) but
	// never corrupts the file.
	pragmas := "_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)"
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + pragmas
	w, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", dsn+"&mode=ro")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(Readers)
	r.SetMaxIdleConns(Readers)
	s, err := sqlstore.Open(ctx, w, r, dialect, func() error { return errors.Join(r.Close(), w.Close()) })
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", path, err)
	}
	return s, nil
}
