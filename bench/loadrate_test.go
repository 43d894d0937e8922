package bench

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/testutil"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// extendDelay is how long the slow proxy holds each TPM2_PCR_Extend
// response: what one extend costs on a discrete TPM.
const extendDelay = 3 * time.Millisecond

// BenchmarkLoadRate has 1, 8 and 64 clients load the signed counter
// fixture through Agent.Load as fast as the agent answers, on a swtpm whose
// TPM2_PCR_Extend takes at least 3 ms (the slow proxy). One op is one
// measured load: parse, verify, measure, the measurement recorded and
// extended, bpf(), the result recorded and extended. The agent keeps every
// load's objects until it closes, so bound the run with -benchtime Nx.
// Metrics: loads/s, extends/s (counted by the proxy), the median and 99th
// percentile of one load's latency, and the benchmark process's CPU time
// (user + system, the agent's share; swtpm's is not counted) per load.
func BenchmarkLoadRate(b *testing.B) {
	src, err := os.ReadFile(testutil.LskelFile(b, "headers/counter.signed.lskel.h"))
	if err != nil {
		b.Fatal(err)
	}
	for _, clients := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("clients-%d", clients), func(b *testing.B) {
			testutil.RequireRoot(b)
			if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
				testutil.SkipEnv(b, "kernel without BTF: %v", err)
			}
			sw := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
			proxy := tpmtest.StartSlowProxy(b, sw.SocketPath(), extendDelay, tpmtest.CCPCRExtend)
			a, err := agent.New(b.Context(), agent.Config{
				TPM:              proxy.Spec(),
				StateDir:         b.TempDir(),
				Trust:            []string{testutil.LskelFile(b, "keys/TEST_ONLY_signing_cert.der")},
				ObserverInterval: -1,
			})
			if err != nil {
				b.Fatalf("agent.New: %v", err)
			}
			defer func() {
				if err := a.Close(); err != nil && !errors.Is(err, agent.ErrClosed) {
					b.Errorf("close agent: %v", err)
				}
			}()
			held := proxy.Delayed()
			var (
				left atomic.Int64
				mu   sync.Mutex
				ds   = make([]time.Duration, 0, b.N)
				wg   sync.WaitGroup
			)
			left.Store(int64(b.N))
			cpu0 := processCPU(b)
			b.ResetTimer()
			for range clients {
				wg.Go(func() {
					var mine []time.Duration
					for left.Add(-1) >= 0 {
						start := time.Now()
						if _, err := a.Load(b.Context(), agent.LoadRequest{Artifact: src}); err != nil {
							b.Error(err)
							left.Store(0)
							break
						}
						mine = append(mine, time.Since(start))
					}
					mu.Lock()
					ds = append(ds, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/load")
			b.ReportMetric(float64(b.N)/s, "loads/s")
			b.ReportMetric(float64(proxy.Delayed()-held)/s, "extends/s")
			if len(ds) > 0 {
				slices.Sort(ds)
				b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "median-ms")
				b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Microseconds())/1000, "p99-ms")
			}
		})
	}
}
