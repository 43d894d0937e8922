package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Dialect holds what differs between the engines.
type Dialect struct {
	Name string
	// Blob and Serial are the column types of byte strings and of an
	// auto-incremented primary key column named id.
	Blob, Serial string
	// Dollar: placeholders are $1, $2, … instead of ?.
	Dollar bool
	// ForUpdate locks the rows a SELECT picks (" FOR UPDATE"), and
	// SkipLocked skips rows other transactions hold (" FOR UPDATE SKIP
	// LOCKED"); empty where one writer at a time is the rule.
	ForUpdate, SkipLocked string
	// LockMigrations, if set, serialises migrations between processes
	// inside tx.
	LockMigrations func(ctx context.Context, tx *sql.Tx) error
}

// migrations are the schema versions, in order; migration i takes the
// schema from version i to i+1. Never edit one that has shipped: add
// the next.
var migrations = []string{
	// 1: agents, policies, latest verdicts, history, outbox.
	`CREATE TABLE agents (
		name TEXT PRIMARY KEY,
		mode TEXT NOT NULL,
		address TEXT NOT NULL DEFAULT '',
		server_name TEXT NOT NULL DEFAULT '',
		cert_sha256 TEXT NOT NULL DEFAULT '',
		policy TEXT NOT NULL DEFAULT '',
		ak_public {blob},
		pinned TEXT NOT NULL DEFAULT '',
		ek_cert_sha256 TEXT NOT NULL DEFAULT '',
		state {blob},
		state_version BIGINT NOT NULL DEFAULT 0,
		next_due BIGINT NOT NULL,
		failures INTEGER NOT NULL DEFAULT 0,
		status TEXT NOT NULL DEFAULT '',
		lease_owner TEXT NOT NULL DEFAULT '',
		lease_until BIGINT NOT NULL DEFAULT 0,
		challenge {blob},
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX agents_due ON agents (next_due);
	CREATE INDEX agents_status ON agents (status);
	CREATE UNIQUE INDEX agents_push_identity ON agents (cert_sha256) WHERE mode = 'push';
	CREATE TABLE policies (
		name TEXT NOT NULL,
		version INTEGER NOT NULL,
		body {blob} NOT NULL,
		sha256 TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		PRIMARY KEY (name, version)
	);
	CREATE TABLE verdicts (
		agent TEXT PRIMARY KEY,
		status TEXT NOT NULL,
		reason TEXT NOT NULL,
		verdict {blob},
		policy_version INTEGER NOT NULL,
		state_version BIGINT NOT NULL,
		at BIGINT NOT NULL,
		since BIGINT NOT NULL
	);
	CREATE TABLE history (
		{serial},
		agent TEXT NOT NULL,
		owner TEXT NOT NULL,
		started BIGINT NOT NULL,
		at BIGINT NOT NULL,
		status TEXT NOT NULL,
		prev_status TEXT NOT NULL,
		transition SMALLINT NOT NULL,
		from_version BIGINT NOT NULL,
		to_version BIGINT NOT NULL,
		reason TEXT NOT NULL,
		verdict {blob}
	);
	CREATE INDEX history_agent ON history (agent, id);
	CREATE INDEX history_at ON history (at);
	CREATE TABLE outbox (
		{serial},
		history_id BIGINT NOT NULL,
		agent TEXT NOT NULL,
		url TEXT NOT NULL,
		created BIGINT NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_attempt BIGINT NOT NULL,
		done BIGINT NOT NULL DEFAULT 0,
		failed SMALLINT NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		lease_owner TEXT NOT NULL DEFAULT '',
		lease_until BIGINT NOT NULL DEFAULT 0
	);
	CREATE INDEX outbox_due ON outbox (done, failed, next_attempt);`,
}

// SchemaVersion is the schema version this package writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the schema to SchemaVersion, one transaction per step,
// and refuses a database from a newer release.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if s.d.LockMigrations != nil {
		if err := s.d.LockMigrations(ctx, tx); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: the database has schema version %d, this release knows %d", have, len(migrations))
	}
	for v := have; v < len(migrations); v++ {
		for _, stmt := range strings.Split(s.expand(migrations[v]), ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrate: version %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v+1, ms(time.Now())); err != nil {
			return fmt.Errorf("migrate: version %d: %w", v+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func (s *Store) expand(ddl string) string {
	return strings.NewReplacer("{blob}", s.d.Blob, "{serial}", s.d.Serial).Replace(ddl)
}

// q rewrites ? placeholders for the dialect (the statements have no ?
// inside literals).
func (s *Store) q(query string) string {
	if !s.d.Dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ms converts a time to the stored Unix milliseconds (0 for the zero
// time), and fromMS back.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}
