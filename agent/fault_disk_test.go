package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

// smallTmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts
// it at cleanup (registered now, so it runs after the cleanups of anything
// started on it later). It skips when the mount is refused.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testutil.SkipEnv(t, "mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full and returns it.
func fill(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	chunk := make([]byte, 512)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return f
		}
	}
}

// TestFaultDiskFull: with the state directory's file system full, a load
// fails closed with ErrUnavailable wrapping ENOSPC: before any bpf() call
// when the measurement cannot be written, with the kernel's objects closed
// when only the result cannot. A partial write is cut, so the log on disk
// ends with a complete record and replays to the PCR. A quote either covers
// the log or fails closed when the kernel sweep before it has findings it
// cannot record. Once space is freed, loads succeed again without a
// restart, and the next record follows the last durable one.
func TestFaultDiskFull(t *testing.T) {
	requireKernel(t)
	cfg := config(t)
	cfg.StateDir = smallTmpfs(t, "256k")
	steps := 0
	agent.SetStepHook(&cfg, func(bpfsys.Step) error { steps++; return nil })
	a := newAgent(t, cfg)
	src := header(t, "counter", true)
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src}); err != nil {
		t.Fatalf("load with space: %v", err)
	}
	before, err := a.Records(0)
	if err != nil {
		t.Fatal(err)
	}
	filler := fill(t, cfg.StateDir)

	// The log file's last page may still have room for a record or two:
	// load until the write fails, then twice more.
	failures := 0
	for i := 0; failures < 3; i++ {
		if i == 20 {
			t.Fatal("20 loads succeeded on a full file system")
		}
		stepsBefore := steps
		resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
		if err == nil {
			before, err = a.Records(0)
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		failures++
		if !errors.Is(err, agent.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) || resp != nil {
			t.Fatalf("load %d with the disk full: %v (resp %v), want ErrUnavailable wrapping ENOSPC", i, err, resp)
		}
		recs, err := a.Records(0)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case steps == stepsBefore && len(recs) == len(before):
			// The measurement could not be written: no bpf() call.
		case steps != stepsBefore && len(recs) == len(before)+1 && recs[len(before)].Type == cel.BPFMeasurement:
			// The measurement fit, the result did not: the kernel's
			// objects were closed, and the log shows an attempt
			// without a result, which the next start settles.
			before = recs
		default:
			t.Fatalf("load %d: %d bpf() steps, log grew from %d to %d records", i, steps-stepsBefore, len(before), len(recs))
		}
	}
	lg, err := readLog(a.Status().LogPath)
	if err != nil {
		t.Fatalf("log on disk after failed writes: %v", err)
	}
	if len(lg.Records) != len(before) {
		t.Errorf("log on disk has %d records, want %d (nothing of the failed loads)", len(lg.Records), len(before))
	}
	// A quote first sweeps the kernel: with other programs appearing (any
	// other process loading BPF), the sweep's findings cannot be recorded
	// either, and the quote fails closed; with none, it covers the log.
	if ev, err := a.Quote(t.Context(), nonce(1), 0); err == nil {
		checkEvidence(t, a, ev)
	} else if !errors.Is(err, agent.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("quote with the disk full: %v, want success or ErrUnavailable wrapping ENOSPC", err)
	}

	if err := filler.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if before, err = a.Records(0); err != nil {
		t.Fatal(err)
	}
	resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
	if err != nil {
		t.Fatalf("load after freeing space: %v", err)
	}
	if resp.MeasurementRecord != uint64(len(before)) {
		t.Errorf("measurement at record %d, want %d: a failed write left a record behind", resp.MeasurementRecord, len(before))
	}
	ev, err := a.Quote(t.Context(), nonce(2), 0)
	if err != nil {
		t.Fatal(err)
	}
	slice, _ := checkEvidence(t, a, ev)
	if n := len(ofType(slice, cel.BPFMeasurement)); n != len(ofType(before, cel.BPFMeasurement))+1 {
		t.Errorf("%d measurements in the log, want %d", n, len(ofType(before, cel.BPFMeasurement))+1)
	}
}
