package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/attest"
)

// TestFlagHelp: flag help renders the argument names it documents: verify's
// -ak takes a FILE (not "bpfattest enroll"), scan lists no -agent (its
// agents come from the inventory), load says what --pin is for.
func TestFlagHelp(t *testing.T) {
	_, _, errs := run(t, "verify", "-h")
	if !strings.Contains(errs, "-ak FILE") || strings.Contains(errs, "-ak bpfattest") {
		t.Errorf("verify -h:\n%s", errs)
	}
	_, _, errs = run(t, "scan", "-h")
	if strings.Contains(errs, "-agent") || !strings.Contains(errs, "-insecure-loopback") {
		t.Errorf("scan -h lists -agent, or lost the TLS flags:\n%s", errs)
	}
	_, _, errs = run(t, "load", "-h")
	if !strings.Contains(errs, "without --pin, nothing else can attach them") {
		t.Errorf("load -h does not say what happens without --pin:\n%s", errs)
	}
}

// TestLogSimulatorStateDir: `log --dir STATE` with STATE the daemon's own
// --state-dir finds an agent on the in-process simulator's log (in
// STATE/sim); a restarted simulator agent does not overwrite the previous
// run's log, which stays readable in STATE/sim.1; --verify-against-pcr
// --tpm sim is refused with the reason.
func TestLogSimulatorStateDir(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	var logs []string
	for range 2 {
		a, err := startDaemon(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		stopAgent(t, a)
		boots, err := journal.Boots(filepath.Join(state, "sim"))
		if err != nil || len(boots) != 1 {
			t.Fatalf("boots %v, %v", boots, err)
		}
		b, err := os.ReadFile(boots[0].Path)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, string(b))
		time.Sleep(10 * time.Millisecond)
	}
	code, out, errs := runLogT(t, "--dir", state)
	if code != exitOK || !strings.Contains(errs, filepath.Join(state, "sim")) || !strings.Contains(out, "boot_header") {
		t.Fatalf("log --dir STATE: exit %d\n%s%s", code, out, errs)
	}
	prev, err := journal.Boots(filepath.Join(state, "sim.1"))
	if err != nil || len(prev) != 1 {
		t.Fatalf("the previous run's log: %v, %v", prev, err)
	}
	b, err := os.ReadFile(prev[0].Path)
	if err != nil || string(b) != logs[0] {
		t.Fatalf("sim.1 does not hold the first run's log (%v)", err)
	}
	if code, _, errs := runLogT(t, "--dir", filepath.Join(state, "sim.1")); code != exitOK {
		t.Errorf("log --dir STATE/sim.1: exit %d: %s", code, errs)
	}
	code, _, errs = runLogT(t, "--dir", state, "--verify-against-pcr", "--tpm", "sim")
	if code != exitUsage || !strings.Contains(errs, "in-process simulator lives and dies inside the agent") {
		t.Errorf("--verify-against-pcr --tpm sim: exit %d: %s", code, errs)
	}
}

// TestLogJSONSeq: --format json-seq prints one RFC 7464 text per record.
func TestLogJSONSeq(t *testing.T) {
	_, _, path := logFixture(t)
	code, out, errs := runLogT(t, "--format", "json-seq", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	texts := bytes.Split([]byte(out), []byte{0x1e})
	if len(texts) != 6 || len(texts[0]) != 0 {
		t.Fatalf("%d texts:\n%q", len(texts)-1, out)
	}
	if !bytes.Contains(texts[3], []byte(`"kind":"bpf_measurement"`)) || !bytes.HasSuffix(texts[3], []byte("}\n")) {
		t.Errorf("record 2: %s", texts[3])
	}
}

// TestProgramTypeNames: policy init writes program types by name, and the
// parser takes names and numbers alike.
func TestProgramTypeNames(t *testing.T) {
	if got := attest.ProgramTypeName(17); got != "raw_tracepoint" {
		t.Errorf("type 17: %q", got)
	}
	for _, doc := range []string{"version: 1\nallowed_program_types: [raw_tracepoint]\n", "version: 1\nallowed_program_types: [\"17\"]\n"} {
		p, err := attest.ParsePolicy([]byte(doc))
		if err != nil || len(p.ProgramTypes) != 1 || p.ProgramTypes[0] != 17 {
			t.Errorf("%q: %v, %v", doc, p, err)
		}
	}
}
