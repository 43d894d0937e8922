package service

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unaryErrors logs a handler's error in full and sends the client its
// status from grpcError.
func (s *Server) unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		s.logError(ctx, info.FullMethod, err)
		return nil, grpcError(err)
	}
	return resp, nil
}

func (s *Server) streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	if err != nil {
		s.logError(ss.Context(), info.FullMethod, err)
		return grpcError(err)
	}
	return nil
}

// logError logs the agent's own failures as errors, the client's (bad
// request, refusal) as warnings, and a call its client ended (cancelled,
// past its deadline, gone) at debug level: a follow stream always ends
// so. A call whose context ended fails however it was interrupted (a
// send refused by the transport is not a context error), so the context
// decides, not the error.
func (s *Server) logError(ctx context.Context, method string, err error) {
	level := slog.LevelWarn
	switch {
	case ctx.Err() != nil:
		level = slog.LevelDebug
		err = fmt.Errorf("%w (the call ended: %w)", err, context.Cause(ctx))
	default:
		switch status.Code(grpcError(err)) {
		case codes.Internal, codes.Unavailable:
			level = slog.LevelError
		}
	}
	s.logger.Log(ctx, level, "rpc failed", "method", method, "err", err)
}

// unaryLocalAuth refuses local peers that are neither root nor in the
// served group, before any handler runs.
func (s *Server) unaryLocalAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := authorizeLocal(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamLocalAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := authorizeLocal(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

func authorizeLocal(ctx context.Context) error {
	pc, ok := peerCredOf(ctx)
	if !ok {
		return fmt.Errorf("local peer without credentials: %w", ErrPermission)
	}
	if !pc.Allowed {
		return fmt.Errorf("uid %d gid %d pid %d: %w", pc.UID, pc.GID, pc.PID, ErrPermission)
	}
	return nil
}
