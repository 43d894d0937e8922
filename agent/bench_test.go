package agent_test

import (
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bpfattest/bpfattest/agent"
	"github.com/bpfattest/bpfattest/internal/bpfsys"
	"github.com/bpfattest/bpfattest/internal/tpm/tpmtest"
	"github.com/bpfattest/bpfattest/lskel"
)

// benchTargets runs f on the simulator and on a swtpm.
func benchTargets(b *testing.B, f func(b *testing.B, spec string)) {
	b.Run("sim", func(b *testing.B) { f(b, "sim") })
	b.Run("swtpm", func(b *testing.B) {
		sw := tpmtest.StartSwtpm(b, tpmtest.SwtpmOptions{})
		f(b, sw.Spec())
	})
}

// reportPercentiles reports the median and the 99th percentile of ds.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Nanoseconds()), "median-ns")
	b.ReportMetric(float64(ds[min(len(ds)-1, len(ds)*99/100)].Nanoseconds()), "p99-ns")
}

// BenchmarkLoadMeasured is a whole Agent.Load of the signed counter
// fixture: parse, verify, measure, two records appended and extended, the
// kernel load. The agent keeps every load's objects, so run it with a
// bounded -benchtime (e.g. 200x).
func BenchmarkLoadMeasured(b *testing.B) {
	src := header(b, "counter", true)
	benchTargets(b, func(b *testing.B, spec string) {
		cfg := config(b)
		cfg.TPM = spec
		a := newAgent(b, cfg)
		ds := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for b.Loop() {
			start := time.Now()
			if _, err := a.Load(b.Context(), agent.LoadRequest{Artifact: src}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		reportPercentiles(b, ds)
	})
}

// BenchmarkLoadDirect is the kernel part alone: bpfsys.Run of the same
// fixture with its objects closed after each run.
func BenchmarkLoadDirect(b *testing.B) {
	requireKernel(b)
	art, err := lskel.Load(header(b, "counter", true))
	if err != nil {
		b.Fatal(err)
	}
	req := bpfsys.LoadRequest{Insns: art.Insns, Data: art.Data, ExclHash: art.ExclHash, Ctx: bpfsys.NewCtx(2, 1)}
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res, err := bpfsys.Run(b.Context(), req, nil)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		maps, progs, err := bpfsys.ReadCtxFDs(res.CtxOut, 2, 1)
		if err != nil {
			b.Fatal(err)
		}
		for _, fd := range append(maps, progs...) {
			unix.Close(fd)
		}
		res.LoaderFD.Close()
		res.MapFD.Close()
	}
	reportPercentiles(b, ds)
}

// BenchmarkQuote quotes an agent whose log holds 10,000 records: the full
// log (a new verifier) and only the tail (a verifier that resumes).
func BenchmarkQuote(b *testing.B) {
	const records = 10000
	benchTargets(b, func(b *testing.B, spec string) {
		cfg := config(b)
		cfg.TPM = spec
		a := newAgent(b, cfg)
		for i := a.Status().Records; i < records; i++ {
			if err := a.AppendUnmeasured(uint32(1<<31 + i)); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []struct {
			name string
			from uint64
		}{{"full", 0}, {"tail", records - 1}} {
			b.Run(c.name, func(b *testing.B) {
				ds := make([]time.Duration, 0, b.N)
				for b.Loop() {
					start := time.Now()
					if _, err := a.Quote(b.Context(), nonce(1), c.from); err != nil {
						b.Fatal(err)
					}
					ds = append(ds, time.Since(start))
				}
				reportPercentiles(b, ds)
			})
		}
	})
}
