package bench

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/bpfattest/bpfattest/bench/fleetsim"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

var (
	fleetSim      = flag.Int("fleet-sim", 0, "TestFleetScale: simulated hosts (the load generator); 0 skips the test")
	fleetReal     = flag.Int("fleet-real", 50, "TestFleetScale: real bpfattestd agents beside them")
	fleetInterval = flag.Duration("fleet-interval", time.Minute, "TestFleetScale: the service's --interval")
	fleetRounds   = flag.Int("fleet-rounds", 3, "TestFleetScale: intervals to measure after the first")
	fleetDB       = flag.String("fleet-db", "sqlite", "TestFleetScale: sqlite or postgres (BPFATTEST_POSTGRES)")
	fleetConc     = flag.Int("fleet-concurrency", 64, "TestFleetScale: the service's --concurrency")
	fleetWarmup   = flag.Duration("fleet-warmup", 0, "TestFleetScale: time left out of the steady-state figures (0: one interval)")
)

// daemon is a process the harness started.
type daemon struct {
	cmd    *exec.Cmd
	ready  map[string]any
	mu     sync.Mutex
	logs   bytes.Buffer // guarded by mu
	exited chan struct{}
}

func startDaemon(tb testing.TB, bin string, args ...string) *daemon {
	tb.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	ready := make(chan map[string]any, 1)
	go func() {
		defer close(d.exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		sent := false
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["level"] != "INFO" || !sent {
				d.mu.Lock()
				if d.logs.Len() < 1<<20 {
					d.logs.Write(append(sc.Bytes(), '\n'))
				}
				d.mu.Unlock()
			}
			if !sent && rec["msg"] == "serving" {
				ready <- rec
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
		d.cmd.Wait()
		if !sent {
			close(ready)
		}
	}()
	select {
	case r, ok := <-ready:
		if !ok {
			d.mu.Lock()
			defer d.mu.Unlock()
			tb.Fatalf("%s exited before serving\n%s", bin, d.logs.String())
		}
		d.ready = r
	case <-time.After(2 * time.Minute):
		d.cmd.Process.Kill()
		tb.Fatalf("%s did not serve", bin)
	}
	tb.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// procStat reads a process's CPU time (user + system) and resident sizes.
func procStat(pid int) (cpu time.Duration, rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * time.Second / 100 // USER_HZ
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(s), "\n") {
		k, v, _ := strings.Cut(l, ":")
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return cpu, rss, hwm, nil
}

// postgresCPU sums the CPU time of the running PostgreSQL server
// processes (every process named postgres): the server's share of a
// PostgreSQL run.
func postgresCPU() time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(b)) != "postgres" {
			continue
		}
		if cpu, _, _, err := procStat(pid); err == nil {
			total += cpu
		}
	}
	return total
}

// metrics reads the service's metrics: each sample by its full name with
// labels.
func metrics(tb testing.TB, url string) map[string]float64 {
	rsp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer rsp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(rsp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[l[:i]] = v
		}
	}
	return out
}

// TestFleetScale measures one bpfattest-verifierd node keeping a fleet
// verified: -fleet-sim hosts of the load generator (bench/fleetsim) and
// -fleet-real real bpfattestd agents, every -fleet-interval, on the
// embedded SQLite store or PostgreSQL. It reports the queue lag (how late
// the most overdue agent is), verifications per second, and the service
// process's CPU and resident memory, and fails when the lag reaches one
// interval or a host is not compliant. Not part of the test run: it
// needs -fleet-sim.
//
//	go test ./bench -run TestFleetScale -fleet-sim 10000 -fleet-real 50 -timeout 30m -v
func TestFleetScale(t *testing.T) {
	if *fleetSim == 0 {
		t.Skip("a benchmark harness: give -fleet-sim N")
	}
	testutil.RequireRoot(t)
	root := testutil.RepoRoot(t)
	goTool := testutil.RequireTool(t, "go")
	dir := t.TempDir()
	build := func(pkg string) string {
		bin := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command(goTool, "build", "-o", bin, pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin
	}
	svcBin, agentBin := build("./cmd/bpfattest-verifierd"), build("./cmd/bpfattestd")

	sim, err := fleetsim.New(*fleetSim)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sim.Serve(ctx, ln)
	simCA := filepath.Join(dir, "sim-ca.pem")
	if err := os.WriteFile(simCA, sim.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}

	var specs []map[string]string
	for i := range *fleetSim {
		specs = append(specs, map[string]string{"name": fmt.Sprintf("sim%05d", i), "address": ln.Addr().String(), "server_name": fleetsim.Name(i)})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	sem := make(chan struct{}, runtime.NumCPU())
	for i := range *fleetReal {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			d := filepath.Join(dir, fmt.Sprintf("agent%d", i))
			a := startDaemon(t, agentBin, "--tpm", "sim", "--state-dir", filepath.Join(d, "state"), "--local-socket", filepath.Join(d, "sock"),
				"--log-format", "json", "--observer-interval", "-1s", "--listen", "127.0.0.1:0", "--insecure-loopback")
			mu.Lock()
			specs = append(specs, map[string]string{"name": fmt.Sprintf("real%02d", i), "address": a.ready["listen"].(string)})
			mu.Unlock()
		})
	}
	wg.Wait()

	args := []string{"--listen", "127.0.0.1:0", "--insecure-loopback", "--loopback-role", "admin", "--metrics", "127.0.0.1:0",
		"--agent-ca", simCA, "--agent-insecure-loopback", "--tofu", "--interval", fleetInterval.String(),
		"--concurrency", strconv.Itoa(*fleetConc), "--log-format", "json",
		"--policy", writeTemp(t, dir, "policy.yaml", "version: 1\nallow_simulator: true\nrequire_signed: true\n")}
	switch *fleetDB {
	case "sqlite":
		args = append(args, "--state-dir", filepath.Join(dir, "fleet"))
	case "postgres":
		dsn := testutil.Postgres(t)
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
		if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
			t.Fatal(err)
		}
		defer db.Exec("DROP SCHEMA " + schema + " CASCADE")
		args = append(args, "--db", dsn+" search_path="+schema)
	default:
		t.Fatalf("-fleet-db %q", *fleetDB)
	}
	svc := startDaemon(t, svcBin, args...)
	api := "http://" + svc.ready["listen"].(string)
	metricsURL := "http://" + svc.ready["metrics"].(string) + "/metrics"
	pid := svc.cmd.Process.Pid

	regStart := time.Now()
	for i := 0; i < len(specs); i += 1000 {
		body, _ := json.Marshal(map[string]any{"agents": specs[i:min(i+1000, len(specs))]})
		rsp, err := http.Post(api+"/api/v1/agents", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rsp.Body)
		rsp.Body.Close()
		if rsp.StatusCode != http.StatusOK {
			t.Fatalf("register: %s %s", rsp.Status, b)
		}
	}
	total := len(specs)
	regTook := time.Since(regStart)
	regStart = time.Now()
	t.Logf("registered %d agents (%d simulated, %d real) in %v; store %s; interval %v", total, *fleetSim, *fleetReal,
		regTook.Round(time.Millisecond), *fleetDB, *fleetInterval)

	// The first interval spreads the first verifications (and their
	// handshakes); the next -fleet-rounds intervals are the steady state.
	interval := *fleetInterval
	sample := 5 * time.Second
	var (
		maxLag, steadyMaxLag float64
		cpu0, cpu1           time.Duration
		t0, t1               time.Time
		v0, v1               float64
		maxRSS, hwm          int64
		simCPU0, simCPU1     time.Duration
		dbCPU0, dbCPU1       time.Duration
	)
	verifs := func(m map[string]float64) float64 {
		var n float64
		for k, v := range m {
			if strings.HasPrefix(k, "bpfattest_fleet_verifications_total") {
				n += v
			}
		}
		return n
	}
	warmup := *fleetWarmup
	if warmup <= 0 {
		warmup = interval
	}
	end := regStart.Add(warmup + time.Duration(*fleetRounds)*interval)
	for now := time.Now(); now.Before(end); now = time.Now() {
		time.Sleep(sample)
		m := metrics(t, metricsURL)
		lag := m["bpfattest_fleet_queue_lag_seconds"]
		cpu, rss, h, err := procStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		simCPU, _, _, _ := procStat(os.Getpid())
		dbCPU := postgresCPU()
		maxLag = max(maxLag, lag)
		maxRSS, hwm = max(maxRSS, rss), h
		if time.Since(regStart) >= warmup {
			if t0.IsZero() {
				t0, cpu0, v0, simCPU0, dbCPU0 = time.Now(), cpu, verifs(m), simCPU, dbCPU
			}
			t1, cpu1, v1, simCPU1, dbCPU1 = time.Now(), cpu, verifs(m), simCPU, dbCPU
			steadyMaxLag = max(steadyMaxLag, lag)
		}
		t.Logf("t=%4.0fs lag %.2fs due %.0f verifications %.0f cpu %v rss %d MiB conns %.0f dials %.0f",
			time.Since(regStart).Seconds(), lag, m["bpfattest_fleet_agents_due"], verifs(m), cpu.Round(time.Second), rss>>20,
			m["bpfattest_fleet_agent_connections"], m["bpfattest_fleet_agent_dials"])
	}
	wall := t1.Sub(t0).Seconds()
	m := metrics(t, metricsURL)
	t.Logf("RESULT agents=%d (sim %d, real %d) store=%s interval=%v: max queue lag %.2fs (steady %.2fs); %.1f verifications/s (need %.1f);"+
		" service CPU %.1f%% of one core; RSS max %d MiB, peak %d MiB; PostgreSQL server CPU %.1f%%; load generator CPU %.1f%%; TLS handshakes %d for %d quotes;"+
		" leases lost %.0f; store errors %.0f; compliant %.0f",
		total, *fleetSim, *fleetReal, *fleetDB, interval, maxLag, steadyMaxLag, (v1-v0)/wall, float64(total)/interval.Seconds(),
		100*(cpu1-cpu0).Seconds()/wall, maxRSS>>20, hwm>>20, 100*(dbCPU1-dbCPU0).Seconds()/wall, 100*(simCPU1-simCPU0).Seconds()/wall, sim.Handshakes.Load(), sim.Quotes.Load(),
		m["bpfattest_fleet_leases_lost_total"], m["bpfattest_fleet_store_errors_total"], m[`bpfattest_fleet_agents{status="compliant"}`])
	if steadyMaxLag >= interval.Seconds() {
		t.Errorf("queue lag reached %.1fs, not under one interval (%v)", steadyMaxLag, interval)
	}
	if c := m[`bpfattest_fleet_agents{status="compliant"}`]; int(c) != total {
		t.Errorf("%.0f of %d agents compliant", c, total)
	}
}

func writeTemp(tb testing.TB, dir, name, body string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
