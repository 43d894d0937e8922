package service

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/evidence"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// TestGRPCError proves the mapping table: each condition a client can act
// on gets its code whatever wraps it, and errors the client cannot act on
// reach it without their text.
func TestGRPCError(t *testing.T) {
	secret := errors.New("open /var/lib/secret/tpm: device busy")
	tests := []struct {
		name    string
		err     error
		code    codes.Code
		msg     string // exact message; empty: the error's own text
		leakOK  bool
		details bool
	}{
		{name: "invalid", err: fmt.Errorf("load: %w", agent.ErrInvalid), code: codes.InvalidArgument, leakOK: true},
		{name: "agent nonce", err: fmt.Errorf("quote: %w", agent.ErrNonce), code: codes.InvalidArgument, leakOK: true},
		{name: "evidence nonce", err: fmt.Errorf("quote: %w", evidence.CheckNonce(nil)), code: codes.InvalidArgument, leakOK: true},
		{name: "refused", err: fmt.Errorf("load: %w", agent.ErrRefused), code: codes.FailedPrecondition, leakOK: true},
		{name: "refused with detail", err: withDetail(fmt.Errorf("load: %w", agent.ErrRefused), &pb.LoadResponse{Verdict: "UNKNOWNKEY", MeasurementRecord: 7}), code: codes.FailedPrecondition, leakOK: true, details: true},
		{name: "unavailable", err: fmt.Errorf("load: %w", errors.Join(agent.ErrUnavailable, secret)), code: codes.Unavailable, msg: msgUnavailable},
		{name: "closed", err: fmt.Errorf("quote: %w", agent.ErrClosed), code: codes.Unavailable, msg: msgUnavailable},
		{name: "permission", err: fmt.Errorf("uid 65534: %w", ErrPermission), code: codes.PermissionDenied, leakOK: true},
		{name: "rate", err: fmt.Errorf("activate credential: %w", ErrRateLimited), code: codes.ResourceExhausted, leakOK: true},
		{name: "canceled", err: fmt.Errorf("events: %w", context.Canceled), code: codes.Canceled, leakOK: true},
		{name: "deadline", err: fmt.Errorf("quote: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded, leakOK: true},
		{name: "unknown", err: fmt.Errorf("quote: %w", secret), code: codes.Internal, msg: msgInternal},
		{name: "unsentinelled errno", err: fmt.Errorf("load: bpf prog_load: %w", errors.New("errno 13")), code: codes.Internal, msg: msgInternal},
		{name: "kernel", err: fmt.Errorf("load: %w: %w", agent.ErrKernel, syscall.EPERM), code: codes.FailedPrecondition, leakOK: true},
		{name: "loader", err: fmt.Errorf("load: %w: %w", agent.ErrKernel, syscall.EINVAL), code: codes.FailedPrecondition, leakOK: true},
		{name: "log too large", err: fmt.Errorf("quote: %w: 40 MiB from record 0", agent.ErrLogTooLarge), code: codes.OutOfRange, leakOK: true},
		{name: "pin", err: fmt.Errorf("load: %w: %w", agent.ErrPin, syscall.EEXIST), code: codes.FailedPrecondition, leakOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, ok := status.FromError(grpcError(tt.err))
			if !ok {
				t.Fatalf("not a status error: %v", grpcError(tt.err))
			}
			if st.Code() != tt.code {
				t.Errorf("code %v, want %v", st.Code(), tt.code)
			}
			want := tt.msg
			if want == "" {
				want = tt.err.Error()
			}
			if st.Message() != want {
				t.Errorf("message %q, want %q", st.Message(), want)
			}
			if !tt.leakOK && st.Message() == tt.err.Error() {
				t.Errorf("internal error text reached the client: %q", st.Message())
			}
			if got := len(st.Details()) > 0; got != tt.details {
				t.Fatalf("details present %v, want %v", got, tt.details)
			}
			if tt.details {
				lr, ok := st.Details()[0].(*pb.LoadResponse)
				if !ok || lr.GetVerdict() != "UNKNOWNKEY" || lr.GetMeasurementRecord() != 7 {
					t.Errorf("detail %v, want the LoadResponse", st.Details()[0])
				}
			}
		})
	}
	if grpcError(nil) != nil {
		t.Error("nil error mapped to a status")
	}
}
