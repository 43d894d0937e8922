package service

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

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
	client := clientKey(ctx)
	if !r.s.limiter.Allow(client) {
		return nil, fmt.Errorf("quote: client %s: %w", client, ErrRateLimited)
	}
	ev, err := r.s.agent.Quote(ctx, req.GetNonce(), req.GetFromRecord())
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
	if !r.s.limiter.Allow(client) {
		return nil, fmt.Errorf("activate credential: client %s: %w", client, ErrRateLimited)
	}
	secret, err := r.s.agent.ActivateCredential(ctx, req.GetAkPublic(), req.GetCredentialBlob(), req.GetEncryptedSecret())
	if err != nil {
		return nil, fmt.Errorf("activate credential: %w", err)
	}
	return &pb.ActivateCredentialResponse{Secret: secret}, nil
}

func (r *remoteService) Events(req *pb.EventsRequest, stream grpc.ServerStreamingServer[pb.Event]) error {
	ctx := stream.Context()
	if !req.GetFollow() {
		// One chunk of the log in memory at a time, however long it is.
		if err := r.s.agent.Walk(req.GetFromRecord(), func(rec *cel.Record) error {
			return sendRecord(stream, rec)
		}); err != nil {
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
			if err := sendRecord(stream, &rec); err != nil {
				return err
			}
		}
	}
}

func sendRecord(stream grpc.ServerStreamingServer[pb.Event], rec *cel.Record) error {
	b, err := rec.MarshalBinary()
	if err != nil {
		return fmt.Errorf("events: record %d: %w", rec.RecNum, err)
	}
	if err := stream.Send(&pb.Event{Recnum: rec.RecNum, Record: b}); err != nil {
		return fmt.Errorf("events: send record %d: %w", rec.RecNum, err)
	}
	return nil
}

// clientKey names a remote client for the rate limit: its certificate's
// fingerprint under mutual TLS, otherwise its IP address.
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
