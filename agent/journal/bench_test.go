package journal

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bpfattest/bpfattest/cel"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
)

// BenchmarkAppend measures Append end to end: encode, write, fsync, one
// multi-bank PCR extend. It reports records appended and extended per
// second.
func BenchmarkAppend(b *testing.B) {
	for _, tg := range []string{"sim", "swtpm"} {
		b.Run(tg, func(b *testing.B) {
			spec := "sim"
			if tg == "swtpm" {
				spec = tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{}).Spec()
			}
			dev := tpmtest.Open(b, spec)
			j := mustOpen(b, b.TempDir(), dev, options(dev))
			defer j.Close()
			content := make([]byte, 512)
			for b.Loop() {
				if _, err := j.Append(context.Background(), cel.BPFMeasurement, content); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(len(dev.Banks())), "banks")
		})
	}
}

// BenchmarkAppendSlowTPM is Append from 1, 8 and 64 goroutines at once on
// a swtpm whose TPM2_PCR_Extend takes at least 3 ms (a discrete TPM; the
// slow proxy holds each response). It reports appends/s (events) and the
// extends the proxy held per second: with group commit, appends that
// arrive during a commit share the next one (one batch record, one write,
// fsync and extend), so with several appenders appends/s exceed extends/s;
// one appender gets one record per append. The last case is one appender
// of 32 KiB records, the size of a batch of 64 events of 512 bytes.
func BenchmarkAppendSlowTPM(b *testing.B) {
	sw := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
	proxy := tpmtest.StartSlowProxy(b, sw.SocketPath(), 3*time.Millisecond, tpmtest.CCPCRExtend)
	dev := tpmtest.Open(b, proxy.Spec())
	for _, c := range []struct{ appenders, size int }{{1, 512}, {8, 512}, {64, 512}, {1, 64 * 512}} {
		b.Run(fmt.Sprintf("appenders-%d-bytes-%d", c.appenders, c.size), func(b *testing.B) {
			appenders := c.appenders
			j := mustOpen(b, b.TempDir(), dev, options(dev))
			defer j.Close()
			content := make([]byte, c.size)
			held := proxy.Delayed()
			var left atomic.Int64
			left.Store(int64(b.N))
			var wg sync.WaitGroup
			b.ResetTimer()
			for range appenders {
				wg.Go(func() {
					for left.Add(-1) >= 0 {
						if _, err := j.Append(context.Background(), cel.BPFMeasurement, content); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			s := b.Elapsed().Seconds()
			b.ReportMetric(float64(b.N)/s, "appends/s")
			b.ReportMetric(float64(proxy.Delayed()-held)/s, "extends/s")
		})
	}
}
