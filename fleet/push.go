package fleet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/fleet/store"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// Push mode, for agents without an inbound port (Keylime's push model):
// the agent, or its push sidecar, dials the service with its TLS client
// certificate, which names it (the certificate's SHA-256 is registered as
// the agent's identity). Challenge leases the agent to the session and
// returns a fresh nonce and the record its log should start from (the
// stored State's next record); the agent quotes and uploads the evidence
// with Submit, which any replica judges with verifier.Judge exactly as a
// pull verification and records under the session's lease. A challenge
// lives Timeout; an agent that does not push within PushGrace after it
// was due is judged unreachable by the scheduler.

// Challenge is what a push agent is asked to answer.
type Challenge struct {
	// Session names the challenge in the Submit that answers it.
	Session    string
	Nonce      []byte
	FromRecord uint64
	// FirmwareLog asks for the firmware event log with the quote
	// (verifier.WantsFirmwareLog).
	FirmwareLog bool
	Expires     time.Time
}

// NotDueError: the agent pushed too early; it may come back after
// RetryAfter.
type NotDueError struct{ RetryAfter time.Duration }

func (e *NotDueError) Error() string {
	return fmt.Sprintf("not due: come back in %v", e.RetryAfter.Round(time.Second))
}

// Push errors.
var (
	// ErrUnknownAgent: no push agent has the client certificate.
	ErrUnknownAgent = errors.New("no push agent has this client certificate")
	// ErrSession: the session is not the agent's running challenge (it
	// expired, was answered, or never was).
	ErrSession = errors.New("no such challenge")
	// ErrBusy: another challenge of the agent is running.
	ErrBusy = errors.New("another challenge of this agent is running")
)

// SubmitResult answers an upload.
type SubmitResult struct {
	// Status is the verdict's status.
	Status string
	// NextIn is when the agent is due again.
	NextIn time.Duration
	// Retry, when set, is a new challenge to answer at once: the agent
	// rebooted and its log must be sent from record 0.
	Retry *Challenge
}

// earlyPush is the fraction of the interval an agent may push before it
// is due.
const earlyPush = 4

// Challenge opens a push session for the agent whose client certificate
// has the SHA-256 fingerprint identity (lowercase hex).
func (s *Service) Challenge(ctx context.Context, identity string) (*Challenge, error) {
	a, err := s.pushAgent(ctx, identity)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// A first push, or one after the agent was judged unreachable, is
	// welcome at any time; otherwise not much before the agent is due.
	early := a.NextDue.Add(-s.cfg.Interval / earlyPush)
	if a.Status != "" && a.Status != verifier.StatusUnreachable && now.Before(early) {
		return nil, &NotDueError{RetryAfter: early.Sub(now)}
	}
	st, err := s.state(a)
	if err != nil {
		return nil, fmt.Errorf("fleet/challenge %s: %w", a.Name, err)
	}
	var from uint64
	if st != nil {
		from = st.NextRecord()
	}
	return s.challenge(ctx, a.Name, from, verifier.WantsFirmwareLog(st, from), now)
}

func (s *Service) challenge(ctx context.Context, name string, from uint64, firmware bool, now time.Time) (*Challenge, error) {
	c := &Challenge{Nonce: make([]byte, 32), FromRecord: from, FirmwareLog: firmware, Expires: now.Add(s.cfg.Timeout)}
	var tok [16]byte
	rand.Read(tok[:])
	rand.Read(c.Nonce)
	c.Session = hex.EncodeToString(tok[:])
	blob := binary.BigEndian.AppendUint64(append([]byte(nil), c.Nonce...), from)
	_, err := s.st.ClaimAgent(ctx, name, sessionOwner(c.Session), blob, now, s.cfg.Timeout)
	switch {
	case errors.Is(err, store.ErrBusy):
		return nil, fmt.Errorf("fleet/challenge %s: %w", name, ErrBusy)
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("fleet/challenge %s: %w", name, ErrUnknownAgent)
	case err != nil:
		return nil, fmt.Errorf("fleet/challenge %s: %w", name, err)
	}
	return c, nil
}

func sessionOwner(session string) string { return "push:" + session }

func (s *Service) pushAgent(ctx context.Context, identity string) (*store.Agent, error) {
	a, err := s.st.AgentByIdentity(ctx, identity)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("fleet/push: %w", ErrUnknownAgent)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet/push: %w", err)
	}
	return a, nil
}

// Submit judges the evidence m answering session and records the verdict.
func (s *Service) Submit(ctx context.Context, identity, session string, m *pb.Evidence) (*SubmitResult, error) {
	started := time.Now()
	a, err := s.pushAgent(ctx, identity)
	if err != nil {
		return nil, err
	}
	if a.LeaseOwner != sessionOwner(session) || !started.Before(a.LeaseUntil) || len(a.Challenge) != 40 {
		return nil, fmt.Errorf("fleet/submit %s: %w", a.Name, ErrSession)
	}
	nonce, from := a.Challenge[:32], binary.BigEndian.Uint64(a.Challenge[32:])
	var (
		v    *verifier.Verdict
		next *verifier.Host
	)
	host, pol, pv, err := s.prepare(ctx, a)
	if err != nil {
		v = &verifier.Verdict{Status: verifier.StatusUnverified, Reason: err.Error()}
	} else {
		v, next, err = verifier.Judge(m, nonce, host, pol)
		if errors.Is(err, attest.MissingBootHeader) && from != 0 {
			// A reboot whose log is as long as the old one: ask again
			// from record 0 (verifier.Check does the same).
			if err := s.st.Release(ctx, a.LeaseOwner); err != nil {
				return nil, fmt.Errorf("fleet/submit %s: %w", a.Name, err)
			}
			c, err := s.challenge(ctx, a.Name, 0, true, time.Now())
			if err != nil {
				return nil, err
			}
			return &SubmitResult{Status: v.Status, Retry: c}, nil
		}
	}
	if err := s.record(ctx, a, started, v, next, pv); err != nil {
		return nil, fmt.Errorf("fleet/submit %s: %w", a.Name, err)
	}
	return &SubmitResult{Status: v.Status, NextIn: s.cfg.Interval}, nil
}
