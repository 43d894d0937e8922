package service

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/evidence"
)

// Conditions the service itself decides.
var (
	// ErrPermission: a local peer is neither root nor in the served group.
	ErrPermission = errors.New("peer not authorized")
	// ErrRateLimited: a client asked for credential activations faster
	// than its rate, or all clients together faster than theirs.
	ErrRateLimited = errors.New("rate limit exceeded")
)

// detailError carries a message that travels with the error as a status
// detail (a refused load's LoadResponse).
type detailError struct {
	err    error
	detail proto.Message
}

func (e *detailError) Error() string { return e.err.Error() }
func (e *detailError) Unwrap() error { return e.err }

// withDetail attaches detail to err for the client.
func withDetail(err error, detail proto.Message) error {
	if err == nil || detail == nil {
		return err
	}
	return &detailError{err: err, detail: detail}
}

// Messages that replace the error's own text where it could leak paths,
// device names or internal state to a client.
const (
	msgUnavailable = "agent unavailable: the TPM or the event log failed; nothing was loaded"
	msgInternal    = "internal error"
)

// grpcError is the one place where errors become gRPC status codes. Every
// handler returns plain errors and the interceptors pass them through here.
// Errors about the request itself keep their text; anything else gets a
// fixed message (the full error is logged on the server).
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	var code codes.Code
	msg := err.Error()
	switch {
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, agent.ErrInvalid), errors.Is(err, evidence.ErrNonce):
		code = codes.InvalidArgument
	case errors.Is(err, agent.ErrRefused), errors.Is(err, agent.ErrKernel), errors.Is(err, agent.ErrPin):
		// The load was measured and answered; the detail says how.
		code = codes.FailedPrecondition
	case errors.Is(err, agent.ErrLogMismatch):
		// Not secret, and what the requester must know: why every load
		// is refused.
		code, msg = codes.FailedPrecondition, agent.ErrLogMismatch.Error()
	case errors.Is(err, agent.ErrLogTooLarge):
		// The client reads those records with Events and quotes the rest.
		code = codes.OutOfRange
	case errors.Is(err, agent.ErrUnavailable), errors.Is(err, agent.ErrClosed):
		code, msg = codes.Unavailable, msgUnavailable
	case errors.Is(err, ErrPermission):
		code = codes.PermissionDenied
	case errors.Is(err, ErrRateLimited), errors.Is(err, ErrBudget):
		code = codes.ResourceExhausted
	default:
		code, msg = codes.Internal, msgInternal
	}
	st := status.New(code, msg)
	var de *detailError
	if errors.As(err, &de) {
		if withD, derr := st.WithDetails(protoadapt.MessageV1Of(de.detail)); derr == nil {
			st = withD
		}
	}
	return st.Err()
}
