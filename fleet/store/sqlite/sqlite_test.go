package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/fleet/store/sqlstore"
	"github.com/bpfattest/bpfattest/fleet/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "fleet.db")
		return func(ctx context.Context) (store.Store, error) { return sqlite.Open(ctx, path) }
	})
}

func TestUpgrade(t *testing.T) {
	storetest.RunUpgrade(t, func(t *testing.T) storetest.UpgradeDB {
		path := filepath.Join(t.TempDir(), "fleet.db")
		// Each call a connection of its own, closed before the store opens
		// the file.
		withDB := func(ctx context.Context, fn func(*sql.DB) error) error {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				return err
			}
			defer db.Close()
			return fn(db)
		}
		return storetest.UpgradeDB{
			Open: func(ctx context.Context) (store.Store, error) { return sqlite.Open(ctx, path) },
			Exec: func(ctx context.Context, stmt string) error {
				return withDB(ctx, func(db *sql.DB) error { _, err := db.ExecContext(ctx, stmt); return err })
			},
			MigrateTo: func(ctx context.Context, version int) error {
				return withDB(ctx, func(db *sql.DB) error { return sqlstore.Migrate(ctx, db, sqlite.Dialect, version) })
			},
		}
	})
}
