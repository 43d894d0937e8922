package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/fleet/store"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// verify runs one scheduled verification of a claimed agent and records
// it. A pull agent is asked for a quote over its pooled connection and
// judged by verifier.Check; a push agent claimed here missed its push and
// is unreachable.
func (s *Service) verify(ctx context.Context, a *store.Agent) {
	started := time.Now()
	vctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var (
		v    *verifier.Verdict
		next *verifier.Host
		pv   int
	)
	switch {
	case a.Mode == store.ModePush:
		v = &verifier.Verdict{Status: verifier.StatusUnreachable,
			Reason: fmt.Sprintf("push agent: no evidence since it was due at %s", a.NextDue.UTC().Format(time.RFC3339))}
	default:
		v, next, pv = s.checkPull(vctx, a)
	}
	if ctx.Err() != nil {
		return // shutting down: the lease runs out, another replica takes over
	}
	s.record(ctx, a, started, v, next, pv)
}

// checkPull verifies a pull agent.
func (s *Service) checkPull(ctx context.Context, a *store.Agent) (*verifier.Verdict, *verifier.Host, int) {
	host, pol, pv, err := s.prepare(ctx, a)
	if err != nil {
		return &verifier.Verdict{Status: verifier.StatusUnverified, Reason: err.Error()}, nil, pv
	}
	conn, err := s.pool.get(a)
	if err != nil {
		return &verifier.Verdict{Status: verifier.StatusUnverified, Reason: fmt.Sprintf("dial %s: %v", a.Address, err)}, nil, pv
	}
	v, next := verifier.Check(ctx, pb.NewAttestationServiceClient(conn), host, pol)
	return v, next, pv
}

// prepare gathers what a verification needs: the agent's pinned AK and
// State as a verifier.Host, and its policy.
func (s *Service) prepare(ctx context.Context, a *store.Agent) (*verifier.Host, *attest.Policy, int, error) {
	pol, pv, err := s.policy(ctx, a.Policy)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(a.AKPublic) == 0 && !s.cfg.TOFU {
		return nil, nil, pv, errors.New("no AK pinned: register the agent with its AK, or run the service with --tofu")
	}
	st, err := s.state(a)
	if err != nil {
		return nil, nil, pv, err
	}
	h := &verifier.Host{Version: verifier.HostVersion, AKPublic: a.AKPublic, Pinned: a.Pinned, EKCertSHA256: a.EKCertSHA256, State: st}
	if len(a.AKPublic) == 0 {
		h.Pinned = verifier.PinTOFU
	}
	return h, pol, pv, nil
}

// record stores a verification under the agent's lease: the new State
// (compare-and-swap on its version), the verdict, the history row, the
// outbox rows, the next due time.
func (s *Service) record(ctx context.Context, a *store.Agent, started time.Time, v *verifier.Verdict, next *verifier.Host, pv int) error {
	now := time.Now()
	v.Host, v.Agent = a.Name, a.Address
	failures := 0
	if v.Status == verifier.StatusUnreachable {
		failures = a.Failures + 1
	}
	o := &store.Outcome{
		Agent: a.Name, Owner: a.LeaseOwner, FromVersion: a.StateVersion,
		Status: v.Status, Reason: reason(v), PolicyVersion: pv,
		Started: started, At: now, NextDue: s.nextDue(now, failures), Failures: failures,
		Webhooks: s.cfg.Webhooks, Alert: alert,
	}
	if a.Mode == store.ModePush && v.Status != verifier.StatusUnreachable {
		// The agent comes back by itself: due one interval from now,
		// late (and claimed here) PushGrace after that.
		o.NextDue = now.Add(s.cfg.Interval)
	}
	if b, err := json.Marshal(v); err == nil {
		o.Verdict = b
	}
	var newState *attest.State
	if next != nil && next.State != nil {
		b, err := next.State.MarshalBinary()
		if err != nil {
			o.Status, o.Reason = verifier.StatusUnverified, fmt.Sprintf("encode state: %v", err)
		} else {
			o.State, newState = b, next.State
		}
		if len(a.AKPublic) == 0 {
			o.AKPublic, o.Pinned, o.EKCertSHA256 = next.AKPublic, next.Pinned, next.EKCertSHA256
		}
	}
	err := s.st.Complete(ctx, o)
	d := now.Sub(started)
	switch {
	case errors.Is(err, store.ErrLeaseLost):
		s.metrics.lost.Inc()
		s.log.Warn("verification discarded", "agent", a.Name, "err", err)
		return err
	case err != nil:
		s.metrics.storeErrors.Inc()
		s.log.Error("record verification", "agent", a.Name, "err", err)
		return err
	}
	if newState != nil {
		s.keepState(a.Name, a.StateVersion+1, newState)
	}
	s.metrics.observe(v.Status, d, started.Sub(a.NextDue))
	if a.Status != v.Status {
		s.log.Info("transition", "agent", a.Name, "from", orNone(a.Status), "to", v.Status, "reason", o.Reason)
	}
	return nil
}

// reason is a verdict's reasons in one line, bounded.
func reason(v *verifier.Verdict) string {
	r := strings.Join(v.Reasons(), "; ")
	if len(r) > MaxReasonLen {
		r = strings.ToValidUTF8(r[:MaxReasonLen-3], "") + "..."
	}
	return r
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
