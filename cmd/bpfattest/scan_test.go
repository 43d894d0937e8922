package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/verifier"
)

var scanFleet = flag.Int("scan-fleet", 0, "TestScanFleet: scan this many real agents (e.g. 100) and report time and memory")

// fleet starts n agents: every fifth (i%5 == 1) loads an unsigned
// artifact and is non-compliant under signedPolicy; the others load the
// signed counter fixture.
func fleet(tb testing.TB, n int) (agents []*agentProc, bad map[int]bool) {
	cert := testutil.LskelFile(tb, "keys/TEST_ONLY_signing_cert.pem")
	bad = map[int]bool{}
	for i := range n {
		bad[i] = i%5 == 1
	}
	agents = spawnAgents(tb, n, func(i int) []string {
		if bad[i] {
			return []string{"--trust", cert, "--allow-unsigned"}
		}
		return []string{"--trust", cert}
	})
	for i, a := range agents {
		if bad[i] {
			loadInto(tb, a, "headers/counter.lskel.h", exitOK)
		} else {
			loadInto(tb, a, "headers/counter.signed.lskel.h", exitOK)
		}
	}
	return agents, bad
}

func closedPort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestScanCLI scans ten real agents and an address nobody serves: every
// host gets its own verdict (compliant, non-compliant with the violated
// rule, unreachable), the worst wins the exit code, the state files are
// written and the next scan continues from them; the line and YAML
// inventories, and the table, JSON and CSV reports, say the same.
func TestScanCLI(t *testing.T) {
	agents, bad := fleet(t, 10)
	dir := t.TempDir()
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	var lines strings.Builder
	lines.WriteString("# name address\n")
	for i, a := range agents {
		fmt.Fprintf(&lines, "host%02d %s\n", i, a.listen)
	}
	fmt.Fprintf(&lines, "gone %s   # nobody serves here\n", closedPort(t))
	inv := writeTemp(t, "hosts.txt", lines.String())
	states := filepath.Join(dir, "states")
	if err := os.Mkdir(states, 0o700); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	code := runScan(t.Context(), []string{"--inventory", inv, "--policy", policy, "--insecure-loopback", "--concurrency", "4",
		"--state-dir", states, "--tofu", "--format", "json"}, &stdout, &stderr)
	if code != exitUnverified {
		t.Fatalf("exit %d, want %d (one unreachable host)\n%s", code, exitUnverified, stderr.String())
	}
	var rep verifier.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if rep.Summary != (verifier.Summary{Hosts: 11, Compliant: 8, NonCompliant: 2, Unreachable: 1}) {
		t.Errorf("summary %+v", rep.Summary)
	}
	for i, v := range rep.Hosts[:10] {
		want := verifier.StatusCompliant
		if bad[i] {
			want = verifier.StatusNonCompliant
		}
		if v.Host != fmt.Sprintf("host%02d", i) || v.Status != want {
			t.Errorf("host %d: %s %s, want %s (%s)", i, v.Host, v.Status, want, v.Reason)
		}
		// The record number depends on how many programs other processes
		// had loaded when the agent started (each is an unmeasured record).
		if bad[i] && (len(v.Violations) != 2 || v.Violations[0].Rule != "require_signed" || v.Violations[0].Artifact != "counter_lskel") {
			t.Errorf("host %d violations %+v", i, v.Violations)
		}
	}
	if g := rep.Hosts[10]; g.Host != "gone" || g.Status != verifier.StatusUnreachable || g.Reason == "" {
		t.Errorf("unreachable host: %+v", g)
	}
	if n := strings.Count("\n"+stderr.String(), "\nscan: "); n != 11 {
		t.Errorf("%d progress lines, want 11:\n%s", n, stderr.String())
	}

	t.Run("yaml inventory, csv, incremental", func(t *testing.T) {
		var y strings.Builder
		y.WriteString("hosts:\n")
		for i, a := range agents {
			fmt.Fprintf(&y, "  - name: host%02d\n    address: %s\n", i, a.listen)
		}
		out := filepath.Join(t.TempDir(), "report.csv")
		var stdout, stderr bytes.Buffer
		code := runScan(t.Context(), []string{"--inventory", writeTemp(t, "hosts.yaml", y.String()), "--policy", policy,
			"--insecure-loopback", "--state-dir", states, "--format", "csv", "--out", out}, &stdout, &stderr)
		if code != exitNonCompliant {
			t.Fatalf("exit %d, want %d\n%s", code, exitNonCompliant, stderr.String())
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows, err := csv.NewReader(f).ReadAll()
		if err != nil || len(rows) != 11 || rows[0][2] != "status" {
			t.Fatalf("csv: %v %q", err, rows)
		}
		for i, row := range rows[1:] {
			if bad[i] != (row[2] == verifier.StatusNonCompliant) || (bad[i] && !strings.Contains(row[6], "require_signed")) {
				t.Errorf("row %d: %q", i, row)
			}
		}
		// The second scan resumed from the stored states.
		hf, err := verifier.ReadHost(filepath.Join(states, "host00.json"))
		if err != nil || hf.Pinned != verifier.PinTOFU || hf.State.NextRecord() == 0 {
			t.Fatalf("state: %v %+v", err, hf)
		}
	})

	t.Run("table", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		runScan(t.Context(), []string{"--inventory", inv, "--policy", policy, "--insecure-loopback", "--state-dir", states,
			"--tofu", "--timeout", "5s"}, &stdout, &stderr)
		out := stdout.String()
		for _, want := range []string{"compliant         8", "non-compliant     2", "unreachable       1", "total             11",
			"host01  ", "reasons:\nhost01 (non-compliant):\n  record ", "gone (unreachable):\n  identity: Unavailable",
			"scanned 11 hosts in "} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
	})
}

// TestScanUsage checks flags and inventories are refused before any host
// is contacted.
func TestScanUsage(t *testing.T) {
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	good := writeTemp(t, "hosts.txt", "a 127.0.0.1:1\n")
	for name, args := range map[string][]string{
		"no inventory":   {"--policy", policy},
		"no policy":      {"--inventory", good},
		"agent flag":     {"--inventory", good, "--policy", policy, "--agent", "127.0.0.1:1"},
		"concurrency 0":  {"--inventory", good, "--policy", policy, "--concurrency", "0"},
		"bad format":     {"--inventory", good, "--policy", policy, "--format", "xml"},
		"bad name":       {"--inventory", writeTemp(t, "h", "../x 127.0.0.1:1\n"), "--policy", policy},
		"no address":     {"--inventory", writeTemp(t, "h", "a\n"), "--policy", policy},
		"unknown field":  {"--inventory", writeTemp(t, "h", "a 127.0.0.1:1 color=red\n"), "--policy", policy},
		"twice":          {"--inventory", writeTemp(t, "h", "a 127.0.0.1:1\na 127.0.0.1:2\n"), "--policy", policy},
		"yaml unknown":   {"--inventory", writeTemp(t, "h", "hosts:\n  - name: a\n    adress: x\n"), "--policy", policy},
		"empty":          {"--inventory", writeTemp(t, "h", "# nothing\n"), "--policy", policy},
		"cert alone":     {"--inventory", good, "--policy", policy, "--cert", "c.pem"},
		"insecure+certs": {"--inventory", good, "--policy", policy, "--insecure-loopback", "--ca", "x.pem"},
	} {
		var stdout, stderr bytes.Buffer
		if code := runScan(t.Context(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%s: exit %d, want %d: %s", name, code, exitUsage, stderr.String())
		}
	}
}

// TestScanFleet is the fleet harness: with -scan-fleet=N it starts N real
// agents (each a bpfattestd process with its own simulator; every fifth
// non-compliant), scans them with the bpfattest binary at concurrency 32,
// checks every verdict, and logs wall time, hosts per second and the
// scanner's peak RSS (docs/benchmarks.md, "Fleet scan").
func TestScanFleet(t *testing.T) {
	if *scanFleet == 0 {
		t.Skip("run with -scan-fleet=100")
	}
	n := *scanFleet
	startAt := time.Now()
	agents, bad := fleet(t, n)
	t.Logf("started %d agents and loaded one artifact into each in %v", n, time.Since(startAt).Round(time.Millisecond))
	bin := filepath.Join(t.TempDir(), "bpfattest")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var lines strings.Builder
	for i, a := range agents {
		fmt.Fprintf(&lines, "host%03d %s\n", i, a.listen)
	}
	inv := writeTemp(t, "hosts.txt", lines.String())
	policy := writeTemp(t, "policy.yaml", signedPolicy)
	states := t.TempDir()
	for round := range 2 {
		cmd := exec.Command(bin, "scan", "--inventory", inv, "--policy", policy, "--insecure-loopback", "--concurrency", "32",
			"--state-dir", states, "--tofu", "--format", "json")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		wall := time.Since(start)
		if code := cmd.ProcessState.ExitCode(); code != exitNonCompliant {
			t.Fatalf("round %d: exit %d (%v), want %d\n%s", round, code, err, exitNonCompliant, stderr.String())
		}
		var rep verifier.Report
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		for i, v := range rep.Hosts {
			want := verifier.StatusCompliant
			if bad[i] {
				want = verifier.StatusNonCompliant
			}
			if v.Status != want {
				t.Errorf("round %d host %d: %s, want %s (%s)", round, i, v.Status, want, v.Reason)
			}
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		kind := "first contact (whole logs)"
		if round == 1 {
			kind = "incremental (from the stored states)"
		}
		t.Logf("round %d, %s: %d hosts (%d compliant, %d non-compliant) in %v: %.1f hosts/s; scanner peak RSS %.1f MiB, CPU user %v sys %v",
			round, kind, n, rep.Summary.Compliant, rep.Summary.NonCompliant, wall.Round(time.Millisecond), float64(n)/wall.Seconds(),
			float64(ru.Maxrss)/1024, time.Duration(ru.Utime.Nano()).Round(time.Millisecond), time.Duration(ru.Stime.Nano()).Round(time.Millisecond))
	}
}
