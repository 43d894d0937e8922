package agent

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
)

// waitQueued returns once class c has n callers waiting.
func waitQueued(s *tpmSched, c tpmClass, n int) {
	for {
		s.mu.Lock()
		k := len(s.waiting[c])
		s.mu.Unlock()
		if k >= n {
			return
		}
		runtime.Gosched()
	}
}

// TestTPMSchedTurns: while the TPM is held, five clock reads queue, then a
// quote and an extend. The classes take turns: the extend and the quote
// run before the first clock read is done with, though they came after all
// five; the clock reads then run in the order they came.
func TestTPMSchedTurns(t *testing.T) {
	s := &tpmSched{m: newMetrics()}
	hold := make(chan struct{})
	held := make(chan struct{})
	go s.do(context.Background(), tpmLog, func() error { close(held); <-hold; return nil })
	<-held

	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	run := func(c tpmClass, name string) {
		wg.Go(func() {
			s.do(context.Background(), c, func() error {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return nil
			})
		})
	}
	for i, name := range []string{"clock0", "clock1", "clock2", "clock3", "clock4"} {
		run(tpmClock, name)
		waitQueued(s, tpmClock, i+1)
	}
	run(tpmQuote, "quote")
	waitQueued(s, tpmQuote, 1)
	run(tpmLog, "extend")
	waitQueued(s, tpmLog, 1)
	close(hold)
	wg.Wait()
	want := []string{"extend", "quote", "clock0", "clock1", "clock2", "clock3", "clock4"}
	if !slices.Equal(order, want) {
		t.Fatalf("turns %v, want %v", order, want)
	}
	if n := s.m.tpmCommands[tpmClock].Load(); n != 5 {
		t.Errorf("%d clock commands counted, want 5", n)
	}
}

// TestTPMSchedGiveUp: a caller whose context ends while it waits does not
// run and does not keep the TPM from the next one.
func TestTPMSchedGiveUp(t *testing.T) {
	s := &tpmSched{m: newMetrics()}
	hold, held := make(chan struct{}), make(chan struct{})
	go s.do(context.Background(), tpmLog, func() error { close(held); <-hold; return nil })
	<-held
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		gaveUp <- s.do(ctx, tpmEnrol, func() error { t.Error("ran after giving up"); return nil })
	}()
	waitQueued(s, tpmEnrol, 1)
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("gave up with %v, want context.Canceled", err)
	}
	ran := make(chan struct{})
	go s.do(context.Background(), tpmQuote, func() error { close(ran); return nil })
	waitQueued(s, tpmQuote, 1)
	close(hold)
	<-ran
}
