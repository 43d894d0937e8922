package agent_test

import (
	"errors"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/lskel"
	"github.com/bpfattest/bpfattest/measure"
)

// faultLoads loads src n times and checks that each attempt returns the
// kernel's errno, adds exactly a measurement and a result naming step and
// errno with no loader or program created, and is not retried: the load step is entered once per attempt.
func faultLoads(t *testing.T, a *agent.Agent, src []byte, n int, progLoads *atomic.Int64, errno syscall.Errno) {
	t.Helper()
	for i := range n {
		recs, err := a.Records(0)
		if err != nil {
			t.Fatal(err)
		}
		enter := progLoads.Load()
		resp, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src})
		if !errors.Is(err, errno) || !errors.Is(err, agent.ErrKernel) || resp == nil {
			t.Fatalf("attempt %d: %v, want ErrKernel wrapping %v with a response", i, err, errno)
		}
		if got := progLoads.Load() - enter; got != 1 {
			t.Fatalf("attempt %d: the load step was entered %d times, want 1", i, got)
		}
		if next := nextAfter(t, recs, 0); resp.MeasurementRecord != next || resp.ResultRecord != resp.MeasurementRecord+1 {
			t.Fatalf("attempt %d: records %d and %d, want %d and %d", i, resp.MeasurementRecord, resp.ResultRecord, next, next+1)
		}
		res := resultOf(t, a, resp.ResultRecord)
		if res.Outcome != measure.OutcomeKernelError || res.Step != bpfsys.ProgLoad.String() || syscall.Errno(res.Errno) != errno {
			t.Fatalf("attempt %d: result %v step %q errno %d, want kernel-error prog-load %d", i, res.Outcome, res.Step, res.Errno, errno)
		}
		if res.Loader != nil || len(res.Programs) != 0 {
			t.Fatalf("attempt %d: a failed load reports loader %+v, programs %+v", i, res.Loader, res.Programs)
		}
	}
}

// checkAfterStorm checks that the agent still loads src and that a quote
// covers a log that replays, with n failed attempts in it.
func checkAfterStorm(t *testing.T, a *agent.Agent, src []byte, failed int) {
	t.Helper()
	if _, err := a.Load(t.Context(), agent.LoadRequest{Artifact: src}); err != nil {
		t.Fatalf("load after the storm: %v", err)
	}
	ev, err := a.Quote(t.Context(), nonce(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	slice, _ := checkEvidence(t, a, ev)
	if got := len(ofType(slice, cel.BPFLoadResult)); got != failed+1 {
		t.Errorf("%d results in the log, want %d", got, failed+1)
	}
}

// TestFaultKernelStorm: the kernel answers every BPF_PROG_LOAD with EAGAIN
// (or EPERM) for a stretch of 50 loads. Each load returns the errno at once,
// is recorded with it, and is never retried by the agent; when the storm
// ends the agent loads again without a restart and the log replays.
func TestFaultKernelStorm(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EAGAIN, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			cfg := config(t)
			var storm atomic.Bool
			var progLoads atomic.Int64
			storm.Store(true)
			agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
				if s != bpfsys.ProgLoad {
					return nil
				}
				progLoads.Add(1)
				if storm.Load() {
					return errno
				}
				return nil
			})
			a := newAgent(t, cfg)
			src := header(t, "counter", true)
			const n = 50
			faultLoads(t, a, src, n, &progLoads, errno)
			storm.Store(false)
			checkAfterStorm(t, a, src, n)
		})
	}
}

// TestFaultVerifierRejects: the real verifier rejects a loader (an infinite
// loop: EINVAL; a read through an uninitialised register: EACCES). Each of
// 20 attempts is measured, recorded with the errno, and not retried; good
// loads still work afterwards.
func TestFaultVerifierRejects(t *testing.T) {
	for _, c := range []struct {
		name  string
		patch func(insns []byte)
		errno syscall.Errno
	}{
		{"infinite-loop", func(ins []byte) { copy(ins[len(ins)-8:], []byte{0x05, 0, 0xff, 0xff, 0, 0, 0, 0}) }, syscall.EINVAL},
		{"uninit-register", func(ins []byte) { copy(ins[:8], []byte{0x79, 0x90, 0, 0, 0, 0, 0, 0}) }, syscall.EACCES},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(t)
			cfg.AllowUnsigned = true // the unsigned fixture: no excl_prog_hash, so the verifier runs
			var progLoads atomic.Int64
			agent.SetStepHook(&cfg, func(s bpfsys.Step) error {
				if s == bpfsys.ProgLoad {
					progLoads.Add(1)
				}
				return nil
			})
			a := newAgent(t, cfg)
			art, err := lskel.Load(header(t, "counter", false))
			if err != nil {
				t.Fatal(err)
			}
			art.Insns = append([]byte(nil), art.Insns...)
			c.patch(art.Insns)
			bad, err := art.MarshalBundle()
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			faultLoads(t, a, bad, n, &progLoads, c.errno)
			checkAfterStorm(t, a, header(t, "counter", false), n)
		})
	}
}
