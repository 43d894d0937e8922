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

// probeMaxAge is how long a readiness probe's answer is reused.
const probeMaxAge = time.Second

// Ready reports whether the agent can measure and quote now: the event log
// is writable and the TPM answered a command (TPM2_ReadClock) within the
// last probeMaxAge. A TPM that does not answer before ctx is done is not
// ready. One TPM probe runs at a time and its answer serves every caller
// for probeMaxAge, so probes cost the TPM at most one command a second.
func (a *Agent) Ready(ctx context.Context) error {
	if err := a.Writable(); err != nil {
		return err
	}
	if _, err := a.probe.get(ctx, probeMaxAge, func() (struct{}, error) {
		_, err := a.clock()
		return struct{}{}, err
	}); err != nil {
		return fmt.Errorf("agent/ready: %w: tpm: %w", ErrUnavailable, err)
	}
	return nil
}

// Alive reports whether the agent is not wedged: its pipeline lock (held by
// each load and observer pass) is free, or passes from one holder to the
// next, before ctx is done. A pipeline busy with one load after another is
// alive; one held by the same holder past the deadline is not. It does not
// touch the TPM or the log; a broken log or a missing TPM is Ready's
// business, and the daemon exits on its own when the log breaks.
func (a *Agent) Alive(ctx context.Context) error {
	const poll = 10 * time.Millisecond
	free, first := a.pipe.progress()
	for !free {
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent/alive: the pipeline lock is held by one holder past the deadline: %w", context.Cause(ctx))
		case <-time.After(poll):
		}
		var grants uint64
		free, grants = a.pipe.progress()
		free = free || grants != first
	}
	return nil
}

// cached is a value read by a slow call (a TPM command) shared by its
// callers: one read runs at a time, callers that arrive while it runs
// wait for its answer (or give up at their deadline, leaving it to
// finish), and an answer younger than the caller's maxAge is reused
// without a read. A failed read is not reused.
type cached[T any] struct {
	mu       sync.Mutex
	inflight chan struct{} // guarded by mu; closed when the running read ends
	val      T             // guarded by mu; the last read's answer
	err      error         // guarded by mu
	at       time.Time     // guarded by mu; when the last good answer was read
}

func (c *cached[T]) get(ctx context.Context, maxAge time.Duration, read func() (T, error)) (T, error) {
	c.mu.Lock()
	if c.inflight == nil && c.err == nil && !c.at.IsZero() && time.Since(c.at) < maxAge {
		v := c.val
		c.mu.Unlock()
		return v, nil
	}
	ch := c.inflight
	if ch == nil {
		ch = make(chan struct{})
		c.inflight = ch
		go func() {
			v, err := read()
			c.mu.Lock()
			c.val, c.err, c.inflight = v, err, nil
			if err == nil {
				c.at = time.Now()
			}
			c.mu.Unlock()
			close(ch)
		}()
	}
	c.mu.Unlock()
	select {
	case <-ch:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.val, c.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("no answer: %w", context.Cause(ctx))
	}
}
