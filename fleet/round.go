package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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
		pol  *policyVersion
	)
	switch {
	case a.Mode == store.ModePush:
		v = &verifier.Verdict{Status: verifier.StatusUnreachable,
			Reason: fmt.Sprintf("push agent: no evidence since it was due at %s", a.NextDue.UTC().Format(time.RFC3339))}
	default:
		v, next, pol = s.checkPull(vctx, a)
	}
	if ctx.Err() != nil {
		return // shutting down: the lease runs out, another replica takes over
	}
	s.record(ctx, a, started, v, next, pol)
}

// checkPull verifies a pull agent; the policy is nil when none could be
// had.
func (s *Service) checkPull(ctx context.Context, a *store.Agent) (*verifier.Verdict, *verifier.Host, *policyVersion) {
	host, pol, err := s.prepare(ctx, a)
	if err != nil {
		return &verifier.Verdict{Status: verifier.StatusUnverified, Reason: err.Error()}, nil, pol
	}
	conn, err := s.pool.get(a)
	if err != nil {
		return &verifier.Verdict{Status: verifier.StatusUnverified, Reason: fmt.Sprintf("dial %s: %v", a.Address, err)}, nil, pol
	}
	v, next := verifier.Check(ctx, pb.NewAttestationServiceClient(conn), host, pol.parsed, verifier.Limits{})
	return v, next, pol
}

// prepare gathers what a verification needs: the agent's pinned AK and
// State as a verifier.Host, and its policy (returned with an error that
// comes after the policy was found).
func (s *Service) prepare(ctx context.Context, a *store.Agent) (*verifier.Host, *policyVersion, error) {
	pol, err := s.policy(ctx, a.Policy)
	if err != nil {
		return nil, nil, err
	}
	if len(a.AKPublic) == 0 && !s.cfg.TOFU {
		return nil, pol, errors.New("no AK pinned: register the agent with its AK, or run the service with --tofu")
	}
	st, err := s.state(a)
	if err != nil {
		return nil, pol, err
	}
	h := &verifier.Host{Version: verifier.HostVersion, AKPublic: a.AKPublic, Pinned: a.Pinned, EKCertSHA256: a.EKCertSHA256, State: st}
	if len(a.AKPublic) == 0 {
		h.Pinned = verifier.PinTOFU
	}
	return h, pol, nil
}

// record stores a verification under the agent's lease: the new State
// (compare-and-swap on its version), the verdict and its EAR, the history
// row, the outbox rows, the next due time. pol is the policy the agent
// was judged by (nil when there was none to judge it by).
func (s *Service) record(ctx context.Context, a *store.Agent, started time.Time, v *verifier.Verdict, next *verifier.Host, pol *policyVersion) error {
	now := time.Now()
	v.Host, v.Agent = a.Name, a.Address
	var newState []byte
	if next != nil && next.State != nil {
		b, err := next.State.MarshalBinary()
		if err != nil {
			// The verdict, its EAR and the status all say so.
			v = &verifier.Verdict{Host: a.Name, Agent: a.Address, Status: verifier.StatusUnverified, Reason: fmt.Sprintf("encode state: %v", err)}
		} else {
			newState = b
		}
	}
	failures := 0
	if v.Status == verifier.StatusUnreachable {
		failures = a.Failures + 1
	}
	o := &store.Outcome{
		Agent: a.Name, Owner: a.LeaseOwner, FromVersion: a.StateVersion,
		Status: v.Status, Reason: reason(v),
		Started: started, At: now, NextDue: s.nextDue(now, failures), Failures: failures,
		Webhooks: s.cfg.Webhooks, Alert: alert,
	}
	if pol != nil {
		o.PolicyVersion = pol.version
	}
	if a.Mode == store.ModePush && v.Status != verifier.StatusUnreachable {
		// The agent comes back by itself: due one interval from now,
		// late (and claimed here) PushGrace after that.
		o.NextDue = now.Add(s.cfg.Interval)
	}
	if b, err := json.Marshal(v); err == nil {
		o.Verdict = b
	}
	if newState != nil {
		o.State = newState
		if len(a.AKPublic) == 0 {
			o.AKPublic, o.Pinned, o.EKCertSHA256 = next.AKPublic, next.Pinned, next.EKCertSHA256
		}
	}
	if s.ear != nil {
		var id string
		if pol != nil {
			id = pol.id
		}
		tok, err := s.ear.sign(v, now, id)
		if err != nil {
			// The verdict is recorded without one: the API answers that
			// the latest verdict has no EAR, never an older one.
			s.metrics.earErrors.Inc()
			s.log.Error("sign EAR", "agent", a.Name, "err", err)
		}
		o.EAR = tok
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
	if o.State != nil {
		s.keepState(a.Name, a.StateVersion+1, next.State)
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
