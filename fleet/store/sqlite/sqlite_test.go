package sqlite_test

import (
	"context"
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
