package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/bpfattest/bpfattest/internal/testutil"
)

// TestFleetReplicas runs two service replicas on one PostgreSQL database
// and kills one with SIGKILL while it holds leases: every agent is still
// verified within two intervals (the survivor takes the dead replica's
// agents over when their leases run out), both replicas shared the work
// before, no agent was verified by both at once, and no agent's state was
// ever advanced twice from the same version (checked from the history).
func TestFleetReplicas(t *testing.T) {
	dsn := testutil.Postgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	schema := fmt.Sprintf("replicas_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	q := func(query string, args ...any) *sql.Row {
		return db.QueryRowContext(t.Context(), strings.ReplaceAll(query, "S.", schema+"."), args...)
	}
	sdsn := dsn + " search_path=" + schema
	if strings.HasPrefix(dsn, "postgres") {
		sdsn = dsn + map[bool]string{true: "&", false: "?"}[strings.Contains(dsn, "?")] + "search_path=" + schema
	}

	const n = 12
	agents := spawnAgents(t, n)
	var inv strings.Builder
	for i, a := range agents {
		fmt.Fprintf(&inv, "host%02d %s\n", i, a.listen)
	}
	const interval = 2 * time.Second
	common := []string{"--db", sdsn, "--tofu", "--agent-insecure-loopback", "--listen", "127.0.0.1:0", "--insecure-loopback",
		"--interval", interval.String(), "--timeout", "1s", "--lease", "1500ms", "--concurrency", "4", "--log-format", "json"}
	a, err := start(serviceBin, append([]string{"--replica", "a", "--inventory", writeFile(t, "hosts.txt", inv.String()),
		"--policy", writeFile(t, "p.yaml", "version: 1\nallow_simulator: true\nrequire_signed: true\n")}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			a.stop(t)
		}
	}()
	b, err := start(serviceBin, append([]string{"--replica", "b"}, common...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop(t)

	count := func(query string, args ...any) int {
		var c int
		if err := q(query, args...).Scan(&c); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return c
	}
	waitFor(t, 30*time.Second, "every agent verified twice, by both replicas", func() bool {
		return count(`SELECT COUNT(*) FROM (SELECT agent FROM S.history GROUP BY agent HAVING COUNT(*) >= 2) x`) == n &&
			count(`SELECT COUNT(DISTINCT owner) FROM S.history`) == 2
	})
	// Mid-round: a holds leases on agents it is verifying. A
	// verification takes milliseconds here, so look often, freeze a
	// (SIGSTOP) when it holds leases, and kill it if it still does.
	held := 0
	for deadline := time.Now().Add(30 * time.Second); held == 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("replica a never seen holding a lease")
		}
		if count(`SELECT COUNT(*) FROM S.agents WHERE lease_owner = 'a'`) == 0 {
			continue
		}
		if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if held = count(`SELECT COUNT(*) FROM S.agents WHERE lease_owner = 'a'`); held == 0 {
			a.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	kill := time.Now()
	<-a.exited
	t.Logf("killed replica a holding %d leases", held)

	deadline := 2 * interval
	took := waitFor(t, 3*deadline, "every agent verified after the kill", func() bool {
		return count(`SELECT COUNT(DISTINCT agent) FROM S.history WHERE started >= $1`, kill.UnixMilli()) == n
	})
	t.Logf("every agent verified again %v after the kill (two intervals: %v)", took.Round(time.Millisecond), deadline)
	if took > deadline {
		t.Errorf("the last agent was verified %v after the kill, more than two intervals (%v)", took, deadline)
	}
	if c := count(`SELECT COUNT(*) FROM S.history WHERE started >= $1 AND owner = 'a'`, kill.UnixMilli()+100); c != 0 {
		t.Errorf("%d verifications recorded by the killed replica", c)
	}
	time.Sleep(interval)

	// From the history: no state version advanced twice, and no two
	// verifications of one agent overlapped.
	if c := count(`SELECT COUNT(*) FROM (SELECT agent, from_version FROM S.history WHERE to_version > from_version
		GROUP BY agent, from_version HAVING COUNT(*) > 1) x`); c != 0 {
		t.Errorf("%d state versions advanced more than once", c)
	}
	if c := count(`SELECT COUNT(*) FROM S.history h JOIN S.history k ON h.agent = k.agent AND h.id < k.id
		AND k.started < h.at AND h.started < k.at`); c != 0 {
		t.Errorf("%d pairs of overlapping verifications of one agent", c)
	}
	// Every agent's versions form one chain: its latest version is the
	// number of rows that advanced it.
	if c := count(`SELECT COUNT(*) FROM S.agents a WHERE a.state_version <>
		(SELECT COUNT(*) FROM S.history h WHERE h.agent = a.name AND h.to_version > h.from_version)`); c != 0 {
		t.Errorf("%d agents whose state version is not their number of advances", c)
	}
	var total, compliant int
	q(`SELECT COUNT(*), SUM(CASE WHEN status = 'compliant' THEN 1 ELSE 0 END) FROM S.history`).Scan(&total, &compliant)
	t.Logf("%d verifications in the history, %d compliant", total, compliant)
	// A verification that ran out of time on a loaded machine is a
	// verdict too (unreachable); the fleet settles compliant.
	waitFor(t, 5*interval, "every agent compliant", func() bool {
		return count(`SELECT COUNT(*) FROM S.agents WHERE status <> 'compliant'`) == 0
	})
}
