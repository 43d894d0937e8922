package service

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/stats"
)

// connTable tracks the remote listener's open connections and bounds
// them: at most total at once and at most perHost from one address (an
// IPv4 address, or an IPv6 /64). Accept never waits: a connection over its
// host's limit is closed at once, and one past the total takes the place
// of a connection still in its handshake (TLS and the HTTP/2 preface): the
// longest waiting of the host with the most of them (victim). It is closed
// when every open connection has completed its handshake. Together with
// the handshake timeout and the idle timeout this bounds what network
// peers can hold open, and a peer that opens connections from many
// addresses and sends nothing cannot keep a verifier out: its own
// connections are the first to go.
//
// The table also lets the service cut a connection it knows only by the
// RPC context (a stalled stream): the stats handler (connTable.TagConn)
// finds each connection's entry by its remote address when gRPC has
// completed its handshake and puts it in the connection's context.
type connTable struct {
	total, perHost int
	stall          time.Duration // a write that cannot progress this long fails

	mu    sync.Mutex
	conns map[string]*trackedConn // guarded by mu; by remote address
	hosts map[string]int          // guarded by mu; open connections per host

	closedPerHost, evicted, refusedFull, stalled atomic.Uint64
}

func newConnTable(total, perHost int, stall time.Duration) *connTable {
	return &connTable{total: total, perHost: perHost, stall: stall, conns: map[string]*trackedConn{}, hosts: map[string]int{}}
}

// trackedConn is one accepted connection.
type trackedConn struct {
	net.Conn
	t           *connTable
	addr, host  string
	accepted    time.Time
	established atomic.Bool // gRPC has completed its handshake
	once        sync.Once
}

// Close closes the connection and gives its slot back, once.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.t.remove(c) })
	return err
}

// Write fails once it has waited stall for the peer to take the bytes:
// a peer that stops reading does not keep the connection's writer (and
// every stream on the connection) blocked.
func (c *trackedConn) Write(b []byte) (int, error) {
	if c.t.stall > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.t.stall))
	}
	return c.Conn.Write(b)
}

// limitListener applies a connTable to a listener.
type limitListener struct {
	net.Listener
	t *connTable
}

// limitConns bounds ln's connections with t.
func (t *connTable) limit(ln net.Listener) net.Listener { return &limitListener{Listener: ln, t: t} }

// Accept returns the next connection within the limits.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.t.add(c); tc != nil {
			return tc, nil
		}
	}
}

// add registers c, making room if needed, or closes it and returns nil.
func (t *connTable) add(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, t: t, addr: c.RemoteAddr().String(), host: hostKey(c.RemoteAddr()), accepted: time.Now()}
	var evict *trackedConn
	t.mu.Lock()
	switch {
	case t.hosts[tc.host] >= t.perHost:
		t.mu.Unlock()
		t.closedPerHost.Add(1)
		c.Close()
		return nil
	case len(t.conns) >= t.total:
		evict = t.victim(tc.host)
		if evict == nil {
			t.mu.Unlock()
			t.refusedFull.Add(1)
			c.Close()
			return nil
		}
		t.dropLocked(evict)
	}
	if stale := t.conns[tc.addr]; stale != nil {
		// The kernel reused the address of a connection gRPC has not
		// closed yet: it is gone, and its Close will find nothing.
		t.dropLocked(stale)
	}
	t.conns[tc.addr] = tc
	t.hosts[tc.host]++
	t.mu.Unlock()
	if evict != nil {
		t.evicted.Add(1)
		evict.Close()
	}
	return tc
}

// victim is the connection a new one from host takes the place of, or
// nil: among the hosts with connections still in their handshake (the new
// one counted for its host), the one with the most of them, and of those
// its connection that has waited longest. A peer that keeps dialling from
// many addresses then closes its own connections, not a verifier's one
// connection that its churn would otherwise push out before its handshake
// is done. t.mu must be held.
func (t *connTable) victim(host string) *trackedConn {
	pending := map[string]int{host: 1}
	oldest := map[string]*trackedConn{}
	for _, c := range t.conns {
		if c.established.Load() {
			continue
		}
		pending[c.host]++
		if o := oldest[c.host]; o == nil || c.accepted.Before(o.accepted) {
			oldest[c.host] = c
		}
	}
	var v *trackedConn
	most := 0
	for h, c := range oldest {
		if n := pending[h]; n > most || (n == most && c.accepted.Before(v.accepted)) {
			v, most = c, n
		}
	}
	return v
}

// dropLocked forgets c; its Close then finds nothing to give back. t.mu
// must be held.
func (t *connTable) dropLocked(c *trackedConn) {
	if t.conns[c.addr] != c {
		return
	}
	delete(t.conns, c.addr)
	if t.hosts[c.host]--; t.hosts[c.host] <= 0 {
		delete(t.hosts, c.host)
	}
}

func (t *connTable) remove(c *trackedConn) {
	t.mu.Lock()
	t.dropLocked(c)
	t.mu.Unlock()
}

// counts returns the open connections, by whether their handshake is done.
func (t *connTable) counts() (handshaking, established int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		if c.established.Load() {
			established++
		} else {
			handshaking++
		}
	}
	return handshaking, established
}

// hostKey is what MaxConnsPerHost counts by: the IPv4 address, or the
// IPv6 /64 (one host's addresses are cheap within its prefix).
func hostKey(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			return host
		}
		return a.String()
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return (&net.IPNet{IP: ta.IP.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

type connKey struct{}

// connOf returns the connection an RPC arrived on, if the table knows it.
func connOf(ctx context.Context) *trackedConn {
	c, _ := ctx.Value(connKey{}).(*trackedConn)
	return c
}

// cut closes the connection an RPC arrived on: every stream on it ends.
func (t *connTable) cut(ctx context.Context) {
	if c := connOf(ctx); c != nil {
		t.stalled.Add(1)
		c.Close()
	}
}

// TagConn marks a connection's handshake done and puts its entry in the
// connection's context (stats.Handler).
func (t *connTable) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	t.mu.Lock()
	c := t.conns[info.RemoteAddr.String()]
	t.mu.Unlock()
	if c == nil {
		return ctx
	}
	c.established.Store(true)
	return context.WithValue(ctx, connKey{}, c)
}

func (t *connTable) HandleConn(context.Context, stats.ConnStats) {}

func (t *connTable) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (t *connTable) HandleRPC(context.Context, stats.RPCStats) {}
