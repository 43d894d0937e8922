package postgres_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/fleet/store/postgres"
	"github.com/bpfattest/bpfattest/fleet/store/storetest"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

var schemas atomic.Int64

func TestStore(t *testing.T) {
	dsn := testutil.Postgres(t)
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		// A schema of its own per test, dropped afterwards.
		schema := fmt.Sprintf("storetest_%d_%d", time.Now().UnixNano(), schemas.Add(1))
		if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		})
		return func(ctx context.Context) (store.Store, error) { return postgres.Open(ctx, withSearchPath(dsn, schema)) }
	})
}

// withSearchPath adds a search_path run-time parameter to a DSN, URL or
// keyword/value.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		return dsn + sep + "search_path=" + schema
	}
	return dsn + " search_path=" + schema
}
