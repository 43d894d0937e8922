package service

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/bpfattest/bpfattest/agent"
)

// A request that does not decode is the client's error, InvalidArgument.
// gRPC turns any error of a codec into Internal, and decodes a unary
// request before the interceptors run; so the servers' codec
// (requestCodec) keeps a failure to decode a request in the decodeTarget
// the handlers hand it, and decodingServiceDesc wraps the generated
// handlers so that the failure reaches the interceptors (metrics, the
// local peer check, grpcError) as an agent.ErrInvalid instead of the
// handler being called.

// decodeTarget is what the wrapped handlers decode into: the request
// message, and why it did not decode.
type decodeTarget struct {
	msg proto.Message
	err error
}

// requestCodec is gRPC's protobuf codec, except for decodeTargets.
type requestCodec struct{ proto encoding.CodecV2 }

func newRequestCodec() requestCodec { return requestCodec{proto: encoding.GetCodecV2("proto")} }

func (c requestCodec) Name() string { return c.proto.Name() }

func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	t, ok := v.(*decodeTarget)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if err := c.proto.Unmarshal(data, t.msg); err != nil {
		t.err = fmt.Errorf("%w: malformed %s: %w", agent.ErrInvalid, t.msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// decodingServiceDesc returns a copy of a generated service description
// whose handlers decode their request through a decodeTarget.
func decodingServiceDesc(d *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *d
	out.Methods = make([]grpc.MethodDesc, len(d.Methods))
	for i, m := range d.Methods {
		out.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName, Handler: decodingUnary(m.Handler)}
	}
	out.Streams = make([]grpc.StreamDesc, len(d.Streams))
	for i, sd := range d.Streams {
		sd.Handler = decodingStream(sd.Handler)
		out.Streams[i] = sd
	}
	return &out
}

// decodingUnary wraps a generated unary handler: its request is decoded
// through a decodeTarget, and when it does not decode the interceptors
// run with a handler that returns the decode error in place of the
// service's method.
func decodingUnary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		var bad error
		decode := func(m any) error {
			t := &decodeTarget{msg: m.(proto.Message)}
			if err := dec(t); err != nil {
				return err
			}
			bad = t.err
			return nil
		}
		guarded := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if bad != nil {
				handler = func(context.Context, any) (any, error) { return nil, bad }
			}
			return icpt(ctx, req, info, handler)
		}
		return h(srv, ctx, decode, guarded)
	}
}

// decodingStream wraps a generated streaming handler: the messages it
// receives are decoded through decodeTargets, and one that does not decode
// ends the call with the decode error (the stream interceptors see it).
func decodingStream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, stream grpc.ServerStream) error {
		return h(srv, decodingServerStream{stream})
	}
}

type decodingServerStream struct{ grpc.ServerStream }

func (s decodingServerStream) RecvMsg(m any) error {
	t := &decodeTarget{msg: m.(proto.Message)}
	if err := s.ServerStream.RecvMsg(t); err != nil {
		return err
	}
	return t.err
}
