package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// remoteService implements AttestationService.
type remoteService struct {
	pb.UnimplementedAttestationServiceServer
	s *Server
}

func (r *remoteService) Identity(ctx context.Context, _ *pb.IdentityRequest) (*pb.Identity, error) {
	id, err := r.s.agent.Identity(ctx)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return identityProto(id)
}

func (r *remoteService) Quote(ctx context.Context, req *pb.QuoteRequest) (*pb.Evidence, error) {
	if err := evidence.CheckNonce(req.GetNonce()); err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	// No rate per client: the agent bounds the TPM time of all quotes
	// together and coalesces every request into them; what a waiting
	// request holds is bounded by the quote calls budget (admit.go).
	client := clientKey(ctx)
	// The answer's log is held until it is sent: within the client's
	// share of the quote bytes, and everyone's.
	from := req.GetFromRecord()
	size := r.s.agent.LogBytesFrom(from)
	if size > r.s.opts.MaxQuoteBytesPerPeer {
		return nil, fmt.Errorf("quote: %w: the records from %d take %d bytes, more than a client is sent in quotes at once (%d); read them with Events and quote from a later record",
			agent.ErrLogTooLarge, from, size, r.s.opts.MaxQuoteBytesPerPeer)
	}
	g, err := r.s.quoteBytes.take(client, size)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if b := budgetOf(ctx); b != nil {
		b.add(g)
	} else {
		defer g.release()
	}
	ev, err := r.s.agent.Quote(ctx, req.GetNonce(), from)
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if req.GetIncludeFirmwareLog() {
		ev.FirmwareLog = r.s.agent.FirmwareLog()
	}
	return evidence.ToProto(ev)
}

func (r *remoteService) ActivateCredential(ctx context.Context, req *pb.ActivateCredentialRequest) (*pb.ActivateCredentialResponse, error) {
	client := clientKey(ctx)
	if !r.s.activateRate.Allow(client) {
		r.s.rateLimited.WithLabelValues("activate").Inc()
		return nil, fmt.Errorf("activate credential: client %s: %w", client, ErrRateLimited)
	}
	// Several TPM commands each: a rate for all clients together.
	if !r.s.enrolRate.Allow("all") {
		r.s.rateLimited.WithLabelValues("enrol").Inc()
		return nil, fmt.Errorf("activate credential: all clients ask more than %g a second: %w", r.s.opts.EnrolRate, ErrRateLimited)
	}
	secret, err := r.s.agent.ActivateCredential(ctx, req.GetAkPublic(), req.GetCredentialBlob(), req.GetEncryptedSecret())
	if err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	return &pb.ActivateCredentialResponse{Secret: secret}, nil
}

// Events streams records, a chunk of the log file at a time (agent.Walk),
// paced to the client's and all clients' Events rates.
// A message the client does not take within StallTimeout cuts the
// client's connection: a client that stops reading holds no more than
// what gRPC buffers for one stream, and that only for StallTimeout.
func (r *remoteService) Events(req *pb.EventsRequest, stream grpc.ServerStreamingServer[pb.Event]) error {
	ctx := stream.Context()
	send := r.stallGuard(stream)
	defer send.stop()
	if !req.GetFollow() {
		if err := r.s.agent.Walk(req.GetFromRecord(), send.record); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.s.agent.Subscribe(ctx, req.GetFromRecord())
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	for {
		select {
		case <-r.s.quit:
			return nil
		case rec, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if err := send.record(&rec); err != nil {
				return fmt.Errorf("events: %w", err)
			}
		}
	}
}

// stalledSender sends records on one stream with a watchdog: a send that
// has not returned after StallTimeout cuts the connection, which ends the
// send.
type stalledSender struct {
	stream grpc.ServerStreamingServer[pb.Event]
	timer  *time.Timer
	d      time.Duration
	// pace waits as long as the Events rates ask for n more bytes.
	pace func(n int) error
}

func (r *remoteService) stallGuard(stream grpc.ServerStreamingServer[pb.Event]) *stalledSender {
	ctx := stream.Context()
	t := time.AfterFunc(time.Hour, func() {
		r.s.logger.Warn("events: the client took nothing for the stall timeout; cutting its connection",
			"client", clientKey(ctx), "stall", r.s.opts.StallTimeout)
		r.s.conns.cut(ctx)
		if b := budgetOf(ctx); b != nil {
			b.cancel(errStalled)
		}
	})
	t.Stop()
	client := clientKey(ctx)
	pace := func(n int) error {
		wait := max(r.s.eventsRate.Take(client, float64(n)), r.s.eventsRateAll.Take("all", float64(n)))
		if wait <= 0 {
			return nil
		}
		w := time.NewTimer(wait)
		defer w.Stop()
		select {
		case <-w.C:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return &stalledSender{stream: stream, timer: t, d: r.s.opts.StallTimeout, pace: pace}
}

func (s *stalledSender) record(rec *cel.Record) error {
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("record %d: %w", rec.RecNum, err)
	}
	if err := s.pace(len(b)); err != nil {
		return fmt.Errorf("record %d: %w", rec.RecNum, err)
	}
	s.timer.Reset(s.d)
	err = s.stream.Send(&pb.Event{Recnum: rec.RecNum, Record: b})
	s.timer.Stop()
	if err != nil {
		return fmt.Errorf("send record %d: %w", rec.RecNum, err)
	}
	return nil
}

func (s *stalledSender) stop() { s.timer.Stop() }

// errStalled ends a stream whose client took nothing for the stall
// timeout.
var errStalled = errors.New("client stalled")

// clientKey names a remote client for the budgets and rate limits: its
// certificate's fingerprint under mutual TLS, otherwise its IP address.
func clientKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		return "cert:" + Fingerprint(ti.State.PeerCertificates[0].Raw)
	}
	if p.Addr == nil {
		return "unknown"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return "addr:" + p.Addr.String()
	}
	return "ip:" + host
}
