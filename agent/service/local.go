package service

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/agent"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// localService implements LocalService for peers the interceptors let in.
type localService struct {
	pb.UnimplementedLocalServiceServer
	s *Server
}

func (l *localService) Load(ctx context.Context, req *pb.LoadRequest) (*pb.LoadResponse, error) {
	pc, ok := peerCredOf(ctx)
	if !ok {
		return nil, fmt.Errorf("load: %w", ErrPermission)
	}
	if b := budgetOf(ctx); b != nil {
		// Received: it no longer needs the largest request's bytes,
		// only its own, and its receive deadline is past.
		if b.received != nil && !b.received() {
			return nil, fmt.Errorf("load: %w", context.Cause(ctx))
		}
		b.shrinkBytes(int64(proto.Size(req)) + localOverhead)
	}
	if n := len(req.GetArtifact()); n == 0 || n > l.s.opts.MaxArtifactSize {
		return nil, fmt.Errorf("load: artifact of %d bytes, want 1 to %d: %w", n, l.s.opts.MaxArtifactSize, agent.ErrInvalid)
	}
	resp, err := l.s.agent.Load(ctx, agent.LoadRequest{
		Artifact:  req.GetArtifact(),
		Requester: pc.Requester(),
		PinDir:    req.GetPinDir(),
	})
	if resp != nil {
		out := loadProto(resp)
		l.s.logger.Info("load", "name", out.GetName(), "verdict", out.GetVerdict(), "outcome", out.GetOutcome(),
			"record", out.GetMeasurementRecord(), "uid", pc.UID, "pid", pc.PID, "exe", pc.Exe)
		if err != nil {
			return nil, withDetail(fmt.Errorf("load: %w", err), out)
		}
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return nil, fmt.Errorf("load: agent returned no response")
}

func (l *localService) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	return statusProto(l.s.agent.Status())
}
