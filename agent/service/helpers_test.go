package service

import (
	"log/slog"
	"testing"

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
