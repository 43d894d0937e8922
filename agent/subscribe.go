package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/agent/journal"
	"github.com/bpfattest/bpfattest/cel"
)

// feed wakes subscribers when the log grows: every append closes the current
// channel and installs a fresh one.
type feed struct {
	mu     sync.Mutex
	wake   chan struct{}
	closed bool
}

func (f *feed) init() { f.wake = make(chan struct{}) }

// wait returns a channel closed at the next append (or at close).
func (f *feed) wait() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wake
}

func (f *feed) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	close(f.wake)
	f.wake = make(chan struct{})
}

func (f *feed) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.wake)
	}
}

// appendRecord appends one record to the log (durable, then extended) and
// wakes subscribers. Any failure is ErrUnavailable: nothing that depends on
// the record may happen.
func (a *Agent) appendRecord(ctx context.Context, t cel.ContentType, content []byte) (cel.Event, error) {
	start := time.Now()
	p, err := a.jr.Enqueue(t, content)
	if err != nil {
		return cel.Event{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return a.waitRecord(ctx, p, start)
}

// waitRecord waits for a record queued at start (appendRecord, or a load
// that queued its measurement in its turn) to be durable and extended.
func (a *Agent) waitRecord(ctx context.Context, p *journal.Pending, start time.Time) (cel.Event, error) {
	rec, err := p.Wait(ctx)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && a.jr.Err() == nil {
			// The caller gave up before anything was written: the log
			// is still usable, and the caller's stop is no failure.
			return cel.Event{}, fmt.Errorf("append: %w", ctxErr)
		}
		a.metrics.appendFailures.Add(1)
		a.markBroken(err)
		return cel.Event{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	a.metrics.extend.observe(time.Since(start))
	// Concurrent appends return in any order: the count (of events, the
	// next record number, at a record boundary: a batch record's end) only
	// grows.
	end := p.End()
	for n := a.metrics.records.Load(); n < end && !a.metrics.records.CompareAndSwap(n, end); n = a.metrics.records.Load() {
	}
	a.feed.notify()
	return rec, nil
}

// Records returns the current boot's records from the one holding event
// (record number) from to the end: a batch record holding from is returned
// whole. A from past the end is ErrInvalid; from equal to the number of
// events gives none.
func (a *Agent) Records(from uint64) ([]cel.Record, error) {
	if err := a.readable(from); err != nil {
		return nil, err
	}
	return a.jr.Records(from), nil
}

// readable refuses a read of the log from record number from on when the
// agent is closed (ErrClosed) or from is past the end (ErrInvalid).
func (a *Agent) readable(from uint64) error {
	if err := a.usable(); err != nil {
		return err
	}
	if n := a.jr.Len(); from > n {
		return fmt.Errorf("agent/records: %w: from %d past the end (%d records)", ErrInvalid, from, n)
	}
	return nil
}

// Walk calls fn with each record of the current boot's log from record
// number from on, in order, reading the log a chunk at a time: memory stays
// in proportion to a chunk (journal.WalkChunk, 64 KiB) however long the
// log, so a remote reader asking for the whole log costs the agent no more
// than one asking for its tail. It stops at fn's first error and returns it. Errors:
// ErrInvalid (from past the end), ErrUnavailable (the log could not be
// read back), ErrClosed.
func (a *Agent) Walk(from uint64, fn func(rec *cel.Record) error) error {
	if err := a.readable(from); err != nil {
		return err
	}
	var fnErr error
	err := a.jr.Walk(from, func(rec *cel.Record) error {
		fnErr = fn(rec)
		return fnErr
	})
	if err != nil && err != fnErr {
		return fmt.Errorf("agent/records: %w: %w", ErrUnavailable, err)
	}
	return err
}

// LogBytesFrom returns how many bytes the current boot's records from
// record number from on take (0 from the end on): what a quote from there
// carries.
func (a *Agent) LogBytesFrom(from uint64) int64 { return a.jr.SizeFrom(from) }

// errStopWalk ends a Walk whose reader went away.
var errStopWalk = errors.New("walk stopped")

// Subscribe streams the current boot's records from the one holding event
// (record number) from on, so a stream starting inside a batch starts at
// the batch record: first those already in the log, then each new one as it is appended. The
// channel is closed when ctx is done, the agent closes or the log cannot be
// read back. A subscriber that does not read holds back only its own
// stream, and the records are read a chunk at a time, as Walk does.
func (a *Agent) Subscribe(ctx context.Context, from uint64) (<-chan cel.Record, error) {
	if err := a.readable(from); err != nil {
		return nil, err
	}
	out := make(chan cel.Record, 16)
	err := a.spawn(func() {
		defer close(out)
		next := from
		send := func(r *cel.Record) error {
			rn, err := r.NextRecNum()
			if err != nil {
				return err
			}
			select {
			case out <- *r:
				next = rn
				return nil
			case <-ctx.Done():
				return errStopWalk
			case <-a.done:
				return errStopWalk
			}
		}
		for {
			wake := a.feed.wait() // before reading, so no append is missed
			if err := a.jr.Walk(next, send); err != nil {
				if !errors.Is(err, errStopWalk) {
					a.log.Warn("events: cannot read the log back; ending the stream", "err", err)
				}
				return
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			case <-a.done:
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// usable reports ErrClosed after Close.
func (a *Agent) usable() error {
	select {
	case <-a.done:
		return ErrClosed
	default:
		return nil
	}
}

// markBroken tells Run, once, that the log can no longer be appended to, so
// the daemon exits for its supervisor to restart it (a restart reconciles
// the log against the PCR) instead of refusing every request while up.
func (a *Agent) markBroken(err error) {
	if !errors.Is(err, journal.ErrBroken) && a.jr.Err() == nil {
		return // e.g. a cancelled context: the log is still usable
	}
	a.brokenOnce.Do(func() { close(a.broken) })
}
