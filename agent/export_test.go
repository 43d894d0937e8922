package agent

import (
	"context"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/measure"
)

// Test seams. They exist only in the test binary.

// SetStepHook makes every load call h before each bpf() step; an error from
// h stops the load at that step.
func SetStepHook(c *Config, h func(bpfsys.Step) error) { c.hook = h }

// SetAllowAll bypasses the load policy, so tests can show what the kernel
// and the loader themselves do with a tampered artifact.
func SetAllowAll(c *Config) { c.allowAll = true }

// SetAfterRun makes every load call f after the kernel load and before the
// result record.
func SetAfterRun(c *Config, f func(*measure.LoadResult)) { c.afterRun = f }

// SetTakeHook makes every load call h before it takes the i-th program
// ("prog") or map ("map") the loader created; an error from h fails the
// taking there.
func SetTakeHook(c *Config, h func(kind string, i int) error) { c.takeHook = h }

// QuoteRequests is the number of quote requests that joined a batch.
func (a *Agent) QuoteRequests() uint64 { return a.metrics.quoteRequests.Load() }

// AppendUnmeasured appends an "unmeasured program" record for a program
// that does not exist, to grow the log quickly in benchmarks.
func (a *Agent) AppendUnmeasured(id uint32) error {
	kp := measure.KernelProgram{Discovery: measure.DiscoveredObserved, ID: id, Type: 1, Name: "bench"}
	content, err := kp.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = a.appendRecord(context.Background(), cel.BPFUnmeasured, content)
	return err
}

// HoldPipeline takes the pipeline lock as the agent's own work does and
// returns its release.
func (a *Agent) HoldPipeline() (release func()) {
	a.pipe.lockAlways(ownerAgent)
	return a.pipe.unlock
}

// PipelineWaiting is the number of callers waiting for the pipeline lock.
func (a *Agent) PipelineWaiting() int {
	a.pipe.mu.Lock()
	defer a.pipe.mu.Unlock()
	n := 0
	for _, q := range a.pipe.queues {
		n += len(q)
	}
	return n
}

// FillFlight takes every slot of the loads in flight, as MaxLoadsInFlight
// loads waiting for their commit would, and returns their release.
func (a *Agent) FillFlight() (release func()) {
	for range MaxLoadsInFlight {
		a.flight <- struct{}{}
	}
	return func() {
		for range MaxLoadsInFlight {
			<-a.flight
		}
	}
}
