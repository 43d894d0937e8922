package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/sqlite"
	"github.com/bpfattest/bpfattest/fleet/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "fleet.db")
		return func(ctx context.Context) (store.Store, error) { return sqlite.Open(ctx, path) }
	})
}

func TestUpgrade(t *testing.T) {
	storetest.RunUpgrade(t, func(t *testing.T) (storetest.Opener, storetest.Exec) {
		path := filepath.Join(t.TempDir(), "fleet.db")
		open := func(ctx context.Context) (store.Store, error) { return sqlite.Open(ctx, path) }
		exec := func(ctx context.Context, stmt string) error {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.ExecContext(ctx, stmt)
			return err
		}
		return open, exec
	})
}
