package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/bpfattest/bpfattest/fleet/store"
)

// Store implements store.Store.
type Store struct {
	w, r  *sql.DB // writes (and reads in transactions); other reads
	d     Dialect
	close func() error
}

var _ store.Store = (*Store)(nil)

// Open runs the migrations on the database and returns the store. w is
// used for every write, r for reads outside transactions (the same pool,
// or for SQLite a pool of readers beside the one writer); closeFn closes
// them.
func Open(ctx context.Context, w, r *sql.DB, d Dialect, closeFn func() error) (*Store, error) {
	s := &Store{w: w, r: r, d: d, close: closeFn}
	if err := s.migrate(ctx); err != nil {
		return nil, errors.Join(err, closeFn())
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.close() }

const agentCols = `name, mode, address, server_name, cert_sha256, policy, ak_public, pinned, ek_cert_sha256,
	state, state_version, next_due, failures, status, lease_owner, lease_until, challenge, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanAgent(row scanner) (*store.Agent, error) {
	var a store.Agent
	var next, until, created, updated int64
	if err := row.Scan(&a.Name, &a.Mode, &a.Address, &a.ServerName, &a.CertSHA256, &a.Policy, &a.AKPublic,
		&a.Pinned, &a.EKCertSHA256, &a.State, &a.StateVersion, &next, &a.Failures, &a.Status, &a.LeaseOwner,
		&until, &a.Challenge, &created, &updated); err != nil {
		return nil, err
	}
	a.NextDue, a.LeaseUntil, a.CreatedAt, a.UpdatedAt = fromMS(next), fromMS(until), fromMS(created), fromMS(updated)
	return &a, nil
}

// nullBytes stores nil as NULL.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

func limit(n int) int {
	if n <= 0 {
		return math.MaxInt32
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Register implements store.Store.
func (s *Store) Register(ctx context.Context, regs ...store.Registration) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("register: %w", err)
	}
	defer tx.Rollback()
	for i := range regs {
		if err := s.register(ctx, tx, &regs[i]); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	return nil
}

// register adds or updates one agent in tx.
func (s *Store) register(ctx context.Context, tx *sql.Tx, r *store.Registration) error {
	if r.Mode == store.ModePush {
		var other string
		err := tx.QueryRowContext(ctx, s.q(`SELECT name FROM agents WHERE mode = 'push' AND cert_sha256 = ? AND name <> ?`), r.CertSHA256, r.Name).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("register %s: %w: agent %s has the same client certificate", r.Name, store.ErrConflict, other)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("register %s: %w", r.Name, err)
		}
	}
	var ak, st []byte
	err := tx.QueryRowContext(ctx, s.q(`SELECT ak_public, state FROM agents WHERE name = ?`+s.d.ForUpdate), r.Name).Scan(&ak, &st)
	now := ms(r.Now)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		var version int64
		if r.State != nil {
			version = 1
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO agents (name, mode, address, server_name, cert_sha256, policy, ak_public, pinned,
			ek_cert_sha256, state, state_version, next_due, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			r.Name, r.Mode, r.Address, r.ServerName, r.CertSHA256, r.Policy, nullBytes(r.AKPublic), r.Pinned, r.EKCertSHA256,
			nullBytes(r.State), version, ms(r.NextDue), now, now)
	case err != nil:
	case r.AKPublic != nil && ak != nil && !bytes.Equal(ak, r.AKPublic):
		return fmt.Errorf("register %s: %w: it pins another AK; delete the agent to pin a new one", r.Name, store.ErrConflict)
	default:
		_, err = tx.ExecContext(ctx, s.q(`UPDATE agents SET mode = ?, address = ?, server_name = ?, cert_sha256 = ?, policy = ?, updated_at = ? WHERE name = ?`),
			r.Mode, r.Address, r.ServerName, r.CertSHA256, r.Policy, now, r.Name)
		if err == nil && ak == nil && r.AKPublic != nil {
			_, err = tx.ExecContext(ctx, s.q(`UPDATE agents SET ak_public = ?, pinned = ?, ek_cert_sha256 = ? WHERE name = ?`),
				r.AKPublic, r.Pinned, r.EKCertSHA256, r.Name)
		}
		if err == nil && st == nil && r.State != nil {
			_, err = tx.ExecContext(ctx, s.q(`UPDATE agents SET state = ?, state_version = state_version + 1 WHERE name = ?`), r.State, r.Name)
		}
	}
	if err != nil {
		return fmt.Errorf("register %s: %w", r.Name, err)
	}
	return nil
}

// Delete implements store.Store.
func (s *Store) Delete(ctx context.Context, name string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(`DELETE FROM agents WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("delete %s: %w", name, store.ErrNotFound)
	}
	for _, stmt := range []string{`DELETE FROM verdicts WHERE agent = ?`, `DELETE FROM history WHERE agent = ?`, `DELETE FROM outbox WHERE agent = ?`} {
		if _, err := tx.ExecContext(ctx, s.q(stmt), name); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Agent implements store.Store.
func (s *Store) Agent(ctx context.Context, name string) (*store.Agent, error) {
	a, err := scanAgent(s.r.QueryRowContext(ctx, s.q(`SELECT `+agentCols+` FROM agents WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("agent %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", name, err)
	}
	return a, nil
}

// AgentByIdentity implements store.Store.
func (s *Store) AgentByIdentity(ctx context.Context, fp string) (*store.Agent, error) {
	a, err := scanAgent(s.r.QueryRowContext(ctx, s.q(`SELECT `+agentCols+` FROM agents WHERE mode = 'push' AND cert_sha256 = ?`), fp))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("push agent with certificate %s: %w", fp, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("push agent with certificate %s: %w", fp, err)
	}
	return a, nil
}

// Agents implements store.Store.
func (s *Store) Agents(ctx context.Context, f store.AgentFilter) ([]store.AgentView, error) {
	status := f.Status
	if status == "none" {
		status = ""
	}
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT a.name, a.mode, a.address, a.policy, a.status, COALESCE(v.reason, ''),
		COALESCE(v.at, 0), a.next_due, a.failures FROM agents a LEFT JOIN verdicts v ON v.agent = a.name
		WHERE (? = 0 OR a.status = ?) AND a.name > ? ORDER BY a.name LIMIT ?`), boolInt(f.Status != ""), status, f.After, limit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	defer rows.Close()
	var out []store.AgentView
	for rows.Next() {
		var v store.AgentView
		var at, next int64
		if err := rows.Scan(&v.Name, &v.Mode, &v.Address, &v.Policy, &v.Status, &v.Reason, &at, &next, &v.Failures); err != nil {
			return nil, fmt.Errorf("agents: %w", err)
		}
		v.VerifiedAt, v.NextDue = fromMS(at), fromMS(next)
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("agents: %w", err)
	}
	return out, nil
}

// PutPolicy implements store.Store.
func (s *Store) PutPolicy(ctx context.Context, name string, body []byte, now time.Time) (int, error) {
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("policy %s: %w", name, err)
	}
	defer tx.Rollback()
	if s.d.LockMigrations != nil {
		// Two replicas storing a new version at once would pick the
		// same number: one waits for the other.
		if err := s.d.LockMigrations(ctx, tx); err != nil {
			return 0, fmt.Errorf("policy %s: %w", name, err)
		}
	}
	var version int
	var latest string
	err = tx.QueryRowContext(ctx, s.q(`SELECT version, sha256 FROM policies WHERE name = ? ORDER BY version DESC LIMIT 1`), name).Scan(&version, &latest)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, fmt.Errorf("policy %s: %w", name, err)
	case latest == digest:
		return version, nil
	}
	version++
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO policies (name, version, body, sha256, created_at) VALUES (?, ?, ?, ?, ?)`),
		name, version, body, digest, ms(now)); err != nil {
		return 0, fmt.Errorf("policy %s: %w", name, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("policy %s: %w", name, err)
	}
	return version, nil
}

// Policy implements store.Store.
func (s *Store) Policy(ctx context.Context, name string, version int) (*store.Policy, error) {
	p := store.Policy{Name: name}
	var created int64
	var err error
	if version <= 0 {
		err = s.r.QueryRowContext(ctx, s.q(`SELECT version, body, sha256, created_at FROM policies WHERE name = ? ORDER BY version DESC LIMIT 1`), name).
			Scan(&p.Version, &p.Body, &p.SHA256, &created)
	} else {
		err = s.r.QueryRowContext(ctx, s.q(`SELECT version, body, sha256, created_at FROM policies WHERE name = ? AND version = ?`), name, version).
			Scan(&p.Version, &p.Body, &p.SHA256, &created)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("policy %s version %d: %w", name, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	p.CreatedAt = fromMS(created)
	return &p, nil
}

// Policies implements store.Store.
func (s *Store) Policies(ctx context.Context) ([]store.Policy, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT p.name, p.version, p.body, p.sha256, p.created_at FROM policies p
		WHERE p.version = (SELECT MAX(version) FROM policies q WHERE q.name = p.name) ORDER BY p.name`)
	if err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	defer rows.Close()
	var out []store.Policy
	for rows.Next() {
		var p store.Policy
		var created int64
		if err := rows.Scan(&p.Name, &p.Version, &p.Body, &p.SHA256, &created); err != nil {
			return nil, fmt.Errorf("policies: %w", err)
		}
		p.CreatedAt = fromMS(created)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("policies: %w", err)
	}
	return out, nil
}

// Claim implements store.Store.
func (s *Store) Claim(ctx context.Context, req store.ClaimRequest) ([]*store.Agent, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	now := ms(req.Now)
	rows, err := s.w.QueryContext(ctx, s.q(`UPDATE agents SET lease_owner = ?, lease_until = ? WHERE name IN (
		SELECT name FROM agents WHERE lease_until <= ? AND ((mode = 'pull' AND next_due <= ?) OR (mode = 'push' AND next_due <= ?))
		ORDER BY next_due LIMIT ?`+s.d.SkipLocked+`) RETURNING `+agentCols),
		req.Owner, ms(req.Now.Add(req.Lease)), now, now, ms(req.Now.Add(-req.PushGrace)), req.Limit)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	defer rows.Close()
	var out []*store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

// ClaimAgent implements store.Store.
func (s *Store) ClaimAgent(ctx context.Context, name, owner string, challenge []byte, now time.Time, lease time.Duration) (*store.Agent, error) {
	a, err := scanAgent(s.w.QueryRowContext(ctx, s.q(`UPDATE agents SET lease_owner = ?, lease_until = ?, challenge = ?
		WHERE name = ? AND mode = 'push' AND lease_until <= ? RETURNING `+agentCols),
		owner, ms(now.Add(lease)), challenge, name, ms(now)))
	if errors.Is(err, sql.ErrNoRows) {
		var mode string
		err := s.r.QueryRowContext(ctx, s.q(`SELECT mode FROM agents WHERE name = ?`), name).Scan(&mode)
		switch {
		case errors.Is(err, sql.ErrNoRows) || (err == nil && mode != store.ModePush):
			return nil, fmt.Errorf("claim %s: %w", name, store.ErrNotFound)
		case err != nil:
			return nil, fmt.Errorf("claim %s: %w", name, err)
		}
		return nil, fmt.Errorf("claim %s: %w", name, store.ErrBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", name, err)
	}
	return a, nil
}

// Complete implements store.Store.
func (s *Store) Complete(ctx context.Context, o *store.Outcome) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	}
	defer tx.Rollback()
	var prev, owner string
	var version int64
	err = tx.QueryRowContext(ctx, s.q(`SELECT status, state_version, lease_owner FROM agents WHERE name = ?`+s.d.ForUpdate), o.Agent).
		Scan(&prev, &version, &owner)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("complete %s: %w: the agent was deleted", o.Agent, store.ErrLeaseLost)
	case err != nil:
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	case owner != o.Owner || version != o.FromVersion:
		return fmt.Errorf("complete %s: %w: lease held by %q at state version %d, this verification has %q at %d",
			o.Agent, store.ErrLeaseLost, owner, version, o.Owner, o.FromVersion)
	}
	to := version
	if o.State != nil {
		to++
	}
	res, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET state = COALESCE(?, state), state_version = ?, next_due = ?, failures = ?,
		status = ?, lease_owner = '', lease_until = 0, challenge = NULL, updated_at = ?
		WHERE name = ? AND lease_owner = ? AND state_version = ?`),
		nullBytes(o.State), to, ms(o.NextDue), o.Failures, o.Status, ms(o.At), o.Agent, o.Owner, o.FromVersion)
	if err != nil {
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("complete %s: %w", o.Agent, store.ErrLeaseLost)
	}
	if o.AKPublic != nil {
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE agents SET ak_public = ?, pinned = ?, ek_cert_sha256 = ? WHERE name = ? AND ak_public IS NULL`),
			o.AKPublic, o.Pinned, o.EKCertSHA256, o.Agent); err != nil {
			return fmt.Errorf("complete %s: %w", o.Agent, err)
		}
	}
	at := ms(o.At)
	if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO verdicts (agent, status, reason, verdict, policy_version, state_version, at, since)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent) DO UPDATE SET status = excluded.status, reason = excluded.reason,
		verdict = excluded.verdict, policy_version = excluded.policy_version, state_version = excluded.state_version,
		at = excluded.at, since = CASE WHEN verdicts.status = excluded.status THEN verdicts.since ELSE excluded.since END`),
		o.Agent, o.Status, o.Reason, nullBytes(o.Verdict), o.PolicyVersion, to, at, at); err != nil {
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	}
	transition := prev != o.Status
	var kept []byte
	if transition {
		kept = o.Verdict
	}
	var id int64
	if err := tx.QueryRowContext(ctx, s.q(`INSERT INTO history (agent, owner, started, at, status, prev_status, transition, from_version,
		to_version, reason, verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		o.Agent, o.Owner, ms(o.Started), at, o.Status, prev, boolInt(transition), version, to, o.Reason, nullBytes(kept)).Scan(&id); err != nil {
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	}
	if transition && o.Alert != nil && o.Alert(prev, o.Status) {
		for _, url := range o.Webhooks {
			if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO outbox (history_id, agent, url, created, next_attempt) VALUES (?, ?, ?, ?, ?)`),
				id, o.Agent, url, at, at); err != nil {
				return fmt.Errorf("complete %s: outbox: %w", o.Agent, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("complete %s: %w", o.Agent, err)
	}
	return nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, owner string) error {
	if _, err := s.w.ExecContext(ctx, s.q(`UPDATE agents SET lease_owner = '', lease_until = 0 WHERE lease_owner = ?`), owner); err != nil {
		return fmt.Errorf("release %s: %w", owner, err)
	}
	if _, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET lease_owner = '', lease_until = 0 WHERE lease_owner = ?`), owner); err != nil {
		return fmt.Errorf("release %s: %w", owner, err)
	}
	return nil
}

// Verdict implements store.Store.
func (s *Store) Verdict(ctx context.Context, name string) (*store.Verdict, error) {
	v := store.Verdict{Agent: name}
	var at, since int64
	err := s.r.QueryRowContext(ctx, s.q(`SELECT status, reason, verdict, policy_version, state_version, at, since FROM verdicts WHERE agent = ?`), name).
		Scan(&v.Status, &v.Reason, &v.Verdict, &v.PolicyVersion, &v.StateVersion, &at, &since)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("verdict %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("verdict %s: %w", name, err)
	}
	v.At, v.Since = fromMS(at), fromMS(since)
	return &v, nil
}

const historyCols = `id, agent, owner, started, at, status, prev_status, transition, from_version, to_version, reason, verdict`

func scanHistory(row scanner) (store.HistoryRow, error) {
	var h store.HistoryRow
	var started, at int64
	var transition int
	err := row.Scan(&h.ID, &h.Agent, &h.Owner, &started, &at, &h.Status, &h.PrevStatus, &transition, &h.FromVersion,
		&h.ToVersion, &h.Reason, &h.Verdict)
	h.Started, h.At, h.Transition = fromMS(started), fromMS(at), transition != 0
	return h, err
}

// History implements store.Store.
func (s *Store) History(ctx context.Context, name string, f store.HistoryFilter) ([]store.HistoryRow, error) {
	rows, err := s.r.QueryContext(ctx, s.q(`SELECT `+historyCols+` FROM history WHERE agent = ? AND (? = 0 OR transition = 1)
		ORDER BY id DESC LIMIT ?`), name, boolInt(f.TransitionsOnly), limit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	defer rows.Close()
	var out []store.HistoryRow
	for rows.Next() {
		h, err := scanHistory(rows)
		if err != nil {
			return nil, fmt.Errorf("history %s: %w", name, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	return out, nil
}

// Summary implements store.Store.
func (s *Store) Summary(ctx context.Context, now time.Time) (*store.Summary, error) {
	sum := &store.Summary{ByStatus: map[string]int{}}
	rows, err := s.r.QueryContext(ctx, `SELECT status, COUNT(*) FROM agents GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("summary: %w", err)
		}
		if status == "" {
			status = "none"
		}
		sum.ByStatus[status] += n
		sum.Agents += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	var oldest int64
	if err := s.r.QueryRowContext(ctx, s.q(`SELECT COALESCE(MIN(next_due), 0), COALESCE(SUM(CASE WHEN next_due <= ? THEN 1 ELSE 0 END), 0)
		FROM agents WHERE mode = 'pull'`), ms(now)).Scan(&oldest, &sum.Due); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	sum.OldestDue = fromMS(oldest)
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN failed = 0 THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(failed), 0) FROM outbox WHERE done = 0`).Scan(&sum.WebhookBacklog, &sum.WebhookFailed); err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	return sum, nil
}

// ClaimDeliveries implements store.Store.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, n int) ([]store.Delivery, error) {
	rows, err := s.w.QueryContext(ctx, s.q(`UPDATE outbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id IN (
		SELECT id FROM outbox WHERE done = 0 AND failed = 0 AND next_attempt <= ? AND lease_until <= ? ORDER BY id LIMIT ?`+s.d.SkipLocked+`)
		RETURNING id, history_id, url, attempts, created`), owner, ms(now.Add(lease)), ms(now), ms(now), limit(n))
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	var out []store.Delivery
	for rows.Next() {
		var d store.Delivery
		var created int64
		if err := rows.Scan(&d.ID, &d.Event.ID, &d.URL, &d.Attempts, &created); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claim deliveries: %w", err)
		}
		d.Created = fromMS(created)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	for i := range out {
		h, err := scanHistory(s.w.QueryRowContext(ctx, s.q(`SELECT `+historyCols+` FROM history WHERE id = ?`), out[i].Event.ID))
		if err != nil {
			return nil, fmt.Errorf("claim deliveries: event %d: %w", out[i].Event.ID, err)
		}
		out[i].Event = h
	}
	return out, nil
}

// Delivered implements store.Store.
func (s *Store) Delivered(ctx context.Context, id int64, owner string, now time.Time) error {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET done = ?, lease_owner = '', lease_until = 0, last_error = '' WHERE id = ? AND lease_owner = ?`),
		ms(now), id, owner)
	if err != nil {
		return fmt.Errorf("delivered %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("delivered %d: %w", id, store.ErrLeaseLost)
	}
	return nil
}

// Retry implements store.Store.
func (s *Store) Retry(ctx context.Context, id int64, owner string, next time.Time, lastErr string) error {
	res, err := s.w.ExecContext(ctx, s.q(`UPDATE outbox SET next_attempt = ?, failed = ?, last_error = ?, lease_owner = '', lease_until = 0
		WHERE id = ? AND lease_owner = ?`), ms(next), boolInt(next.IsZero()), lastErr, id, owner)
	if err != nil {
		return fmt.Errorf("retry %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("retry %d: %w", id, store.ErrLeaseLost)
	}
	return nil
}

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, rounds, transitions time.Time) (int64, error) {
	var total int64
	for _, c := range []struct {
		stmt string
		args []any
	}{
		{`DELETE FROM history WHERE ((transition = 0 AND at < ?) OR (transition = 1 AND at < ?))
			AND id NOT IN (SELECT history_id FROM outbox WHERE done = 0 AND failed = 0)`, []any{ms(rounds), ms(transitions)}},
		{`DELETE FROM outbox WHERE (done <> 0 AND done < ?) OR (failed = 1 AND created < ?)`, []any{ms(transitions), ms(transitions)}},
	} {
		res, err := s.w.ExecContext(ctx, s.q(c.stmt), c.args...)
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}
