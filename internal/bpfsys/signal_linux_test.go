package bpfsys_test

import (
	"context"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/internal/bpfsys"
)

// TestRunUnderSignals runs the counter loader while its thread receives
// SIGURG (the Go runtime's preemption signal) as fast as another thread
// can send it. The verifier of every program the loader loads gives up
// with EAGAIN when a signal is pending for the thread
// (kernel/bpf/verifier.c, do_check), and the loader returns that as its
// error: a load Go's scheduler happened to interrupt would fail. Run
// keeps the thread's signals blocked while the loader runs, so every run
// succeeds.
func TestRunUnderSignals(t *testing.T) {
	requireKernel(t)
	f := loadFixture(t, "counter", false)
	const runs = 200
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	var stop atomic.Bool
	sent := make(chan int)
	go func() {
		n := 0
		for !stop.Load() {
			if unix.Tgkill(os.Getpid(), tid, unix.SIGURG) == nil {
				n++
			}
		}
		sent <- n
	}()
	failed := 0
	for range runs {
		res, err := bpfsys.Run(context.Background(), request(f, false), nil)
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("run with SIGURG arriving: %v (step %s)", err, res.Step)
			}
			continue
		}
		closeRun(t, f, res)
	}
	stop.Store(true)
	n := <-sent
	if failed > 0 {
		t.Errorf("%d of %d runs failed while %d SIGURGs were sent to the thread", failed, runs, n)
	}
	if n < runs {
		t.Errorf("only %d signals sent during %d runs: the test did not interrupt the runs", n, runs)
	}
	t.Logf("%d runs, %d SIGURGs sent to the running thread", runs, n)
}
