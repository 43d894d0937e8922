package agent

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// pipeline is the agent's pipeline lock: one load, observer pass or
// registry read holds it at a time. It is granted in turns by owner, not in
// arrival order: while several owners wait, each gets it once per round
// (round robin, in the order the owners first queued; first come first
// served within one owner). A requester that keeps many loads queued (the
// refusals of a flood are measured and recorded under this lock) then
// delays another requester's load by at most one of its own, instead of
// by its whole queue. sync.Mutex guarantees no order at all, and FIFO in
// its starvation mode, which puts a host's administrator behind every
// load a group member has queued.
type pipeline struct {
	mu     sync.Mutex
	held   bool                       // guarded by mu
	grants uint64                     // guarded by mu; lock grants so far
	queues map[string][]chan struct{} // guarded by mu; waiters by owner, closed when granted
	turns  []string                   // guarded by mu; owners with waiters, next turn first
}

// Owners of the pipeline besides the requesters of loads (requesterOwner).
const (
	ownerAgent = "agent" // start, the observer's passes, status, close
	ownerQuote = "quote" // the sweep before a batch of quotes
)

// pipeWork is a kind of work that takes the pipeline, for the metrics.
type pipeWork int

const (
	pipeLoad     pipeWork = iota // a load request
	pipeQuote                    // the sweep before a batch of quotes
	pipeObserver                 // the observer's passes, start, status, close
	numPipeWork
)

var pipeWorkNames = [numPipeWork]string{"load", "quote", "observer"}

func (w pipeWork) String() string { return pipeWorkNames[w] }

// lockPipe takes the pipeline for owner and records how long work waited.
func (a *Agent) lockPipe(ctx context.Context, owner string, work pipeWork) error {
	start := time.Now()
	err := a.pipe.lock(ctx, owner)
	if err == nil {
		a.metrics.pipeWait[work].observe(time.Since(start))
	}
	return err
}

// lock takes the pipeline for owner once it is owner's turn. A caller
// whose ctx ends while it waits gets ctx's error and does not hold it.
func (p *pipeline) lock(ctx context.Context, owner string) error {
	p.mu.Lock()
	if !p.held {
		p.held = true
		p.grants++
		p.mu.Unlock()
		return nil
	}
	if p.queues == nil {
		p.queues = map[string][]chan struct{}{}
	}
	ch := make(chan struct{})
	if len(p.queues[owner]) == 0 {
		p.turns = append(p.turns, owner)
	}
	p.queues[owner] = append(p.queues[owner], ch)
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	q := p.queues[owner]
	for i, w := range q {
		if w != ch {
			continue
		}
		p.queues[owner] = append(q[:i:i], q[i+1:]...)
		if len(p.queues[owner]) == 0 {
			p.dropTurn(owner)
		}
		p.mu.Unlock()
		return context.Cause(ctx)
	}
	p.mu.Unlock()
	// Granted as ctx ended: pass the turn on.
	p.unlock()
	return context.Cause(ctx)
}

// lockAlways is lock for work that has no deadline of its own.
func (p *pipeline) lockAlways(owner string) {
	_ = p.lock(context.Background(), owner) // Background never ends
}

// unlock hands the pipeline to the owner whose turn is next, or frees it.
func (p *pipeline) unlock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		panic("agent: unlock of an unlocked pipeline")
	}
	if len(p.turns) == 0 {
		p.held = false
		return
	}
	owner := p.turns[0]
	p.turns = p.turns[1:]
	q := p.queues[owner]
	ch := q[0]
	if len(q) == 1 {
		delete(p.queues, owner)
	} else {
		p.queues[owner] = q[1:]
		p.turns = append(p.turns, owner) // its next waiter after the others
	}
	p.grants++
	close(ch)
}

// dropTurn removes owner from the turns (it has no waiters left).
func (p *pipeline) dropTurn(owner string) {
	delete(p.queues, owner)
	for i, o := range p.turns {
		if o == owner {
			p.turns = append(p.turns[:i:i], p.turns[i+1:]...)
			return
		}
	}
}

// progress reports whether the pipeline is free now, and how many grants
// it has made: a pipeline that is held is alive as long as the count moves.
func (p *pipeline) progress() (free bool, grants uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.held, p.grants
}

// requesterOwner names a load's requester as an owner of the pipeline:
// its uid (0 for root and for callers in the agent's own process).
func requesterOwner(uid uint32) string { return "uid:" + strconv.FormatUint(uint64(uid), 10) }
