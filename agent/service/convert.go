package service

import (
	"crypto"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/measure"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Conversions from the agent's types to the wire messages. TPM structures
// and log records are copied as bytes, never re-encoded.

func algIDs(banks []crypto.Hash) ([]uint32, error) {
	out := make([]uint32, 0, len(banks))
	for _, h := range banks {
		id, ok := cel.AlgID(h)
		if !ok {
			return nil, fmt.Errorf("bank %v has no TPM_ALG_ID", h)
		}
		out = append(out, uint32(id))
	}
	return out, nil
}

func identityProto(id *agent.Identity) (*pb.Identity, error) {
	banks, err := algIDs(id.Banks)
	if err != nil {
		return nil, fmt.Errorf("identity/convert: %w", err)
	}
	return &pb.Identity{
		AkPublic:      id.AKPublic,
		AkAlgorithm:   id.AKAlgorithm,
		EkCertificate: id.EKCertificate,
		Pcr:           uint32(id.PCR),
		Banks:         banks,
		BootId:        id.BootID,
		TpmKind:       id.TPMKind,
		Clock: &pb.ClockInfo{
			Clock:        id.Clock.Clock,
			ResetCount:   id.Clock.ResetCount,
			RestartCount: id.Clock.RestartCount,
			Safe:         id.Clock.Safe,
		},
	}, nil
}

func statusProto(st agent.Status) (*pb.StatusResponse, error) {
	banks, err := algIDs(st.Banks)
	if err != nil {
		return nil, fmt.Errorf("status/convert: %w", err)
	}
	out := &pb.StatusResponse{
		Records:          st.Records,
		Pcr:              uint32(st.PCR),
		Banks:            banks,
		KernelSignatures: st.KernelSignatures,
		Loaded:           uint32(st.Loaded),
		Unmeasured:       uint32(st.Unmeasured),
		Observer:         st.Observer,
		TpmKind:          st.TPMKind,
		LogMismatch:      st.LogMismatch,
		FirmwareLog:      st.FirmwareLog,
	}
	for _, p := range st.BootPCRs {
		out.BootPcrs = append(out.BootPcrs, uint32(p))
	}
	if !st.Started.IsZero() {
		out.Started = timestamppb.New(st.Started)
	}
	return out, nil
}

func loadProto(r *agent.LoadResponse) *pb.LoadResponse {
	out := &pb.LoadResponse{
		MeasurementRecord: r.MeasurementRecord,
		ResultRecord:      r.ResultRecord,
		Pinned:            r.Pinned,
	}
	if in := r.Inspection; in != nil {
		m := &in.Measurement
		out.Name = m.Name
		out.Scheme = m.Scheme.String()
		out.Verdict = m.Verdict.String()
		out.KernelCheck = m.KernelCheck.String()
		out.Accepted = in.Accepted()
		out.Problems = in.Problems()
	}
	res := &r.Result
	if res.Outcome != 0 {
		out.Outcome = res.Outcome.String()
	}
	out.Step = res.Step
	out.Errno = res.Errno
	out.Reason = res.Reason
	out.Loader = kernelObjectProto(res.Loader, true)
	out.DataMap = kernelObjectProto(res.DataMap, false)
	for i := range res.Programs {
		out.Programs = append(out.Programs, kernelObjectProto(&res.Programs[i], true))
	}
	for i := range res.Maps {
		out.Maps = append(out.Maps, kernelObjectProto(&res.Maps[i], false))
	}
	return out
}

func kernelObjectProto(o *measure.KernelObject, prog bool) *pb.KernelObject {
	if o == nil {
		return nil
	}
	out := &pb.KernelObject{Id: o.ID, Type: o.Type, Name: o.Name}
	if prog {
		out.Tag = o.Tag[:]
	}
	return out
}
