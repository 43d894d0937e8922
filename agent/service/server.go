package service

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/ratelimit"
	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// Defaults of Options.
const (
	DefaultMaxArtifactSize = agent.MaxArtifactSize
	DefaultQuoteRate       = 2.0 // quotes per second per client
	DefaultQuoteBurst      = 10
	// Remote connection limits (Options.MaxRemoteConns and friends).
	DefaultMaxRemoteConns    = 256
	DefaultMaxConnsPerHost   = 16
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultRemoteIdleTimeout = 5 * time.Minute
	// remoteMaxStreams bounds the concurrent calls on one remote
	// connection: a verifier needs one or two (a quote, an events stream),
	// an aggregator multiplexing many verifiers on one connection more.
	remoteMaxStreams = 64
	// remoteMaxRecv bounds remote requests: a nonce and two integers.
	remoteMaxRecv = 4 << 10
	// localOverhead is what a LoadRequest adds to its artifact.
	localOverhead = 64 << 10
)

// Options configures the services. The zero value serves root only on the
// local socket, applies the default size and rate limits, and has no TLS
// (callers must then make sure the remote listener is loopback).
type Options struct {
	// LocalGroup is the gid whose members may use the local socket besides
	// root; negative serves root only.
	LocalGroup int
	// MaxArtifactSize bounds a Load request's artifact; 0 means
	// DefaultMaxArtifactSize, the most the agent accepts.
	MaxArtifactSize int
	// QuoteRate is each remote client's sustained quote rate per second and
	// QuoteBurst its bucket; 0 means the defaults, a negative rate disables
	// the limit.
	QuoteRate  float64
	QuoteBurst int
	// MaxRemoteConns bounds the remote listener's open connections, and
	// MaxConnsPerHost those from one remote address; 0 means the defaults.
	// A connection past the total waits in the kernel's backlog; one past
	// its host's limit is closed at once.
	MaxRemoteConns, MaxConnsPerHost int
	// HandshakeTimeout bounds a remote connection's TLS handshake (and
	// HTTP/2 preface); RemoteIdleTimeout closes a remote connection that
	// has had no call for that long. 0 means the defaults.
	HandshakeTimeout, RemoteIdleTimeout time.Duration
	// TLS is the remote service's configuration (see ServerTLS); nil
	// serves without TLS, which only loopback listeners may do.
	TLS *tls.Config
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger
	// Now is the clock of the rate limiter; nil is time.Now.
	Now func() time.Time
}

// Server serves one agent on the local and remote gRPC services and the
// metrics endpoint.
type Server struct {
	agent   *agent.Agent
	opts    Options
	logger  *slog.Logger
	limiter *ratelimit.Limiter
	local   *grpc.Server
	remote  *grpc.Server

	registry *prometheus.Registry // the metrics endpoint's

	quit     chan struct{} // closed by Shutdown: ends following Events streams
	quitOnce sync.Once
}

// New builds the servers of a. It opens nothing; Serve* do.
func New(a *agent.Agent, opts Options) *Server {
	if opts.MaxArtifactSize <= 0 {
		opts.MaxArtifactSize = DefaultMaxArtifactSize
	}
	if opts.QuoteRate == 0 {
		opts.QuoteRate = DefaultQuoteRate
	}
	if opts.QuoteBurst <= 0 {
		opts.QuoteBurst = DefaultQuoteBurst
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxRemoteConns <= 0 {
		opts.MaxRemoteConns = DefaultMaxRemoteConns
	}
	if opts.MaxConnsPerHost <= 0 {
		opts.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.RemoteIdleTimeout <= 0 {
		opts.RemoteIdleTimeout = DefaultRemoteIdleTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		agent:   a,
		opts:    opts,
		logger:  logger,
		limiter: ratelimit.New(opts.QuoteRate, opts.QuoteBurst, opts.Now),
		quit:    make(chan struct{}),
	}
	var rpc *rpcMetrics
	s.registry, rpc = newRegistry(a)
	s.local = grpc.NewServer(
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.Creds(newPeerCredentials(opts.LocalGroup, logger)),
		grpc.MaxRecvMsgSize(opts.MaxArtifactSize+localOverhead),
		grpc.ChainUnaryInterceptor(rpc.unary, s.unaryErrors, s.unaryLocalAuth),
		grpc.ChainStreamInterceptor(rpc.stream, s.streamErrors, s.streamLocalAuth),
	)
	s.local.RegisterService(decodingServiceDesc(&pb.LocalService_ServiceDesc), &localService{s: s})

	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	s.remote = grpc.NewServer(
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(remoteMaxRecv),
		grpc.ConnectionTimeout(opts.HandshakeTimeout),
		grpc.MaxConcurrentStreams(remoteMaxStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: opts.RemoteIdleTimeout}),
		grpc.ChainUnaryInterceptor(rpc.unary, s.unaryErrors),
		grpc.ChainStreamInterceptor(rpc.stream, s.streamErrors),
	)
	s.remote.RegisterService(decodingServiceDesc(&pb.AttestationService_ServiceDesc), &remoteService{s: s})
	return s
}

// ServeLocal serves LocalService on ln (a unix socket, see ListenUnix)
// until Shutdown.
func (s *Server) ServeLocal(ln net.Listener) error { return serve(s.local, ln) }

// ServeRemote serves AttestationService on ln until Shutdown, within the
// connection limits of Options. Without TLS it refuses a listener that is
// not on a loopback address.
func (s *Server) ServeRemote(ln net.Listener) error {
	if s.opts.TLS == nil {
		if err := CheckLoopback(ln.Addr().String()); err != nil {
			return err
		}
	}
	return serve(s.remote, limitConns(ln, s.opts.MaxRemoteConns, s.opts.MaxConnsPerHost))
}

func serve(g *grpc.Server, ln net.Listener) error {
	err := g.Serve(ln)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}

// Shutdown ends following Events streams, stops accepting, and waits for
// running RPCs until ctx is done, then cuts the rest off.
func (s *Server) Shutdown(ctx context.Context) {
	s.quitOnce.Do(func() { close(s.quit) })
	var wg sync.WaitGroup
	for _, g := range []*grpc.Server{s.local, s.remote} {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				g.Stop()
				<-done
			}
		})
	}
	wg.Wait()
}
