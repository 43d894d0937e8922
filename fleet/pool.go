package fleet

import (
	"errors"
	"sync"

	"google.golang.org/grpc"

	"github.com/bpfattest/bpfattest/fleet/store"
)

// pool keeps one gRPC connection per pull agent across rounds: gRPC
// reconnects it when the agent comes back, and the TLS handshake happens
// once per connection, not per verification. A connection is replaced
// when the agent's address or TLS identity changes, and closed when the
// agent is deleted.
type pool struct {
	dial  func(a *store.Agent) (*grpc.ClientConn, error)
	mu    sync.Mutex
	conns map[string]pooled // guarded by mu
	dials int               // guarded by mu
}

type pooled struct {
	key  string
	conn *grpc.ClientConn
}

func newPool(dial func(a *store.Agent) (*grpc.ClientConn, error)) *pool {
	return &pool{dial: dial, conns: map[string]pooled{}}
}

// connKey is what a connection depends on.
func connKey(a *store.Agent) string {
	return a.Address + "\x00" + a.ServerName + "\x00" + a.CertSHA256
}

// get returns the agent's connection, dialling it when there is none or
// the agent moved.
func (p *pool) get(a *store.Agent) (*grpc.ClientConn, error) {
	if p.dial == nil {
		return nil, errors.New("no dialer for pull agents")
	}
	key := connKey(a)
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[a.Name]; ok {
		if c.key == key {
			return c.conn, nil
		}
		c.conn.Close()
		delete(p.conns, a.Name)
	}
	conn, err := p.dial(a)
	if err != nil {
		return nil, err
	}
	p.dials++
	p.conns[a.Name] = pooled{key, conn}
	return conn, nil
}

// drop closes an agent's connection.
func (p *pool) drop(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[name]; ok {
		c.conn.Close()
		delete(p.conns, name)
	}
}

// size returns the open connections and how many were ever dialled.
func (p *pool) size() (open, dials int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns), p.dials
}

func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, c := range p.conns {
		c.conn.Close()
		delete(p.conns, name)
	}
}
