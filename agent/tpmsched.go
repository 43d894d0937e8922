package agent

import (
	"context"
	"crypto"
	"sync"
	"time"

	"github.com/bpfattest/bpfattest/internal/tpm"
)

// One TPM serves everything: the log's extends (loads and the observer),
// quotes, credential activation and clock reads. tpm.Device runs one
// command at a time; tpmSched decides whose turn is next, taking turns
// between the kinds of work that wait (round robin over the classes, in
// arrival order within one), so that a flood of one kind delays another by
// at most one command (or command sequence) of each other kind. Identity
// answers from a cache and readiness probes share one read a second, so
// neither costs a TPM command per request (identity.go, health.go).

// tpmClass is a kind of TPM work.
type tpmClass int

const (
	tpmLog   tpmClass = iota // extends and PCR reads of the log
	tpmQuote                 // quotes
	tpmEnrol                 // credential activation
	tpmClock                 // clock reads: Identity's cache, readiness, start records
	numTPMClasses
)

var tpmClassNames = [numTPMClasses]string{"log", "quote", "enrol", "clock"}

func (c tpmClass) String() string { return tpmClassNames[c] }

// tpmSched grants the TPM to one caller at a time.
type tpmSched struct {
	mu      sync.Mutex
	busy    bool                           // guarded by mu
	next    tpmClass                       // guarded by mu; the class whose turn comes first
	waiting [numTPMClasses][]chan struct{} // guarded by mu; closed when granted
	m       *Metrics
}

// do runs fn holding the TPM, once it is class c's turn. A caller whose
// ctx ends while it waits gets ctx's error and fn does not run.
func (s *tpmSched) do(ctx context.Context, c tpmClass, fn func() error) error {
	start := time.Now()
	if err := s.acquire(ctx, c); err != nil {
		return err
	}
	s.m.tpmWait[c].observe(time.Since(start))
	s.m.tpmCommands[c].Add(1)
	defer s.release()
	held := time.Now()
	defer func() { s.m.tpmBusy[c].Add(int64(time.Since(held))) }()
	return fn()
}

func (s *tpmSched) acquire(ctx context.Context, c tpmClass) error {
	s.mu.Lock()
	if !s.busy {
		s.busy = true
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.waiting[c] = append(s.waiting[c], ch)
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for i, w := range s.waiting[c] {
		if w == ch {
			s.waiting[c] = append(s.waiting[c][:i], s.waiting[c][i+1:]...)
			s.mu.Unlock()
			return ctx.Err()
		}
	}
	s.mu.Unlock()
	// Granted while giving up: pass the turn on.
	s.release()
	return ctx.Err()
}

// release hands the TPM to the first waiter of the next class in turn
// that has one, or frees it.
func (s *tpmSched) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range numTPMClasses {
		c := (s.next + i) % numTPMClasses
		if len(s.waiting[c]) == 0 {
			continue
		}
		ch := s.waiting[c][0]
		s.waiting[c] = s.waiting[c][1:]
		s.next = (c + 1) % numTPMClasses
		close(ch) // the TPM stays busy: it is ch's now
		return
	}
	s.busy = false
}

// schedTPM is the journal's view of the TPM: its extends and reads take
// the log's turn. They are not cancelled: an append does not stop half-way.
type schedTPM struct {
	dev   *tpm.Device
	sched *tpmSched
}

func (t schedTPM) Banks() []crypto.Hash { return t.dev.Banks() }

func (t schedTPM) Extend(pcr int, digests map[crypto.Hash][]byte) error {
	return t.sched.do(context.Background(), tpmLog, func() error { return t.dev.Extend(pcr, digests) })
}

func (t schedTPM) ReadPCR(pcr int) (map[crypto.Hash][]byte, error) {
	var v map[crypto.Hash][]byte
	err := t.sched.do(context.Background(), tpmLog, func() error {
		var err error
		v, err = t.dev.ReadPCR(pcr)
		return err
	})
	return v, err
}
