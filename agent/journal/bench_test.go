package journal

import (
	"context"
	"testing"

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
