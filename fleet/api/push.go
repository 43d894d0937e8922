package api

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bpfattest/bpfattest/fleet"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// MaxPushSize bounds one uploaded evidence message (its log dominates):
// an agent with more records than that since its last verification
// cannot be verified by push.
const MaxPushSize = 64 << 20

// pushServer implements PushService.
type pushServer struct {
	pb.UnimplementedPushServiceServer
	svc *fleet.Service
}

// NewPushServer returns the gRPC server of PushService, with the TLS
// configuration of the push listener (which must ask for client
// certificates: they name the agents).
func NewPushServer(svc *fleet.Service, tlsCfg credentials.TransportCredentials) *grpc.Server {
	s := grpc.NewServer(grpc.Creds(tlsCfg), grpc.MaxRecvMsgSize(MaxPushSize))
	pb.RegisterPushServiceServer(s, &pushServer{svc: svc})
	return s
}

// ServePush serves PushService on ln until the server stops.
func ServePush(s *grpc.Server, ln net.Listener) error { return s.Serve(ln) }

// identity is the SHA-256 of the client's certificate.
func identity(ctx context.Context) (string, error) {
	cs := tlsState(ctx)
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", status.Error(codes.Unauthenticated, "push needs a client certificate")
	}
	return Fingerprint(cs.PeerCertificates[0].Raw), nil
}

func challengeProto(c *fleet.Challenge) *pb.PushChallenge {
	return &pb.PushChallenge{Session: c.Session, Nonce: c.Nonce, FromRecord: c.FromRecord, IncludeFirmwareLog: c.FirmwareLog, Expires: timestamppb.New(c.Expires)}
}

func (p *pushServer) Challenge(ctx context.Context, _ *pb.ChallengeRequest) (*pb.PushChallenge, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	c, err := p.svc.Challenge(ctx, id)
	var nd *fleet.NotDueError
	if errors.As(err, &nd) {
		st, _ := status.New(codes.ResourceExhausted, err.Error()).WithDetails(&pb.PushChallenge{RetryAfterSeconds: nd.RetryAfter.Seconds()})
		return nil, st.Err()
	}
	if err != nil {
		return nil, rpcError(err)
	}
	return challengeProto(c), nil
}

func (p *pushServer) Submit(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetEvidence() == nil || req.GetSession() == "" || len(req.GetSession()) > 64 {
		return nil, status.Error(codes.InvalidArgument, "submit: a session and evidence are required")
	}
	r, err := p.svc.Submit(ctx, id, req.GetSession(), req.GetEvidence())
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.SubmitResponse{Status: r.Status, NextInSeconds: r.NextIn.Seconds()}
	if r.Retry != nil {
		out.Retry = challengeProto(r.Retry)
	}
	return out, nil
}
