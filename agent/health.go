package agent

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Health checks, for a supervisor (systemd's watchdog, a kubelet's probes)
// and the metrics endpoint. None of them writes anything.

// Writable reports whether the event log still takes appends: nil, or an
// error wrapping ErrUnavailable once the journal has refused one (the agent
// can no longer measure anything, and Run returns so that a restart
// reconciles the log) or ErrClosed after Close.
func (a *Agent) Writable() error {
	select {
	case <-a.broken:
		return fmt.Errorf("agent/writable: %w: the event log refuses appends: %w", ErrUnavailable, a.jr.Err())
	case <-a.done:
		return fmt.Errorf("agent/writable: %w", ErrClosed)
	default:
		return nil
	}
}

// Ready reports whether the agent can measure and quote now: the event log
// is writable and the TPM answers a command (TPM2_ReadClock). A TPM that does
// not answer before ctx is done is not ready. One TPM probe runs at a time;
// concurrent callers share its answer.
func (a *Agent) Ready(ctx context.Context) error {
	if err := a.Writable(); err != nil {
		return err
	}
	if err := a.probe.run(ctx, func() error {
		_, err := a.dev.ClockInfo()
		return err
	}); err != nil {
		return fmt.Errorf("agent/ready: %w: tpm: %w", ErrUnavailable, err)
	}
	return nil
}

// Alive reports whether the agent is not wedged: its pipeline lock (held by
// each load and observer sweep) can be taken before ctx is done. It does not
// touch the TPM or the log; a broken log or a missing TPM is Ready's
// business, and the daemon exits on its own when the log breaks.
func (a *Agent) Alive(ctx context.Context) error {
	const poll = 10 * time.Millisecond
	for {
		if a.mu.TryLock() {
			a.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent/alive: the pipeline lock is held past the deadline: %w", context.Cause(ctx))
		case <-time.After(poll):
		}
	}
}

// probe runs at most one check at a time; callers that arrive while it
// runs wait for its answer (or give up at their deadline, leaving it to
// finish).
type probe struct {
	mu       sync.Mutex
	inflight chan struct{} // guarded by mu; closed when the running check ends
	err      error         // guarded by mu; the last finished check's answer
}

func (p *probe) run(ctx context.Context, check func() error) error {
	p.mu.Lock()
	ch := p.inflight
	if ch == nil {
		ch = make(chan struct{})
		p.inflight = ch
		go func() {
			err := check()
			p.mu.Lock()
			p.err, p.inflight = err, nil
			p.mu.Unlock()
			close(ch)
		}()
	}
	p.mu.Unlock()
	select {
	case <-ch:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("no answer: %w", context.Cause(ctx))
	}
}
