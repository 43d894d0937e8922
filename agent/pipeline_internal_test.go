package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// waiters is the number of callers queued for p.
func waiters(p *pipeline) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, q := range p.queues {
		n += len(q)
	}
	return n
}

// waitPipeQueued waits until p has n callers queued.
func waitPipeQueued(t *testing.T, p *pipeline, n int) {
	t.Helper()
	for waiters(p) != n {
		select {
		case <-t.Context().Done():
			t.Fatalf("%d waiters, want %d", waiters(p), n)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestPipelineTurns: five callers of owner a queue, then one of b and one
// of c; the grants go a, b, c, a, a, a, a (b and c each wait behind one
// of a's, not all five), first come first served within a.
func TestPipelineTurns(t *testing.T) {
	var p pipeline
	p.lockAlways(ownerAgent)
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	queue := func(owner, label string, n int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.lock(t.Context(), owner); err != nil {
				t.Errorf("%s: %v", label, err)
				return
			}
			mu.Lock()
			order = append(order, label)
			mu.Unlock()
			p.unlock()
		}()
		waitPipeQueued(t, &p, n)
	}
	for i := range 5 {
		queue("a", "a"+string(rune('0'+i)), i+1)
	}
	queue("b", "b0", 6)
	queue("c", "c0", 7)
	p.unlock()
	wg.Wait()
	want := []string{"a0", "b0", "c0", "a1", "a2", "a3", "a4"}
	if !slices.Equal(order, want) {
		t.Errorf("grants %v, want %v", order, want)
	}
	if free, grants := p.progress(); !free || grants != 8 {
		t.Errorf("after all: free %v, %d grants; want free after 8", free, grants)
	}
}

// TestPipelineCancel: a caller whose context ends while it waits leaves
// the queue without holding the lock, and the others' turns are kept.
func TestPipelineCancel(t *testing.T) {
	var p pipeline
	p.lockAlways(ownerAgent)
	ctx, cancel := context.WithCancelCause(t.Context())
	gone := errors.New("the client went away")
	errc := make(chan error, 1)
	go func() { errc <- p.lock(ctx, "a") }()
	waitPipeQueued(t, &p, 1)
	granted := make(chan struct{})
	go func() {
		if err := p.lock(t.Context(), "b"); err != nil {
			t.Error(err)
		}
		close(granted)
	}()
	waitPipeQueued(t, &p, 2)
	cancel(gone)
	if err := <-errc; !errors.Is(err, gone) {
		t.Fatalf("a canceled wait: %v, want %v", err, gone)
	}
	if n := waiters(&p); n != 1 {
		t.Fatalf("%d waiters after the cancel, want 1", n)
	}
	p.unlock()
	<-granted
	if free, _ := p.progress(); free {
		t.Error("b was granted the lock, yet it is free")
	}
	p.unlock()
	if free, _ := p.progress(); !free {
		t.Error("not free after the last unlock")
	}
	if err := p.lock(ctx, "a"); err != nil {
		t.Errorf("a free lock with an ended context: %v (a free lock is taken at once)", err)
	}
	p.unlock()
}

// TestPipelineGrantedAsCanceled: a grant that races the end of its
// caller's context is passed on, never kept by a caller that returned an
// error.
func TestPipelineGrantedAsCanceled(t *testing.T) {
	for range 200 {
		var p pipeline
		p.lockAlways(ownerAgent)
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- p.lock(ctx, "a") }()
		waitPipeQueued(t, &p, 1)
		go cancel()
		p.unlock()
		if err := <-errc; err == nil {
			p.unlock()
		}
		if free, _ := p.progress(); !free {
			t.Fatal("the lock is held after its caller gave up")
		}
	}
}

// TestAlive: a pipeline held by one holder past the deadline is wedged; a
// free one, or one always held but passed from holder to holder, is alive.
func TestAlive(t *testing.T) {
	a := &Agent{}
	if err := a.Alive(t.Context()); err != nil {
		t.Fatalf("free pipeline: %v", err)
	}
	a.pipe.lockAlways(ownerAgent)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	err := a.Alive(ctx)
	cancel()
	if err == nil {
		t.Fatal("a pipeline held by one holder past the deadline is alive")
	}

	// Busy: the holder hands over to a queued caller, which hands over to
	// the next, and so on; the lock is never free.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			next := make(chan struct{})
			go func() {
				a.pipe.lockAlways(ownerAgent)
				close(next)
			}()
			waitPipeQueued(t, &a.pipe, 1)
			time.Sleep(2 * time.Millisecond)
			a.pipe.unlock()
			<-next
			select {
			case <-stop:
				a.pipe.unlock()
				return
			default:
			}
		}
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.Alive(ctx); err != nil {
		t.Errorf("a pipeline passed from holder to holder: %v", err)
	}
	close(stop)
	<-done
}
