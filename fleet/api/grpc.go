package api

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bpfattest/bpfattest/fleet"
	"github.com/bpfattest/bpfattest/fleet/store"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// fleetServer implements FleetService.
type fleetServer struct {
	pb.UnimplementedFleetServiceServer
	svc *fleet.Service
}

func registerFleet(s *grpc.Server, svc *fleet.Service) {
	pb.RegisterFleetServiceServer(s, &fleetServer{svc: svc})
}

// rpcError maps an error to its status.
func rpcError(err error) error {
	switch {
	case errors.Is(err, fleet.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, store.ErrNotFound), errors.Is(err, fleet.ErrUnknownAgent):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, fleet.ErrBusy):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, fleet.ErrSession):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil || t.IsZero() {
		return nil
	}
	return timestamppb.New(*t)
}

func agentInfo(a *AgentView) *pb.AgentInfo {
	next := a.NextDue
	return &pb.AgentInfo{Name: a.Name, Mode: a.Mode, Address: a.Address, Policy: a.Policy, Status: a.Status, Reason: a.Reason,
		VerifiedAt: ts(a.VerifiedAt), NextDue: ts(&next), Failures: uint32(a.Failures)}
}

func (f *fleetServer) Summary(ctx context.Context, _ *pb.SummaryRequest) (*pb.FleetSummary, error) {
	s, err := summary(ctx, f.svc)
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.FleetSummary{Agents: uint32(s.Agents), ByStatus: map[string]uint32{}, QueueLagSeconds: s.QueueLagSeconds,
		Due: uint32(s.Due), WebhookBacklog: uint32(s.WebhookBacklog), WebhookFailed: uint32(s.WebhookFailed)}
	for k, v := range s.ByStatus {
		out.ByStatus[k] = uint32(v)
	}
	return out, nil
}

func (f *fleetServer) ListAgents(ctx context.Context, req *pb.ListAgentsRequest) (*pb.ListAgentsResponse, error) {
	as, err := listAgents(ctx, f.svc, req.GetStatus(), req.GetAfter(), int(min(req.GetLimit(), maxAgents)))
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListAgentsResponse{}
	for i := range as {
		out.Agents = append(out.Agents, agentInfo(&as[i]))
	}
	return out, nil
}

func (f *fleetServer) GetAgent(ctx context.Context, req *pb.GetAgentRequest) (*pb.AgentDetail, error) {
	d, err := agentDetail(ctx, f.svc, req.GetName())
	if err != nil {
		return nil, rpcError(err)
	}
	return &pb.AgentDetail{Agent: agentInfo(&d.AgentView), ServerName: d.ServerName, CertSha256: d.CertSHA256, AkPinned: d.AKPinned,
		StateVersion: uint64(d.StateVersion), PolicyVersion: uint32(d.PolicyVersion), VerdictJson: string(d.Verdict),
		StatusSince: ts(d.StatusSince)}, nil
}

func (f *fleetServer) History(ctx context.Context, req *pb.HistoryRequest) (*pb.HistoryResponse, error) {
	hs, err := history(ctx, f.svc, req.GetName(), req.GetTransitionsOnly(), int(min(req.GetLimit(), maxHistory)))
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.HistoryResponse{}
	for _, h := range hs {
		out.Entries = append(out.Entries, &pb.HistoryEntry{Id: h.ID, At: ts(&h.At), Status: h.Status, PrevStatus: h.PrevStatus,
			Transition: h.Transition, Reason: h.Reason, Replica: h.Replica, FromStateVersion: uint64(h.FromVersion),
			ToStateVersion: uint64(h.ToVersion), VerdictJson: string(h.Verdict)})
	}
	return out, nil
}

func policyProto(p *store.Policy) *pb.Policy {
	return &pb.Policy{Name: p.Name, Version: uint32(p.Version), Body: p.Body, Sha256: p.SHA256, CreatedAt: ts(&p.CreatedAt)}
}

func (f *fleetServer) ListPolicies(ctx context.Context, _ *pb.ListPoliciesRequest) (*pb.ListPoliciesResponse, error) {
	ps, err := f.svc.Store().Policies(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListPoliciesResponse{}
	for i := range ps {
		out.Policies = append(out.Policies, policyProto(&ps[i]))
	}
	return out, nil
}

func (f *fleetServer) GetPolicy(ctx context.Context, req *pb.GetPolicyRequest) (*pb.Policy, error) {
	p, err := f.svc.Store().Policy(ctx, req.GetName(), int(min(req.GetVersion(), 1<<30)))
	if err != nil {
		return nil, rpcError(err)
	}
	return policyProto(p), nil
}

// SpecFromProto converts a wire agent spec.
func SpecFromProto(a *pb.AgentSpec) fleet.AgentSpec {
	return fleet.AgentSpec{Name: a.GetName(), Mode: a.GetMode(), Address: a.GetAddress(), ServerName: a.GetServerName(),
		CertSHA256: a.GetCertSha256(), Policy: a.GetPolicy(), AKPublic: a.GetAkPublic(), State: a.GetState(),
		AKPinned: a.GetAkPinned(), EKCertSHA256: a.GetEkCertificateSha256()}
}

func (f *fleetServer) Register(ctx context.Context, req *pb.RegisterRequest) (*pb.RegisterResponse, error) {
	if len(req.GetAgents()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no agents")
	}
	specs := make([]fleet.AgentSpec, 0, len(req.GetAgents()))
	for _, a := range req.GetAgents() {
		specs = append(specs, SpecFromProto(a))
	}
	if err := f.svc.Register(ctx, specs); err != nil {
		return nil, rpcError(err)
	}
	return &pb.RegisterResponse{Registered: uint32(len(specs))}, nil
}

func (f *fleetServer) DeleteAgent(ctx context.Context, req *pb.DeleteAgentRequest) (*pb.DeleteAgentResponse, error) {
	if err := f.svc.Delete(ctx, req.GetName()); err != nil {
		return nil, rpcError(err)
	}
	return &pb.DeleteAgentResponse{}, nil
}

func (f *fleetServer) PutPolicy(ctx context.Context, req *pb.PutPolicyRequest) (*pb.Policy, error) {
	v, err := f.svc.PutPolicy(ctx, req.GetName(), req.GetBody())
	if err != nil {
		return nil, rpcError(err)
	}
	p, err := f.svc.Store().Policy(ctx, req.GetName(), v)
	if err != nil {
		return nil, rpcError(err)
	}
	return policyProto(p), nil
}
