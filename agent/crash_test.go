package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/testutil/progwatch"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/measure"
)

// The crash tests run this test binary as a real agent process and kill it
// with SIGKILL at a chosen point of a load; the parent then starts an agent
// on the same TPM and state directory, as a restarted daemon would.
const (
	crashEnv  = "BPFATTEST_AGENT_CRASH" // the crash point; set only in the child
	specEnv   = "BPFATTEST_AGENT_TPM"
	dirEnv    = "BPFATTEST_AGENT_STATE"
	headerEnv = "BPFATTEST_AGENT_HEADER"
)

func TestMain(m *testing.M) {
	if point := os.Getenv(crashEnv); point != "" {
		crashChild(point)
		os.Exit(3) // the kill did not happen
	}
	if n := os.Getenv(churnEnv); n != "" {
		os.Exit(churnChild(n))
	}
	os.Exit(m.Run())
}

// crashChild loads the header and kills itself at point.
func crashChild(point string) {
	die := func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	cfg := agent.Config{TPM: os.Getenv(specEnv), StateDir: os.Getenv(dirEnv), ObserverInterval: -1}
	agent.SetAllowAll(&cfg)
	switch point {
	case "before-bpf":
		agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
			if s == bpfsys.MapCreate {
				die()
			}
			return nil
		})
	case "after-run":
		agent.SetAfterRun(&cfg, func(*measure.LoadResult) { die() })
	}
	a, err := agent.New(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	src, err := os.ReadFile(os.Getenv(headerEnv))
	if err != nil {
		os.Exit(2)
	}
	a.Load(context.Background(), agent.LoadRequest{Artifact: src})
}

// TestCrashDuringLoad: an agent killed after its measurement was recorded,
// before bpf() or after the kernel load but before the result record,
// leaves a log that the next agent settles: the measurement gets an
// "aborted" result, the objects of the dead process are gone with it (no
// unmeasured record for them), and the log replays to the PCR.
func TestCrashDuringLoad(t *testing.T) {
	requireKernel(t)
	for _, point := range []string{"before-bpf", "after-run"} {
		t.Run(point, func(t *testing.T) {
			sw := tpmtest.StartSwtpm(t, tpmtest.SwtpmOptions{})
			dir := t.TempDir()
			// The kernel is shared: the child's programs are told apart
			// from other processes' by the kernel's program events.
			watch := progwatch.Start(t)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+point, specEnv+"="+sw.Spec(), dirEnv+"="+dir,
				headerEnv+"="+testutil.LskelFile(t, "headers/counter.signed.lskel.h"))
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v\n%s", err, out.String())
			}
			watch.Sync(t)
			dead := map[uint32]bool{}
			for _, id := range watch.LoadedBy(cmd.Process.Pid) {
				dead[id] = true
			}
			if point == "after-run" && len(dead) == 0 {
				t.Fatal("the child loaded nothing before it died")
			}

			// The kernel frees a dead process's programs asynchronously:
			// wait (bounded) until the child's are gone, so the check
			// below is about the agent, not about the kernel's timing.
			waitGone(t, dead)

			cfg := config(t)
			cfg.TPM, cfg.StateDir = sw.Spec(), dir
			a := newAgent(t, cfg)
			recs, err := a.Records(0)
			if err != nil {
				t.Fatal(err)
			}
			ms := ofType(recs, cel.BPFMeasurement)
			rs := ofType(recs, cel.BPFLoadResult)
			if len(ms) != 1 || len(rs) != 1 {
				t.Fatalf("%d measurements, %d results, want 1 and 1", len(ms), len(rs))
			}
			res, err := measure.ParseLoadResult(rs[0].Content)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != measure.OutcomeAborted || res.MeasurementRecord != ms[0].RecNum || rs[0].RecNum < ms[0].RecNum {
				t.Errorf("settled result %+v at record %d, measurement at %d", res, rs[0].RecNum, ms[0].RecNum)
			}
			for _, r := range ofType(recs, cel.BPFUnmeasured) {
				if kp, err := measure.ParseKernelProgram(r.Content); err == nil && dead[kp.ID] {
					t.Errorf("the dead agent's program %d (%s) was recorded as unmeasured", kp.ID, kp.Name)
				}
			}
			ev, err := a.Quote(t.Context(), nonce(1), 0)
			if err != nil {
				t.Fatal(err)
			}
			checkEvidence(t, a, ev)
		})
	}
}

// waitGone waits, at most 10 s, until none of ids is a program in the kernel.
func waitGone(t *testing.T, ids map[uint32]bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for id := range ids {
			if _, err := bpfsys.ProgramInfoByID(id); err == nil {
				left++
			}
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d programs of the dead agent are still in the kernel after 10 s", left)
		}
		time.Sleep(20 * time.Millisecond) // polling the kernel's deferred free; bounded above
	}
}
