package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/fleet/store"
	"github.com/bpfattest/bpfattest/verifier"
)

// Config configures a Service. Zero values take the defaults named.
type Config struct {
	// Store is the service's memory (required).
	Store store.Store
	// Replica names this service node in leases and history rows;
	// default: a random name.
	Replica string
	// Interval is how often each agent is verified (default 60 s);
	// Jitter spreads the due times by ± this fraction of it (default
	// 0.1; negative: none).
	Interval time.Duration
	Jitter   float64
	// Timeout bounds one agent's verification (default 30 s, at most the
	// interval); Lease is how long a claimed agent stays leased (default
	// Timeout + 5 s): a replica that dies holding leases loses them
	// after that.
	Timeout time.Duration
	Lease   time.Duration
	// Concurrency is how many agents one node verifies at once (default
	// 64).
	Concurrency int
	// MaxBackoff caps the delay before an unreachable agent is tried
	// again, which doubles from Interval with each failure (default 10
	// min).
	MaxBackoff time.Duration
	// Poll is how often the scheduler looks for due agents when it has
	// nothing to do (default Interval/20, at most 1 s).
	Poll time.Duration
	// PushGrace: a push agent that has not pushed this long after it was
	// due is judged unreachable (default one Interval).
	PushGrace time.Duration
	// Dial connects to a pull agent's remote API; connections are kept
	// and reused across rounds (one TLS handshake per agent, not per
	// round). Required for pull agents.
	Dial func(a *store.Agent) (*grpc.ClientConn, error)
	// TOFU pins the AK an agent registered without one presents at first
	// contact. Without it such agents cannot be verified.
	TOFU bool
	// DefaultPolicy names the policy of agents registered without one
	// (default "default"); an agent whose policy does not exist is
	// could-not-verify.
	DefaultPolicy string
	// Webhooks receive the alerting transitions, signed with
	// WebhookSecret (HMAC-SHA256); WebhookAttempts bounds the attempts
	// of one delivery (default 20) and WebhookTimeout one attempt
	// (default 10 s).
	Webhooks        []string
	WebhookSecret   []byte
	WebhookAttempts int
	WebhookTimeout  time.Duration
	// RoundRetention and TransitionRetention bound how long history rows
	// are kept: rounds that changed nothing (default 1 h) and transitions
	// (default 90 days).
	RoundRetention      time.Duration
	TransitionRetention time.Duration
	// Registerer receives the service's metrics (nil: none).
	Registerer prometheus.Registerer
	// Logger (nil: discard).
	Logger *slog.Logger
}

// Limits of what the service accepts.
const (
	// MaxReasonLen bounds a verdict's stored reason text.
	MaxReasonLen = 4 << 10
	// DefaultPolicyName is the policy agents get when registered without
	// one.
	DefaultPolicyName = "default"
)

func (c *Config) setDefaults() error {
	if c.Store == nil {
		return errors.New("fleet: no store")
	}
	if c.Replica == "" {
		var b [6]byte
		rand.Read(b[:])
		c.Replica = "replica-" + hex.EncodeToString(b[:])
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Interval, time.Minute)
	def(&c.Timeout, min(30*time.Second, c.Interval))
	def(&c.Lease, c.Timeout+5*time.Second)
	def(&c.MaxBackoff, 10*time.Minute)
	def(&c.Poll, min(time.Second, c.Interval/20))
	def(&c.PushGrace, c.Interval)
	def(&c.WebhookTimeout, 10*time.Second)
	def(&c.RoundRetention, time.Hour)
	def(&c.TransitionRetention, 90*24*time.Hour)
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	if c.Jitter > 0.5 {
		return fmt.Errorf("fleet: jitter %v, at most 0.5", c.Jitter)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.WebhookAttempts <= 0 {
		c.WebhookAttempts = 20
	}
	if c.DefaultPolicy == "" {
		c.DefaultPolicy = DefaultPolicyName
	}
	if c.Lease <= c.Timeout {
		return fmt.Errorf("fleet: lease %v must be longer than the timeout %v", c.Lease, c.Timeout)
	}
	for _, u := range c.Webhooks {
		if err := checkWebhookURL(u); err != nil {
			return err
		}
	}
	if len(c.Webhooks) > 0 && len(c.WebhookSecret) < 16 {
		return errors.New("fleet: webhooks need a secret of at least 16 bytes")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func checkWebhookURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("fleet: webhook %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("fleet: webhook %q: want an http or https URL", s)
	}
	return nil
}

// Service is the fleet attestation service: it keeps every registered
// agent verified on schedule, judges pushed evidence, remembers verdicts
// and their history, and announces transitions to webhooks.
type Service struct {
	cfg     Config
	st      store.Store
	log     *slog.Logger
	pool    *pool
	metrics *metrics
	http    *http.Client

	policies policyCache
	states   stateCache

	mu      sync.Mutex
	closed  bool          // guarded by mu
	running chan struct{} // guarded by mu; closed when Run returns
}

// New returns a Service; Run starts its work.
func New(cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Service{
		cfg:  cfg,
		st:   cfg.Store,
		log:  cfg.Logger.With("replica", cfg.Replica),
		pool: newPool(cfg.Dial),
		http: &http.Client{
			Timeout: cfg.WebhookTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	s.policies.init()
	s.states.init()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// Replica returns the service node's name.
func (s *Service) Replica() string { return s.cfg.Replica }

// Interval returns the verification interval.
func (s *Service) Interval() time.Duration { return s.cfg.Interval }

// Run verifies agents, delivers webhooks and prunes the history until ctx
// is done, then gives up its leases and closes its agent connections.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || s.running != nil {
		s.mu.Unlock()
		return errors.New("fleet: Run called twice")
	}
	s.running = make(chan struct{})
	s.mu.Unlock()
	defer close(s.running)
	var wg sync.WaitGroup
	wg.Go(func() { s.schedule(ctx) })
	wg.Go(func() { s.deliver(ctx) })
	wg.Go(func() { s.maintain(ctx) })
	wg.Wait()
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.st.Release(rctx, s.cfg.Replica)
	s.pool.closeAll()
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	return nil
}

// schedule claims due agents while workers are free and verifies them.
func (s *Service) schedule(ctx context.Context) {
	sem := make(chan struct{}, s.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		free := s.cfg.Concurrency - len(sem)
		var claimed int
		if free > 0 {
			agents, err := s.st.Claim(ctx, store.ClaimRequest{Owner: s.cfg.Replica, Now: time.Now(), Lease: s.cfg.Lease,
				Limit: free, PushGrace: s.cfg.PushGrace})
			if err != nil && ctx.Err() == nil {
				s.log.Warn("claim", "err", err)
			}
			claimed = len(agents)
			for _, a := range agents {
				sem <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-sem
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					s.verify(ctx, a)
				})
			}
		}
		if claimed > 0 && claimed == free {
			continue // more may be due
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-freed:
			if free > 0 {
				// Workers were free already: wait for the poll.
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}
	}
}

// nextDue is when an agent verified (or tried) at now is due again:
// Interval later (doubling per consecutive failure up to MaxBackoff),
// spread by the jitter.
func (s *Service) nextDue(now time.Time, failures int) time.Time {
	d := s.cfg.Interval
	if failures > 0 {
		f := math.Pow(2, float64(min(failures-1, 30)))
		d = time.Duration(min(float64(s.cfg.Interval)*f, float64(s.cfg.MaxBackoff)))
		d = max(d, s.cfg.Interval)
	}
	if j := s.cfg.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*mrand.Float64()-1)))
	}
	return now.Add(d)
}

// FirstDue spreads newly registered agents over one interval.
func (s *Service) firstDue(now time.Time) time.Time {
	return now.Add(time.Duration(mrand.Int64N(int64(s.cfg.Interval))))
}

// alert decides which transitions webhooks hear of: every change of
// status, except a first verdict that is compliant.
func alert(prev, next string) bool {
	return prev != next && !(prev == "" && next == verifier.StatusCompliant)
}

// policyCache keeps parsed policies by name and version; the latest
// version of a name is looked up again after policyTTL.
type policyCache struct {
	mu     sync.Mutex
	parsed map[policyKey]*attest.Policy // guarded by mu
	latest map[string]latestPolicy      // guarded by mu
}

type policyKey struct {
	name    string
	version int
}

type latestPolicy struct {
	version int
	at      time.Time
}

// policyTTL is how long a policy name's latest version is trusted before
// the store is asked again: a new policy version applies within it.
const policyTTL = 2 * time.Second

func (c *policyCache) init() {
	c.parsed = map[policyKey]*attest.Policy{}
	c.latest = map[string]latestPolicy{}
}

// policy returns the latest version of the named policy, parsed.
func (s *Service) policy(ctx context.Context, name string) (*attest.Policy, int, error) {
	if name == "" {
		name = s.cfg.DefaultPolicy
	}
	c := &s.policies
	now := time.Now()
	c.mu.Lock()
	if l, ok := c.latest[name]; ok && now.Sub(l.at) < policyTTL {
		p := c.parsed[policyKey{name, l.version}]
		c.mu.Unlock()
		return p, l.version, nil
	}
	c.mu.Unlock()
	sp, err := s.st.Policy(ctx, name, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("policy %q: %w", name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := policyKey{name, sp.Version}
	p, ok := c.parsed[key]
	if !ok {
		if p, err = attest.ParsePolicy(sp.Body); err != nil {
			return nil, 0, fmt.Errorf("policy %q version %d: %w", name, sp.Version, err)
		}
		c.parsed[key] = p
	}
	c.latest[name] = latestPolicy{sp.Version, now}
	return p, sp.Version, nil
}

// stateCache keeps the decoded State of each agent's latest version, so
// that a node verifying the same agent again neither decodes its State
// nor parses its AK again. Safe across replicas: a State is immutable and
// its version names it.
type stateCache struct {
	mu sync.Mutex
	m  map[string]cachedState // guarded by mu
}

type cachedState struct {
	version int64
	state   *attest.State
}

func (c *stateCache) init() { c.m = map[string]cachedState{} }

// state returns the agent's State, decoded (nil before its first
// verification).
func (s *Service) state(a *store.Agent) (*attest.State, error) {
	if a.State == nil {
		return nil, nil
	}
	c := &s.states
	c.mu.Lock()
	e, ok := c.m[a.Name]
	c.mu.Unlock()
	if ok && e.version == a.StateVersion {
		return e.state, nil
	}
	var st attest.State
	if err := st.UnmarshalBinary(a.State); err != nil {
		return nil, fmt.Errorf("stored state of %s: %w", a.Name, err)
	}
	return &st, nil
}

func (s *Service) keepState(name string, version int64, st *attest.State) {
	c := &s.states
	c.mu.Lock()
	defer c.mu.Unlock()
	if st == nil {
		delete(c.m, name)
		return
	}
	c.m[name] = cachedState{version, st}
}
