package service

import (
	"log/slog"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/testutil"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestServer is a Server with opts over a fresh agent on the simulator
// that trusts no signer and does not sweep on its own; the agent closes
// with the test.
func newTestServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	testutil.RequireRoot(tb)
	a, err := agent.New(tb.Context(), agent.Config{TPM: "sim", StateDir: tb.TempDir(), ObserverInterval: -1})
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	tb.Cleanup(func() { a.Close() })
	return New(a, opts)
}

// serveLocal serves s's local API on a fresh socket and returns a
// connection to it, closed with the test (closing it sooner is fine).
func serveLocal(tb testing.TB, s *Server) *grpc.ClientConn {
	tb.Helper()
	ln, err := ListenUnix(filepath.Join(tb.TempDir(), "agent.sock"), -1)
	if err != nil {
		tb.Fatal(err)
	}
	go s.ServeLocal(ln)
	conn, err := grpc.NewClient("unix:"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}
