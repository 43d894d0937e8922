package service

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// remoteWithLimits serves a real agent's remote API on loopback with opts.
func remoteWithLimits(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := newTestServer(t, opts)
	return s, serveRemote(t, s)
}

// serveRemote serves s's remote API on a loopback port until the test
// ends, and returns the address.
func serveRemote(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeRemote(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeRemote: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeRemote did not return after Shutdown")
		}
	})
	return ln.Addr().String()
}

// rawConn opens a TCP connection from the loopback address from that sends
// nothing: a peer that never starts a handshake.
func rawConn(t *testing.T, from, to string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within wait: reading
// (whatever the server sends, such as its HTTP/2 settings) ends in EOF or
// a reset, not in the read deadline.
func closedByServer(t *testing.T, c net.Conn, wait time.Duration) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	return err == nil || errors.Is(err, syscall.ECONNRESET) // io.Copy reports EOF as nil
}

func identityClient(t *testing.T, addr string) pb.AttestationServiceClient {
	t.Helper()
	c, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return pb.NewAttestationServiceClient(c)
}

// TestRemoteConnsPerHost: a host's connections past MaxConnsPerHost are
// closed at once, and connections that never complete a handshake are
// closed after HandshakeTimeout, which frees the host's slots for a real
// verifier.
func TestRemoteConnsPerHost(t *testing.T) {
	_, addr := remoteWithLimits(t, Options{MaxConnsPerHost: 3, HandshakeTimeout: 2 * time.Second})
	var silent []net.Conn
	for range 3 {
		silent = append(silent, rawConn(t, "127.0.0.1", addr))
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
	over := rawConn(t, "127.0.0.1", addr)
	if !closedByServer(t, over, time.Second) {
		t.Fatal("a fourth connection from one host was not closed at once")
	}
	if other := rawConn(t, "127.0.0.2", addr); closedByServer(t, other, 200*time.Millisecond) {
		t.Fatal("another host's first connection was closed")
	}
	for i, c := range silent {
		if !closedByServer(t, c, 15*time.Second) {
			t.Fatalf("silent connection %d still open long after the handshake timeout", i)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := identityClient(t, addr).Identity(ctx, &pb.IdentityRequest{}); err != nil {
		t.Fatalf("a verifier after the silent peers were cut off: %v", err)
	}
}

// TestRemoteConnsEvict: past MaxRemoteConns a new connection takes the
// place of the one that has waited longest for its handshake: silent
// connections cannot keep a verifier out, and Accept never waits.
func TestRemoteConnsEvict(t *testing.T) {
	s, addr := remoteWithLimits(t, Options{MaxRemoteConns: 2, HandshakeTimeout: time.Minute})
	oldest := rawConn(t, "127.0.0.2", addr)
	time.Sleep(50 * time.Millisecond) // accepted in this order
	newer := rawConn(t, "127.0.0.3", addr)
	waitConns(t, s, 2)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := identityClient(t, addr).Identity(ctx, &pb.IdentityRequest{}); err != nil {
		t.Fatalf("a verifier with two silent connections open: %v", err)
	}
	if !closedByServer(t, oldest, 5*time.Second) {
		t.Error("the oldest silent connection was not closed")
	}
	if closedByServer(t, newer, 200*time.Millisecond) {
		t.Error("the newer silent connection was closed")
	}
	if n := s.conns.evicted.Load(); n != 1 {
		t.Errorf("%d connections evicted, want 1", n)
	}
}

// TestRemoteConnsEvictHeaviest: past MaxRemoteConns a new connection takes
// the place of a connection of the host with the most still in their
// handshake, not the oldest of all: a verifier's one connection, however
// long it has waited, is not pushed out by a host that keeps dialling.
func TestRemoteConnsEvictHeaviest(t *testing.T) {
	s, addr := remoteWithLimits(t, Options{MaxRemoteConns: 3, HandshakeTimeout: time.Minute})
	lone := rawConn(t, "127.0.0.2", addr) // the oldest of all
	time.Sleep(50 * time.Millisecond)
	a1 := rawConn(t, "127.0.0.3", addr)
	time.Sleep(50 * time.Millisecond)
	a2 := rawConn(t, "127.0.0.3", addr)
	waitConns(t, s, 3)
	rawConn(t, "127.0.0.4", addr)
	if !closedByServer(t, a1, 5*time.Second) {
		t.Error("the oldest connection of the host with two was not closed")
	}
	if closedByServer(t, lone, 200*time.Millisecond) {
		t.Error("the one connection of another host was closed")
	}
	if closedByServer(t, a2, 200*time.Millisecond) {
		t.Error("the newer connection of the host with two was closed")
	}
}

// TestRemoteConnsFull: when every open connection has completed its
// handshake, a connection past MaxRemoteConns is closed at once.
func TestRemoteConnsFull(t *testing.T) {
	s, addr := remoteWithLimits(t, Options{MaxRemoteConns: 1, HandshakeTimeout: time.Minute})
	if _, err := identityClient(t, addr).Identity(t.Context(), &pb.IdentityRequest{}); err != nil {
		t.Fatal(err)
	}
	if !closedByServer(t, rawConn(t, "127.0.0.2", addr), 5*time.Second) {
		t.Fatal("a connection past the total was not closed while the only other was established")
	}
	if n := s.conns.refusedFull.Load(); n != 1 {
		t.Errorf("%d connections refused as full, want 1", n)
	}
}

// waitConns returns once the server has n connections open.
func waitConns(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, e := s.conns.counts()
		if h+e >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after 10 s, want %d", h+e, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHostKey: IPv4 addresses count alone, IPv6 addresses by their /64.
func TestHostKey(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:5000":           "127.0.0.1",
		"[::ffff:10.0.0.1]:1":      "10.0.0.1",
		"[2001:db8:1:2:3::4]:443":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::]:80": "2001:db8:1:2::/64",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := hostKey(a); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}
