package bench

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/attest"
	"github.com/bpfattest/bpfattest/evidence"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// quoteDelay is how long the slow proxy holds each TPM2_Quote response: the
// low end of a discrete TPM's signing time.
const quoteDelay = 100 * time.Millisecond

// verifiers is the number of concurrent verifiers.
const verifiers = 64

// slowAgent starts an agent on a swtpm behind a proxy that holds every
// TPM2_Quote response for quoteDelay. maxBatch 1 makes it quote once per
// request; 0 coalesces, with window as its QuoteWindow.
func slowAgent(tb testing.TB, maxBatch int, window time.Duration) (*agent.Agent, *tpmtest.SlowProxy) {
	tb.Helper()
	testutil.RequireRoot(tb)
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		testutil.SkipEnv(tb, "kernel without BTF: %v", err)
	}
	sw := tpmtest.StartSwtpm(tb, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(tb, sw.SocketPath(), quoteDelay, tpmtest.CCQuote)
	a, err := agent.New(tb.Context(), agent.Config{
		TPM:              proxy.Spec(),
		StateDir:         tb.TempDir(),
		ObserverInterval: -1,
		MaxQuoteBatch:    maxBatch,
		QuoteWindow:      window,
	})
	if err != nil {
		tb.Fatalf("agent.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil && !errors.Is(err, agent.ErrClosed) {
			tb.Errorf("close agent: %v", err)
		}
	})
	return a, proxy
}

// nonceFor returns verifier v's nonce for its i-th request.
func nonceFor(v, i int) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	n := sha256.Sum256(b[:])
	return n[:]
}

// verify checks one evidence the way a new verifier does: the whole log
// from record 0, the nonce through the inclusion proof.
func verify(tb testing.TB, ev *evidence.Evidence, nonce []byte) {
	tb.Helper()
	if _, err := attest.Verify(ev, attest.VerifyOptions{Nonce: nonce, AKPublic: ev.AKPublic, BootPCRs: attest.DefaultBootPCRs()}); err != nil {
		tb.Fatalf("verify: %v", err)
	}
}

// TestSlowProxy proves the harness's slow TPM is the real one, slowed: the
// proxy holds TPM2_Quote responses and nothing else, and the quotes that
// pass through it verify, with coalescing on and off.
func TestSlowProxy(t *testing.T) {
	for _, c := range []struct {
		name     string
		maxBatch int
	}{{"coalesced", 0}, {"per-request", 1}} {
		t.Run(c.name, func(t *testing.T) {
			a, proxy := slowAgent(t, c.maxBatch, 0)
			if n := proxy.Delayed(); n != 0 {
				t.Fatalf("%d responses held before any quote", n)
			}
			const n = 4
			var wg sync.WaitGroup
			evs := make([]*evidence.Evidence, n)
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() { evs[i], errs[i] = a.Quote(t.Context(), nonceFor(i, 0), 0) })
			}
			wg.Wait()
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("quote %d: %v", i, errs[i])
				}
				verify(t, evs[i], nonceFor(i, 0))
			}
			got := proxy.Delayed()
			if c.maxBatch == 1 && got != n {
				t.Errorf("per-request: %d quotes held for %d requests, want %d", got, n, n)
			}
			if got < 1 || got > n {
				t.Errorf("%d quotes held for %d requests", got, n)
			}
		})
	}
}

// BenchmarkQuoteCoalescing has 64 verifiers ask one agent for quotes as
// fast as it answers, each resuming from the end of the log it last saw,
// against a swtpm whose TPM2_Quote takes at least 100 ms (the proxy). One
// op is one served request; requests/s is the figure to compare between
// coalescing (many requests share a quote; with QuoteWindow 0 and with
// 5 ms) and a quote per request (MaxQuoteBatch 1).
func BenchmarkQuoteCoalescing(b *testing.B) {
	for _, c := range []struct {
		name     string
		maxBatch int
		window   time.Duration
	}{{"coalesced", 0, 0}, {"coalesced-window-5ms", 0, 5 * time.Millisecond}, {"per-request", 1, 0}} {
		b.Run(c.name, func(b *testing.B) {
			a, proxy := slowAgent(b, c.maxBatch, c.window)
			// One checked answer before timing, from record 0.
			ev, err := a.Quote(b.Context(), nonceFor(-1, 0), 0)
			if err != nil {
				b.Fatal(err)
			}
			verify(b, ev, nonceFor(-1, 0))
			from := ev.FromRecord + uint64(countLog(b, ev.Log))
			held := proxy.Delayed()
			ctx, cancel := context.WithCancel(b.Context())
			defer cancel()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			for v := range verifiers {
				wg.Go(func() {
					for i := 0; left.Add(-1) >= 0; i++ {
						if _, err := a.Quote(ctx, nonceFor(v, i), from); err != nil {
							b.Error(err)
							cancel()
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/s, "requests/s")
			b.ReportMetric(float64(proxy.Delayed()-held)/s, "quotes/s")
		})
	}
}
