package service

import (
	"net"
	"sync"
)

// connLimitListener bounds the remote listener's open connections: at
// most total at once (Accept waits for one to close, so the rest queue in
// the kernel's backlog), and at most perHost from one remote address (the
// one past it is closed at once). Together with the handshake timeout
// and the idle timeout this bounds what network peers can hold open,
// whether or not they ever complete a TLS handshake.
type connLimitListener struct {
	net.Listener
	total   chan struct{} // one token per open connection
	perHost int
	closed  chan struct{} // closed by Close: a waiting Accept returns
	once    sync.Once

	mu    sync.Mutex
	hosts map[string]int // open connections per remote host
}

func limitConns(ln net.Listener, total, perHost int) *connLimitListener {
	return &connLimitListener{Listener: ln, total: make(chan struct{}, total), perHost: perHost,
		closed: make(chan struct{}), hosts: map[string]int{}}
}

// Close closes the listener and ends an Accept waiting for a token.
func (l *connLimitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// Accept returns the next connection within the limits. A connection
// over its host's limit is closed without a byte read and not returned.
func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.total <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.total
			return nil, err
		}
		host := remoteHost(c)
		l.mu.Lock()
		over := l.hosts[host] >= l.perHost
		if !over {
			l.hosts[host]++
		}
		l.mu.Unlock()
		if over {
			c.Close()
			<-l.total
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(host) }}, nil
	}
}

func (l *connLimitListener) release(host string) {
	l.mu.Lock()
	if l.hosts[host]--; l.hosts[host] <= 0 {
		delete(l.hosts, host)
	}
	l.mu.Unlock()
	<-l.total
}

// remoteHost is the address a connection comes from, without the port.
func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// limitedConn gives its token back on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
