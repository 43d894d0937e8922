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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/bpfattest/bpfattest/proto/bpfattest/v1"
)

// remoteWithLimits serves a real agent's remote API on loopback with opts.
func remoteWithLimits(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s := newTestServer(t, opts)
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
	return s, ln.Addr().String()
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

// TestRemoteConnsTotal: past MaxRemoteConns a new connection is not served
// until one closes; Shutdown still returns while an Accept waits.
func TestRemoteConnsTotal(t *testing.T) {
	_, addr := remoteWithLimits(t, Options{MaxRemoteConns: 2, HandshakeTimeout: time.Minute})
	a := rawConn(t, "127.0.0.2", addr)
	rawConn(t, "127.0.0.3", addr)
	time.Sleep(100 * time.Millisecond)
	client := identityClient(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	_, err := client.Identity(ctx, &pb.IdentityRequest{})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a third connection with two open: %v, want it left waiting (DeadlineExceeded)", err)
	}
	a.Close()
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := client.Identity(ctx, &pb.IdentityRequest{}); err != nil {
		t.Fatalf("after one connection closed: %v", err)
	}
}

// TestConnLimitListenerClose: Close ends an Accept that waits for a token.
func TestConnLimitListenerClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := limitConns(ln, 1, 1)
	go net.Dial("tcp", ln.Addr().String())
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { _, err := l.Accept(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}
