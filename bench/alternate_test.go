package bench

import (
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Ratio harnesses measure two sides of a ratio (A and B) in one run, in
// turn: A, B, A, B, ... A pair is one sample of each side: a fixed number
// of operations, calibrated once so that a sample lasts about -sample,
// run in -slices slices alternating with the other side's (A's first
// slice, B's first, A's second, ...), so that whatever else the machine
// does during a pair weighs on both of its samples alike. Each pair gives
// one ratio of A's rate to B's.
//
// Every slice is timed twice: by the wall clock and by the CPU time the
// process used (CLOCK_PROCESS_CPUTIME_ID: every thread, the garbage
// collector's included). Rates per CPU second are what a machine busy
// with other work gives each side (no second core to hide work on), and
// on the shared 2-core machine they vary far less than rates per wall
// second, which follow the other processes' load: the CPU ratio is the
// figure to compare, the wall ratio is reported beside it, and the
// harness says what the load average was.
var (
	ratioPairs  = flag.Int("pairs", 8, "ratio harnesses: A,B pairs to run")
	ratioSample = flag.Duration("sample", 300*time.Millisecond, "ratio harnesses: CPU time of one side's sample in a pair")
	ratioSlices = flag.Int("slices", 10, "ratio harnesses: slices a pair's samples are cut into, alternating A and B")
)

// side is one side of a ratio.
type side struct {
	name string
	// op runs one operation.
	op func() error
	// parallel runs op on GOMAXPROCS goroutines at once: the rate is the
	// whole machine's.
	parallel bool
	// bytes, when set, is how many bytes one op processes: rates are then
	// also reported in MB/s.
	bytes int64
}

// ratioRun is the outcome of one alternating run.
type ratioRun struct {
	a, b      side
	ops       [2]int       // ops per sample
	rates     [2][]float64 // ops per wall second, per sample
	cpuRates  [2][]float64 // ops per CPU second, per sample
	ratios    []float64    // rate A / rate B, per pair
	cpuRatios []float64    // CPU rate A / CPU rate B, per pair
	loadStart string
	loadEnd   string
}

// alternate calibrates both sides, then runs *ratioPairs pairs, A first,
// and logs the rates and ratios (min, median, max). It fails b on the
// first error of either side.
func alternate(b *testing.B, a, bs side) *ratioRun {
	b.Helper()
	if *ratioPairs < 1 {
		b.Fatalf("-pairs %d: want at least 1", *ratioPairs)
	}
	r := &ratioRun{a: a, b: bs, loadStart: loadAverage()}
	for i, s := range []side{a, bs} {
		n, err := calibrate(b, s, *ratioSample)
		if err != nil {
			b.Fatalf("%s: %v", s.name, err)
		}
		r.ops[i] = n
	}
	slices := max(1, *ratioSlices)
	b.ResetTimer()
	for range *ratioPairs {
		var took, cpu [2]time.Duration
		var done [2]int
		for k := range slices {
			for i, s := range []side{a, bs} {
				// Slice k runs ops (k+1)*n/slices - k*n/slices: n in all.
				n := (k+1)*r.ops[i]/slices - k*r.ops[i]/slices
				c0 := processCPU(b)
				d, err := runOps(s, n)
				if err != nil {
					b.Fatalf("%s: %v", s.name, err)
				}
				cpu[i] += processCPU(b) - c0
				took[i] += d
				done[i] += n
			}
		}
		var pair, cpuPair [2]float64
		for i := range pair {
			pair[i] = float64(done[i]) / took[i].Seconds()
			cpuPair[i] = float64(done[i]) / cpu[i].Seconds()
			r.rates[i] = append(r.rates[i], pair[i])
			r.cpuRates[i] = append(r.cpuRates[i], cpuPair[i])
		}
		r.ratios = append(r.ratios, pair[0]/pair[1])
		r.cpuRatios = append(r.cpuRatios, cpuPair[0]/cpuPair[1])
	}
	b.StopTimer()
	r.loadEnd = loadAverage()
	b.Log(r.report())
	return r
}

// calibrate returns how many ops of s take about d of CPU time (the
// process's, every thread's: the wall time varies with the load).
func calibrate(tb testing.TB, s side, d time.Duration) (int, error) {
	if _, err := runOps(s, 1); err != nil { // warm up
		return 0, err
	}
	n := 1
	for {
		c0 := processCPU(tb)
		if _, err := runOps(s, n); err != nil {
			return 0, err
		}
		t := processCPU(tb) - c0
		if t >= d/5 || n >= 1<<30 {
			per := float64(t) / float64(n)
			return max(1, int(math.Round(float64(d)/per))), nil
		}
		n *= 2
	}
}

// runOps runs n ops of s and returns the time they took.
func runOps(s side, n int) (time.Duration, error) {
	if !s.parallel {
		start := time.Now()
		for range n {
			if err := s.op(); err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := s.op(); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// stats returns the minimum, median and maximum of xs.
func stats(xs []float64) (lo, med, hi float64) {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], med, s[n-1]
}

// medianRatio is the median of the per-pair ratios A/B, by CPU time.
func (r *ratioRun) medianRatio() float64 {
	_, m, _ := stats(r.cpuRatios)
	return m
}

// medianWallRatio is the median of the per-pair ratios A/B, by wall time.
func (r *ratioRun) medianWallRatio() float64 {
	_, m, _ := stats(r.ratios)
	return m
}

// medianRate is the median rate of side i (0 for A, 1 for B), in ops per
// wall second.
func (r *ratioRun) medianRate(i int) float64 {
	_, m, _ := stats(r.rates[i])
	return m
}

// medianCPURate is the median rate of side i in ops per CPU second.
func (r *ratioRun) medianCPURate(i int) float64 {
	_, m, _ := stats(r.cpuRates[i])
	return m
}

func (r *ratioRun) report() string {
	var w strings.Builder
	fmt.Fprintf(&w, "\n%d pairs of %d alternating slices each (A, B, A, B, ...), GOMAXPROCS %d, load average before: %s, after: %s\n",
		len(r.ratios), max(1, *ratioSlices), runtime.GOMAXPROCS(0), r.loadStart, r.loadEnd)
	for i, s := range []side{r.a, r.b} {
		par := "1 goroutine"
		if s.parallel {
			par = fmt.Sprintf("%d goroutines", runtime.GOMAXPROCS(0))
		}
		fmt.Fprintf(&w, "%s %s: %d ops/sample, %s\n", "AB"[i:i+1], s.name, r.ops[i], par)
		for _, clock := range []struct {
			name  string
			rates []float64
		}{{"CPU ", r.cpuRates[i]}, {"wall", r.rates[i]}} {
			lo, med, hi := stats(clock.rates)
			fmt.Fprintf(&w, "    per %s second: ops min %.1f median %.1f max %.1f", clock.name, lo, med, hi)
			if s.bytes > 0 {
				mb := float64(s.bytes) / 1e6
				fmt.Fprintf(&w, "; MB %.0f / %.0f / %.0f", lo*mb, med*mb, hi*mb)
			}
			fmt.Fprintf(&w, "; per op %s / %s / %s\n", perOp(hi), perOp(med), perOp(lo))
		}
	}
	for _, clock := range []struct {
		name   string
		ratios []float64
	}{{"CPU ", r.cpuRatios}, {"wall", r.ratios}} {
		lo, med, hi := stats(clock.ratios)
		fmt.Fprintf(&w, "A/B by %s time, per pair: min %.1f%% median %.1f%% max %.1f%% (", clock.name, 100*lo, 100*med, 100*hi)
		for i, x := range clock.ratios {
			if i > 0 {
				w.WriteString(" ")
			}
			fmt.Fprintf(&w, "%.1f", 100*x)
		}
		w.WriteString(")\n")
	}
	return strings.TrimSuffix(w.String(), "\n")
}

// processCPU returns the CPU time the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		tb.Fatalf("process CPU time: %v", err)
	}
	return time.Duration(ts.Nano())
}

func perOp(rate float64) string {
	return time.Duration(float64(time.Second) / rate).Round(100 * time.Nanosecond).String()
}

// loadAverage returns the 1, 5 and 15 minute load averages, or why not.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// TestStats checks the summary the ratio harnesses report.
func TestStats(t *testing.T) {
	for _, c := range []struct {
		xs          []float64
		lo, med, hi float64
	}{
		{[]float64{3}, 3, 3, 3},
		{[]float64{4, 1, 3}, 1, 3, 4},
		{[]float64{4, 1, 3, 2}, 1, 2.5, 4},
	} {
		lo, med, hi := stats(c.xs)
		if lo != c.lo || med != c.med || hi != c.hi {
			t.Errorf("stats(%v) = %v %v %v, want %v %v %v", c.xs, lo, med, hi, c.lo, c.med, c.hi)
		}
	}
}
