// Package pushclient is the agent side of the fleet service's push mode,
// for nodes without an inbound port: it dials the service's PushService
// with the node's client certificate, takes a challenge (a nonce and the
// record to start the log from), has the local agent quote over it
// through the agent's remote API on loopback, uploads the evidence, and
// sleeps until the service wants the next one. The agent itself is
// unchanged: bpfattest-push runs beside it.
package pushclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
	"github.com/bpfattest/bpfattest/verifier"
)

// Client pushes one agent's evidence.
type Client struct {
	// Agent is the local agent's remote API; Verifier the service's push
	// API.
	Agent    pb.AttestationServiceClient
	Verifier pb.PushServiceClient
	// MinBackoff and MaxBackoff bound the delay after a failed round,
	// doubling in between (defaults 10 s and 5 min, as Keylime's push
	// agent).
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one round (default 60 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Result is what one round did.
type Result struct {
	Status string
	// Next is when the service wants the next push.
	Next time.Duration
}

// maxRetries bounds the immediate re-challenges of one round (a reboot
// asks for the log from record 0 once).
const maxRetries = 2

// Once runs one round: challenge, quote, upload.
func (c *Client) Once(ctx context.Context) (*Result, error) {
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	ch, err := c.Verifier.Challenge(ctx, &pb.ChallengeRequest{})
	if d, ok := RetryAfter(err); ok {
		return &Result{Status: "not-due", Next: d}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pushclient/challenge: %w", err)
	}
	for range maxRetries + 1 {
		ev, err := c.evidence(ctx, ch)
		if err != nil {
			return nil, err
		}
		rsp, err := c.Verifier.Submit(ctx, &pb.SubmitRequest{Session: ch.GetSession(), Evidence: ev})
		if err != nil {
			return nil, fmt.Errorf("pushclient/submit: %w", err)
		}
		if rsp.GetRetry() == nil {
			return &Result{Status: rsp.GetStatus(), Next: time.Duration(rsp.GetNextInSeconds() * float64(time.Second))}, nil
		}
		ch = rsp.GetRetry()
	}
	return nil, errors.New("pushclient: the service kept asking again")
}

// evidence asks the agent for a quote over the challenge's nonce with the
// log from its record, and the firmware log when the challenge asks for it
// (from record 0 when the agent's log is shorter: it
// rebooted, and its log starts again).
func (c *Client) evidence(ctx context.Context, ch *pb.PushChallenge) (*pb.Evidence, error) {
	ev, err := verifier.FetchEvidence(ctx, c.Agent, ch.GetNonce(), ch.GetFromRecord(), ch.GetIncludeFirmwareLog())
	if status.Code(err) == codes.InvalidArgument && ch.GetFromRecord() != 0 {
		// From record 0 is a new boot: its chain is verified again.
		ev, err = verifier.FetchEvidence(ctx, c.Agent, ch.GetNonce(), 0, true)
	}
	if err != nil {
		return nil, fmt.Errorf("pushclient/quote: %w", err)
	}
	return ev, nil
}

// Run pushes until ctx is done: after each round it sleeps as long as the
// service asked, after a failure a backoff doubling from MinBackoff to
// MaxBackoff (with jitter).
func (c *Client) Run(ctx context.Context) error {
	minB, maxB := c.MinBackoff, c.MaxBackoff
	if minB <= 0 {
		minB = 10 * time.Second
	}
	if maxB < minB {
		maxB = max(5*time.Minute, minB)
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := minB
	for {
		r, err := c.Once(ctx)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("push", "err", err, "retry_in", backoff)
			wait = backoff + time.Duration(rand.Int64N(int64(backoff)/4+1))
			backoff = min(2*backoff, maxB)
		} else {
			log.Info("push", "status", r.Status, "next_in", r.Next)
			wait, backoff = max(r.Next, time.Second/10), minB
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// RetryAfter extracts the delay of a Challenge answered
// RESOURCE_EXHAUSTED (too early).
func RetryAfter(err error) (time.Duration, bool) {
	st := status.Convert(err)
	if err == nil || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if c, ok := d.(*pb.PushChallenge); ok {
			return time.Duration(c.GetRetryAfterSeconds() * float64(time.Second)), true
		}
	}
	return 0, false
}
