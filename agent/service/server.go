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
	DefaultActivateRate    = 2.0 // credential activations per second per client
	DefaultActivateBurst   = 10
	// Remote connection limits (Options.MaxRemoteConns and friends).
	DefaultMaxRemoteConns    = 256
	DefaultMaxConnsPerHost   = 16
	DefaultHandshakeTimeout  = 3 * time.Second
	DefaultRemoteIdleTimeout = 5 * time.Minute
	DefaultStallTimeout      = 15 * time.Second
	DefaultRefusalDelay      = 100 * time.Millisecond
	// Remote budgets.
	DefaultMaxRemoteCalls        = 512
	DefaultMaxRemoteCallsPerPeer = 32
	DefaultMaxEventsStreams      = 64
	DefaultMaxEventsPerPeer      = 4
	DefaultMaxQuoteBytes         = 64 << 20
	DefaultMaxQuoteBytesPerPeer  = agent.DefaultMaxQuoteLog
	DefaultIdentityRate          = 10.0 // per second per client
	DefaultIdentityBurst         = 20
	DefaultEnrolRate             = 2.0 // credential activations per second, all clients
	DefaultEnrolBurst            = 10
	DefaultEventsRate            = 2 << 20 // Events bytes per second per client
	DefaultEventsBurst           = 256 << 10
	DefaultEventsRateTotal       = 4 << 20 // Events bytes per second, all clients
	DefaultEventsBurstTotal      = 1 << 20
	// Quote calls in flight are a budget of their own: a waiting quote
	// holds a stream, its handler and a nonce (about 16 KiB), and no TPM
	// time of its own (it shares the next batch's quote). A peer is
	// served about its quote calls in flight per batch period (400 ms
	// with a 200 ms TPM quote at the agent's default TPM share): 1,024,
	// all the streams one address may open (16 connections × 64), serve
	// a verifier host up to about 2,500 requests a second there
	// (docs/threat-model.md, "Budgets").
	DefaultMaxQuoteCalls        = 2048
	DefaultMaxQuoteCallsPerPeer = 1024
	// Local budgets.
	DefaultMaxLocalCalls        = 64
	DefaultMaxLocalCallsPerPeer = 8
	DefaultMaxLocalConns        = 128
	DefaultMaxLocalConnsPerPeer = 16
	DefaultLoadRate             = 10.0 // loads per second per requester
	DefaultLoadBurst            = 20
	DefaultLoadRateTotal        = 50.0 // loads per second, all requesters
	DefaultLoadBurstTotal       = 100
	DefaultLoadReceiveTimeout   = 10 * time.Second
	// remoteMaxStreams bounds the concurrent calls on one remote
	// connection: a verifier needs one or two (a quote, an events stream),
	// an aggregator multiplexing many verifiers on one connection more.
	remoteMaxStreams = 64
	// remoteMaxRecv bounds remote requests: a nonce and two integers.
	remoteMaxRecv = 4 << 10
	// localOverhead is what a LoadRequest adds to its artifact.
	localOverhead = 64 << 10
	// windowSize is each stream's and connection's HTTP/2 receive window
	// (set, it also turns off gRPC's window growth): what a peer may send
	// ahead of what the server has asked to read.
	windowSize = 64 << 10
)

// Options configures the services. The zero value serves root only on the
// local socket, applies the default size, rate and budget limits, and has
// no TLS (callers must then make sure the remote listener is loopback).
// Every limit is per peer (a client certificate's fingerprint, or its IP
// address without mutual TLS; a uid on the local socket) and in total; 0
// means its default.
type Options struct {
	// LocalGroup is the gid whose members may use the local socket besides
	// root; negative serves root only.
	LocalGroup int
	// MaxArtifactSize bounds a Load request's artifact; 0 means
	// DefaultMaxArtifactSize, the most the agent accepts.
	MaxArtifactSize int
	// ActivateRate is each remote client's sustained rate of credential
	// activations per second and ActivateBurst its bucket; 0 means the
	// defaults, a negative rate disables the limit. Quotes have no rate
	// per client: what they cost is the TPM's time, which the agent bounds
	// for all of them together (agent.Config.QuoteTPMShare), coalescing
	// any number of requests into the quotes that share affords.
	ActivateRate  float64
	ActivateBurst int
	// MaxRemoteConns bounds the remote listener's open connections, and
	// MaxConnsPerHost those from one remote address (an IPv6 /64). One
	// past its host's limit is closed at once; one past the total takes
	// the place of the connection that has waited longest for its
	// handshake, or is closed when all have completed theirs.
	MaxRemoteConns, MaxConnsPerHost int
	// HandshakeTimeout bounds a remote connection's TLS handshake (and
	// HTTP/2 preface); RemoteIdleTimeout closes a remote connection that
	// has had no call for that long. 0 means the defaults.
	HandshakeTimeout, RemoteIdleTimeout time.Duration
	// StallTimeout cuts a remote connection whose peer has taken none of
	// what the agent sends for that long: a write to it, or an Events
	// message it does not read.
	StallTimeout time.Duration
	// RefusalDelay is how long a connection is not read after one of its
	// calls was turned away by a budget, before the refusal is answered
	// (admit.go); 0 means the default, a negative value none.
	RefusalDelay time.Duration
	// MaxRemoteCalls and MaxRemoteCallsPerPeer bound the remote calls in
	// flight other than quotes; MaxEventsStreams and MaxEventsPerPeer the
	// Events streams among them. MaxQuoteCalls and MaxQuoteCallsPerPeer
	// bound the Quote calls in flight: a verifier host whose verifiers
	// share one address (a certificate, or an IP without mutual TLS) is one
	// peer, and may have MaxQuoteCallsPerPeer quotes waiting at once.
	MaxRemoteCalls, MaxRemoteCallsPerPeer int
	MaxQuoteCalls, MaxQuoteCallsPerPeer   int
	MaxEventsStreams, MaxEventsPerPeer    int
	// MaxQuoteBytes and MaxQuoteBytesPerPeer bound the log bytes of the
	// quotes being answered. A quote whose log alone is more than a peer
	// may hold is OUT_OF_RANGE (read it with Events).
	MaxQuoteBytes, MaxQuoteBytesPerPeer int64
	// IdentityRate and IdentityBurst bound each remote client's Identity
	// calls; EnrolRate and EnrolBurst all clients' credential activations
	// together (each costs several TPM commands). Negative rates disable
	// the limits.
	IdentityRate  float64
	IdentityBurst int
	EnrolRate     float64
	EnrolBurst    int
	// EventsRate and EventsBurst bound the record bytes each remote
	// client is sent by Events a second, EventsRateTotal and
	// EventsBurstTotal all clients' together: a stream past them waits
	// (it is paced, not refused). Negative rates disable the limits.
	EventsRate       float64
	EventsBurst      int
	EventsRateTotal  float64
	EventsBurstTotal int
	// MaxLocalCalls and MaxLocalCallsPerPeer bound the local calls in
	// flight.
	MaxLocalCalls, MaxLocalCallsPerPeer int
	// MaxLocalConns and MaxLocalConnsPerPeer bound the local socket's
	// connections: one past them is closed at its handshake, before the
	// peer's executable is read.
	MaxLocalConns, MaxLocalConnsPerPeer int
	// MaxLoadBytes and MaxLoadBytesPerPeer bound the bytes of load
	// requests the agent holds: a load takes the largest request's size
	// (MaxArtifactSize plus 64 KiB) before it is read, and keeps its own
	// size once decoded. 0 means three and two largest requests.
	MaxLoadBytes, MaxLoadBytesPerPeer int64
	// LoadRate and LoadBurst bound each requester's loads per second,
	// LoadRateTotal and LoadBurstTotal all requesters' together. Negative
	// rates disable the limits.
	LoadRate       float64
	LoadBurst      int
	LoadRateTotal  float64
	LoadBurstTotal int
	// LoadReceiveTimeout cuts a load request not received in full that
	// long after it began.
	LoadReceiveTimeout time.Duration
	// TLS is the remote service's configuration (see ServerTLS); nil
	// serves without TLS, which only loopback listeners may do.
	TLS *tls.Config
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger
	// Now is the clock of the rate limiters; nil is time.Now.
	Now func() time.Time
}

// withDefaults fills o's zero values.
func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	rate := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxArtifactSize, DefaultMaxArtifactSize)
	rate(&o.ActivateRate, DefaultActivateRate)
	def(&o.ActivateBurst, DefaultActivateBurst)
	def(&o.MaxRemoteConns, DefaultMaxRemoteConns)
	def(&o.MaxConnsPerHost, DefaultMaxConnsPerHost)
	dur(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	dur(&o.RemoteIdleTimeout, DefaultRemoteIdleTimeout)
	dur(&o.StallTimeout, DefaultStallTimeout)
	if o.RefusalDelay == 0 {
		o.RefusalDelay = DefaultRefusalDelay
	}
	def(&o.MaxRemoteCalls, DefaultMaxRemoteCalls)
	def(&o.MaxRemoteCallsPerPeer, DefaultMaxRemoteCallsPerPeer)
	def(&o.MaxQuoteCalls, DefaultMaxQuoteCalls)
	def(&o.MaxQuoteCallsPerPeer, DefaultMaxQuoteCallsPerPeer)
	def(&o.MaxEventsStreams, DefaultMaxEventsStreams)
	def(&o.MaxEventsPerPeer, DefaultMaxEventsPerPeer)
	def64(&o.MaxQuoteBytes, DefaultMaxQuoteBytes)
	def64(&o.MaxQuoteBytesPerPeer, DefaultMaxQuoteBytesPerPeer)
	rate(&o.IdentityRate, DefaultIdentityRate)
	def(&o.IdentityBurst, DefaultIdentityBurst)
	rate(&o.EnrolRate, DefaultEnrolRate)
	def(&o.EnrolBurst, DefaultEnrolBurst)
	rate(&o.EventsRate, DefaultEventsRate)
	def(&o.EventsBurst, DefaultEventsBurst)
	rate(&o.EventsRateTotal, DefaultEventsRateTotal)
	def(&o.EventsBurstTotal, DefaultEventsBurstTotal)
	def(&o.MaxLocalCalls, DefaultMaxLocalCalls)
	def(&o.MaxLocalCallsPerPeer, DefaultMaxLocalCallsPerPeer)
	def(&o.MaxLocalConns, DefaultMaxLocalConns)
	def(&o.MaxLocalConnsPerPeer, DefaultMaxLocalConnsPerPeer)
	maxReq := int64(o.MaxArtifactSize + localOverhead)
	def64(&o.MaxLoadBytes, 3*maxReq)
	def64(&o.MaxLoadBytesPerPeer, 2*maxReq)
	rate(&o.LoadRate, DefaultLoadRate)
	def(&o.LoadBurst, DefaultLoadBurst)
	rate(&o.LoadRateTotal, DefaultLoadRateTotal)
	def(&o.LoadBurstTotal, DefaultLoadBurstTotal)
	dur(&o.LoadReceiveTimeout, DefaultLoadReceiveTimeout)
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Server serves one agent on the local and remote gRPC services and the
// metrics endpoint.
type Server struct {
	agent  *agent.Agent
	opts   Options
	logger *slog.Logger
	local  *grpc.Server
	remote *grpc.Server

	// Budgets (admit.go).
	activateRate               *ratelimit.Limiter // activations per client
	identityRate, enrolRate    *ratelimit.Limiter
	eventsRate, eventsRateAll  *ratelimit.Limiter // Events bytes
	loadRate, loadRateTotal    *ratelimit.Limiter
	remoteCalls, eventsStreams *pool
	quoteCalls, quoteBytes     *pool
	localCalls, loadBytes      *pool
	localConns                 *pool      // the local socket's connections
	conns                      *connTable // the remote listener's connections
	rateLimited                *prometheus.CounterVec

	registry *prometheus.Registry // the metrics endpoint's

	quit     chan struct{} // closed by Shutdown: ends following Events streams
	quitOnce sync.Once
}

// New builds the servers of a. It opens nothing; Serve* do.
func New(a *agent.Agent, opts Options) *Server {
	opts = opts.withDefaults()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	maxReq := int64(opts.MaxArtifactSize + localOverhead)
	s := &Server{
		agent:         a,
		opts:          opts,
		logger:        logger,
		activateRate:  ratelimit.New(opts.ActivateRate, opts.ActivateBurst, opts.Now),
		identityRate:  ratelimit.New(opts.IdentityRate, opts.IdentityBurst, opts.Now),
		enrolRate:     ratelimit.New(opts.EnrolRate, opts.EnrolBurst, opts.Now),
		eventsRate:    ratelimit.New(opts.EventsRate, opts.EventsBurst, opts.Now),
		eventsRateAll: ratelimit.New(opts.EventsRateTotal, opts.EventsBurstTotal, opts.Now),
		loadRate:      ratelimit.New(opts.LoadRate, opts.LoadBurst, opts.Now),
		loadRateTotal: ratelimit.New(opts.LoadRateTotal, opts.LoadBurstTotal, opts.Now),
		remoteCalls:   newPool("remote_calls", "calls", int64(opts.MaxRemoteCalls), int64(opts.MaxRemoteCallsPerPeer)),
		eventsStreams: newPool("events_streams", "streams", int64(opts.MaxEventsStreams), int64(opts.MaxEventsPerPeer)),
		quoteCalls:    newPool("quote_calls", "calls", int64(opts.MaxQuoteCalls), int64(opts.MaxQuoteCallsPerPeer)),
		quoteBytes:    newPool("quote_bytes", "bytes", max(opts.MaxQuoteBytes, opts.MaxQuoteBytesPerPeer), opts.MaxQuoteBytesPerPeer),
		localCalls:    newPool("local_calls", "calls", int64(opts.MaxLocalCalls), int64(opts.MaxLocalCallsPerPeer)),
		localConns:    newPool("local_conns", "connections", int64(opts.MaxLocalConns), int64(opts.MaxLocalConnsPerPeer)),
		loadBytes:     newPool("load_bytes", "bytes", max(opts.MaxLoadBytes, maxReq), max(opts.MaxLoadBytesPerPeer, maxReq)),
		conns:         newConnTable(opts.MaxRemoteConns, opts.MaxConnsPerHost, opts.StallTimeout),
		quit:          make(chan struct{}),
	}
	// Root is held to its own share of the local budgets, never locked
	// out by what the group's members hold together.
	s.localCalls.exempt, s.loadBytes.exempt, s.localConns.exempt = rootPeer, rootPeer, rootPeer
	var rpc *rpcMetrics
	s.registry, rpc = newRegistry(a)
	s.rateLimited = newRateLimitedCounter()
	s.registry.MustRegister(s.rateLimited, newBudgetCollector(s))
	s.local = grpc.NewServer(
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.Creds(newPeerCredentials(opts.LocalGroup, s.localConns, logger)),
		grpc.MaxRecvMsgSize(opts.MaxArtifactSize+localOverhead),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.InTapHandle(s.localTap),
		grpc.ChainUnaryInterceptor(rpc.unary, s.unaryErrors, s.unaryLocalAuth, s.unaryBudget),
		grpc.ChainStreamInterceptor(streamRefused, rpc.stream, s.streamErrors, s.streamLocalAuth, s.streamBudget),
	)
	s.local.RegisterService(refusedUnary(decodingServiceDesc(&pb.LocalService_ServiceDesc)), &localService{s: s})

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
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: opts.RemoteIdleTimeout}),
		grpc.StatsHandler(s.conns),
		grpc.InTapHandle(s.remoteTap),
		grpc.ChainUnaryInterceptor(rpc.unary, s.unaryErrors, s.unaryBudget),
		grpc.ChainStreamInterceptor(streamRefused, rpc.stream, s.streamErrors, s.streamBudget),
	)
	s.remote.RegisterService(refusedUnary(decodingServiceDesc(&pb.AttestationService_ServiceDesc)), &remoteService{s: s})
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
	return serve(s.remote, s.conns.limit(ln))
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
