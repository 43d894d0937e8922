package service

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrBudget: a peer, or all peers together, is at a limit of what the
// agent takes in at once (calls, streams, bytes) or over a request rate.
// The request was turned away before any work was done for it.
var ErrBudget = errors.New("over budget")

// pool bounds one resource (calls or streams in flight, bytes held) per
// peer and in total. A peer is named by clientKey (remote) or peerKey
// (local).
type pool struct {
	name           string // metric label
	unit           string // "calls", "streams", "bytes"
	total, perPeer int64
	// exempt, when set, names the one peer the total does not refuse
	// (root on the local socket): it is held to its own share only, so
	// other peers together cannot lock it out. What it holds still
	// counts in the total.
	exempt string

	mu     sync.Mutex
	used   int64            // guarded by mu
	byPeer map[string]int64 // guarded by mu

	refused atomic.Uint64
}

func newPool(name, unit string, total, perPeer int64) *pool {
	return &pool{name: name, unit: unit, total: total, perPeer: perPeer, byPeer: map[string]int64{}}
}

// take takes n of the resource for peer, or returns an error wrapping
// ErrBudget that says which limit it is at.
func (p *pool) take(peer string, n int64) (*grant, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.byPeer[peer]+n > p.perPeer:
		p.refused.Add(1)
		return nil, fmt.Errorf("%w: %s: %s holds %d of %d %s", ErrBudget, p.name, peer, p.byPeer[peer], p.perPeer, p.unit)
	case p.used+n > p.total && (p.exempt == "" || peer != p.exempt):
		p.refused.Add(1)
		return nil, fmt.Errorf("%w: %s: all peers hold %d of %d %s", ErrBudget, p.name, p.used, p.total, p.unit)
	}
	p.used += n
	p.byPeer[peer] += n
	return &grant{p: p, peer: peer, n: n}, nil
}

func (p *pool) put(peer string, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= n
	if p.byPeer[peer] -= n; p.byPeer[peer] <= 0 {
		delete(p.byPeer, peer)
	}
}

// inUse is what all peers hold now.
func (p *pool) inUse() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// grant is what one request holds of a pool. Its methods are safe for
// concurrent use, and release may be called more than once.
type grant struct {
	p    *pool
	peer string
	mu   sync.Mutex
	n    int64 // guarded by mu
}

// shrink gives back all but n, if it holds more.
func (g *grant) shrink(n int64) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if n < g.n {
		g.p.put(g.peer, g.n-n)
		g.n = n
	}
}

// release gives everything back.
func (g *grant) release() {
	if g != nil {
		g.shrink(0)
	}
}

// callBudget is what one RPC holds. It is given back once the RPC's stream
// has ended (gRPC cancels the stream's context then, whatever ended it)
// and its handler, if it started, has returned: a client that goes away
// does not free what its handler still holds.
type callBudget struct {
	// cancel ends the RPC's stream: its context is done, a blocked send
	// or receive returns.
	cancel context.CancelCauseFunc
	// received, when set, stops the timer that cuts a request not
	// received in time, and reports whether it stopped it.
	received func() bool

	mu     sync.Mutex
	grants []*grant // guarded by mu
	bytes  *grant   // guarded by mu; the grant whose size the handler learns (a load's request)
	refs   int      // guarded by mu; the stream, plus a running handler
}

type callBudgetKey struct{}

// budgetOf returns the budget an RPC holds, or nil.
func budgetOf(ctx context.Context) *callBudget {
	b, _ := ctx.Value(callBudgetKey{}).(*callBudget)
	return b
}

// attach puts b in a context derived from ctx that b.cancel ends, and
// gives b's grants back when that context is done and no handler runs.
func (b *callBudget) attach(ctx context.Context) context.Context {
	b.refs = 1
	ctx, b.cancel = context.WithCancelCause(context.WithValue(ctx, callBudgetKey{}, b))
	context.AfterFunc(ctx, b.exit)
	return ctx
}

// add makes b hold g too.
func (b *callBudget) add(g *grant) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == 0 {
		g.release()
		return
	}
	b.grants = append(b.grants, g)
}

// enter marks the handler running; false when the stream has already
// ended and the budget is given back (the handler must not run).
func (b *callBudget) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == 0 {
		return false
	}
	b.refs++
	return true
}

// exit ends the handler's, or the stream's, hold on the budget.
func (b *callBudget) exit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refs == 0 {
		return
	}
	if b.refs--; b.refs == 0 {
		for _, g := range b.grants {
			g.release()
		}
	}
}

// releaseAll gives back everything taken so far, for a tap that refuses.
func (b *callBudget) releaseAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, g := range b.grants {
		g.release()
	}
	b.grants = nil
}

// shrinkBytes gives back all but n of the request's byte grant.
func (b *callBudget) shrinkBytes(n int64) {
	b.mu.Lock()
	g := b.bytes
	b.mu.Unlock()
	g.shrink(n)
}
