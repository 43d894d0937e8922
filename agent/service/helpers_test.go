package service

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
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

// recordedLogs is a slog handler that keeps every record's level, message
// and attributes as text.
type recordedLogs struct {
	mu   sync.Mutex
	recs []string
}

func (r *recordedLogs) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordedLogs) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recordedLogs) WithGroup(string) slog.Handler            { return r }
func (r *recordedLogs) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.mu.Lock()
	r.recs = append(r.recs, line)
	r.mu.Unlock()
	return nil
}

// lines returns the records logged so far at level or above.
func (r *recordedLogs) lines(level slog.Level) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.recs {
		var lv slog.Level
		if lv.UnmarshalText([]byte(strings.Fields(l)[0])) == nil && lv >= level {
			out = append(out, l)
		}
	}
	return out
}
