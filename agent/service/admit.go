package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Admission. Every RPC is admitted, or turned away with RESOURCE_EXHAUSTED,
// by the servers' tap handles: gRPC calls them when a stream opens, before
// it reads the request or starts a handler, so nothing is read, decoded,
// measured or asked of the TPM for a request over a budget. An admitted
// RPC holds its share of the budgets (callBudget) until its stream has
// ended and its handler returned. The budgets, per peer and in total:
//
//   - remote: quote calls in flight, other calls in flight, Events
//     streams in flight, Identity calls per second; in the handlers,
//     credential activations per second (per peer, and for all peers
//     together), and the log bytes of quotes being answered. Quotes have
//     no rate per peer: the agent bounds the TPM time of all quotes
//     together (agent.Config.QuoteTPMShare) and coalesces every request
//     into them;
//   - local: calls in flight, loads per second (per requester and in
//     total; root is held to its own share only, never to the totals
//     the group's members share), and the bytes of load requests held: a load takes the
//     largest request's size when it opens, before a byte of it is read,
//     and keeps only its own size once it is decoded. A load turned away
//     is counted in the log (agent.CountThrottled).
//
// A peer is its client certificate's fingerprint under mutual TLS, its IP
// address otherwise (clientKey); on the local socket, its uid.
//
// A refusal with a deadline. gRPC makes a stream's context before the tap
// sees the stream, with a timer for the deadline the client sent
// (grpc-timeout), and when the tap refuses the stream it does not cancel
// that context (grpc-go 1.85, http2Server.operateHeaders): the context
// and its running timer stay until the client's deadline, which the
// client chooses, and at that deadline the timer starts a goroutine. A
// client refused 100,000 times with one deadline held 100,000 contexts
// and then started 100,000 goroutines at once (issue 16's harness: 250
// MiB of stacks). So a tap refuses a stream that has a deadline by
// admitting it with its refusal attached (refuseStream): the service
// answers it with that refusal before anything else runs or a byte of its
// request is read (refusedUnary, streamRefused), and gRPC ends the stream
// as any other, cancelling its context and stopping the timer. What such a
// stream holds meanwhile is gRPC's, bounded per connection: its request
// bytes within the connection's receive window (windowSize) and, on the
// remote API, a slot of the connection's concurrent streams. A stream
// without a deadline is refused by the tap itself: its context has no
// timer and nothing refers to it.

// errReceiveTimeout cuts a load request not received in time.
var errReceiveTimeout = errors.New("load request not received in time")

// refuse turns an admission error into a RESOURCE_EXHAUSTED status.
func refuse(err error) error { return status.Error(codes.ResourceExhausted, err.Error()) }

// A refusal's delay. A tap runs in the goroutine that reads its
// connection, so while it waits nothing more is read from that connection.
// A refused stream is answered after RefusalDelay: a client that asks
// again at once, as a flood does, is then answered at most 1/RefusalDelay
// times a second per connection instead of as fast as the agent's CPU
// allows (issue 16's 64 local loaders were turned away 4,400 times a
// second, 16 KiB requests each, and the reading of them took most of the
// agent's CPU). The wait holds nothing but that connection's reader; a
// well-behaved client, which waits before it tries again (`bpfattest load
// --wait`), loses RefusalDelay once.

// refuseStream is refuseStream after the refusal delay (or until the
// stream or the server ends).
func (s *Server) refuseStream(ctx context.Context, err error) (context.Context, error) {
	if d := s.opts.RefusalDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-s.quit:
		}
		t.Stop()
	}
	return refuseStream(ctx, err)
}

// refusalKey holds, in an admitted stream's context, the refusal the
// service answers it with (refuseStream).
type refusalKey struct{}

// refuseStream is what a tap returns for a stream it turns away with err:
// the refusal itself, or, for a stream with a deadline, the stream
// admitted with the refusal attached.
func refuseStream(ctx context.Context, err error) (context.Context, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, refuse(err)
	}
	return context.WithValue(ctx, refusalKey{}, refuse(err)), nil
}

// refusalOf is the refusal attached to a stream's context, or nil.
func refusalOf(ctx context.Context) error {
	err, _ := ctx.Value(refusalKey{}).(error)
	return err
}

// refusedUnary answers a refused unary call with its refusal before its
// request is read (the method handler reads it) or an interceptor runs.
func refusedUnary(d *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *d
	out.Methods = make([]grpc.MethodDesc, len(d.Methods))
	for i, m := range d.Methods {
		h := m.Handler
		out.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName, Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			if err := refusalOf(ctx); err != nil {
				return nil, err
			}
			return h(srv, ctx, dec, icpt)
		}}
	}
	return &out
}

// streamRefused, the first stream interceptor, answers a refused stream
// with its refusal before anything else runs.
func streamRefused(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := refusalOf(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// remoteTap admits a remote RPC.
func (s *Server) remoteTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	peer := clientKey(ctx)
	b := &callBudget{}
	take := func(p *pool, n int64) error {
		g, err := p.take(peer, n)
		if err == nil {
			b.grants = append(b.grants, g)
		}
		return err
	}
	// Quotes wait for a batch in a budget of their own (quote_calls), so
	// that many verifiers behind one address fit, and a peer's quotes and
	// its other calls do not crowd each other out.
	calls := s.remoteCalls
	if info.FullMethodName == pb.AttestationService_Quote_FullMethodName {
		calls = s.quoteCalls
	}
	if err := take(calls, 1); err != nil {
		return s.refuseStream(ctx, err)
	}
	switch info.FullMethodName {
	case pb.AttestationService_Events_FullMethodName:
		if err := take(s.eventsStreams, 1); err != nil {
			b.releaseAll()
			return s.refuseStream(ctx, err)
		}
	case pb.AttestationService_Identity_FullMethodName:
		if !s.identityRate.Allow(peer) {
			b.releaseAll()
			s.rateLimited.WithLabelValues("identity").Inc()
			return s.refuseStream(ctx, fmt.Errorf("%w: identity: %s asks more than %g a second", ErrBudget, peer, s.opts.IdentityRate))
		}
	}
	return b.attach(ctx), nil
}

// localTap admits a local RPC. Peers the service refuses are let through
// to the interceptor that answers PermissionDenied.
func (s *Server) localTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	pc, ok := peerCredOf(ctx)
	if !ok || !pc.Allowed {
		return ctx, nil
	}
	peer := localPeerKey(pc.UID)
	b := &callBudget{}
	g, err := s.localCalls.take(peer, 1)
	if err != nil {
		if info.FullMethodName == pb.LocalService_Load_FullMethodName {
			s.agent.CountThrottled(pc.UID, pc.GID)
		}
		return s.refuseStream(ctx, err)
	}
	b.grants = append(b.grants, g)
	if info.FullMethodName != pb.LocalService_Load_FullMethodName {
		return b.attach(ctx), nil
	}
	throttle := func(err error) (context.Context, error) {
		b.releaseAll()
		s.agent.CountThrottled(pc.UID, pc.GID)
		return s.refuseStream(ctx, err)
	}
	switch {
	case !s.loadRate.Allow(peer):
		s.rateLimited.WithLabelValues("load").Inc()
		return throttle(fmt.Errorf("%w: load: %s asks more than %g a second", ErrBudget, peer, s.opts.LoadRate))
	case peer != rootPeer && !s.loadRateTotal.Allow("all"):
		s.rateLimited.WithLabelValues("load_total").Inc()
		return throttle(fmt.Errorf("%w: load: all requesters ask more than %g a second", ErrBudget, s.opts.LoadRateTotal))
	}
	bg, err := s.loadBytes.take(peer, int64(s.maxLoadRequest()))
	if err != nil {
		return throttle(err)
	}
	b.grants = append(b.grants, bg)
	b.bytes = bg
	ctx = b.attach(ctx)
	t := time.AfterFunc(s.opts.LoadReceiveTimeout, func() { b.cancel(errReceiveTimeout) })
	b.received = t.Stop
	return ctx, nil
}

// localPeerKey names a local peer in the budgets: its uid.
func localPeerKey(uid uint32) string { return fmt.Sprintf("uid:%d", uid) }

// rootPeer is root on the local socket: held to its own share of the
// local budgets (per-peer calls, bytes and load rate) but not to the
// totals, which the group's members share, so that they cannot lock the
// host's administrator out. Root's share adds to the totals' bound.
var rootPeer = localPeerKey(0)

// maxLoadRequest is the largest load request the local server reads.
func (s *Server) maxLoadRequest() int { return s.opts.MaxArtifactSize + localOverhead }

// unaryBudget holds an RPC's budget while its handler runs; a handler
// whose stream has already ended does not run.
func (s *Server) unaryBudget(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	b := budgetOf(ctx)
	if b == nil {
		return h(ctx, req)
	}
	if !b.enter() {
		return nil, fmt.Errorf("%s: %w", info.FullMethod, context.Cause(ctx))
	}
	defer b.exit()
	return h(ctx, req)
}

func (s *Server) streamBudget(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	b := budgetOf(ss.Context())
	if b == nil {
		return h(srv, ss)
	}
	if !b.enter() {
		return fmt.Errorf("%s: %w", info.FullMethod, context.Cause(ss.Context()))
	}
	defer b.exit()
	return h(srv, ss)
}
