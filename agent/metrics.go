package agent

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the agent's counters and histograms, written in the Prometheus
// text exposition format (version 0.0.4) by WritePrometheus. They are safe
// for concurrent use.
type Metrics struct {
	records        atomic.Uint64 // records in the current boot's log
	appendFailures atomic.Uint64
	quoteRequests  atomic.Uint64
	quotes         atomic.Uint64

	extend     histogram // journal append: write, fsync, extend
	loadTime   histogram // whole load pipeline
	quoteTime  histogram // sweep + snapshot + TPM quote
	quoteBatch histogram // callers per TPM quote

	mu            sync.Mutex
	loads         map[[2]string]uint64 // {outcome, verdict}
	findingCounts map[string]uint64    // "unmeasured", "unloaded", "transient", "events_lost"
}

func newMetrics() *Metrics {
	return &Metrics{
		extend:        newHistogram(latencyBuckets),
		loadTime:      newHistogram(latencyBuckets),
		quoteTime:     newHistogram(latencyBuckets),
		quoteBatch:    newHistogram([]float64{1, 2, 4, 8, 16, 64, 256, 1024, 4096}),
		loads:         map[[2]string]uint64{},
		findingCounts: map[string]uint64{},
	}
}

// latencyBuckets are upper bounds in seconds, from a fast simulator extend
// to a slow TPM's quote.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

func (m *Metrics) load(outcome, verdict string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads[[2]string{outcome, verdict}]++
}

func (m *Metrics) finding(kind string) { m.findings(kind, 1) }

// findings counts n findings of one kind.
func (m *Metrics) findings(kind string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.findingCounts[kind] += uint64(n)
}

// WritePrometheus writes every metric in the Prometheus text format, in a
// fixed order.
func (m *Metrics) WritePrometheus(w io.Writer) error {
	p := &promWriter{w: w}
	m.mu.Lock()
	p.header("bpfattest_loads_total", "counter", "Load requests by outcome and signature verdict.")
	for _, k := range slices.SortedFunc(maps.Keys(m.loads), func(a, b [2]string) int {
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		return cmp.Compare(a[1], b[1])
	}) {
		p.line("bpfattest_loads_total", fmt.Sprintf(`{outcome=%q,verdict=%q}`, k[0], k[1]), float64(m.loads[k]))
	}
	p.header("bpfattest_observer_findings_total", "counter", "Observer findings: programs without a measured load (unmeasured, or transient: came and went), programs that left the kernel, lost program events.")
	for _, k := range []string{"unmeasured", "transient", "unloaded", "events_lost"} {
		p.line("bpfattest_observer_findings_total", fmt.Sprintf(`{kind=%q}`, k), float64(m.findingCounts[k]))
	}
	m.mu.Unlock()
	p.header("bpfattest_log_records", "gauge", "Records in the current boot's event log.")
	p.line("bpfattest_log_records", "", float64(m.records.Load()))
	p.header("bpfattest_log_append_failures_total", "counter", "Appends that failed (log write, fsync or PCR extend).")
	p.line("bpfattest_log_append_failures_total", "", float64(m.appendFailures.Load()))
	p.header("bpfattest_quote_requests_total", "counter", "Quote requests.")
	p.line("bpfattest_quote_requests_total", "", float64(m.quoteRequests.Load()))
	p.header("bpfattest_tpm_quotes_total", "counter", "TPM quotes made (each serves a batch of requests).")
	p.line("bpfattest_tpm_quotes_total", "", float64(m.quotes.Load()))
	m.extend.write(p, "bpfattest_extend_seconds", "Time to append one record: write, fsync, PCR extend.")
	m.loadTime.write(p, "bpfattest_load_seconds", "Time of one load request, measurement to result.")
	m.quoteTime.write(p, "bpfattest_quote_seconds", "Time of one batch: observer sweep and TPM quote.")
	m.quoteBatch.write(p, "bpfattest_quote_batch_size", "Requests served by one TPM quote.")
	return p.err
}

// histogram is a Prometheus histogram with fixed upper bounds.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64 // per bucket, not cumulative; last is +Inf
	sum    float64
	n      uint64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) { h.add(d.Seconds()) }

func (h *histogram) observeCount(n int) { h.add(float64(n)) }

func (h *histogram) add(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, _ := slices.BinarySearch(h.bounds, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

func (h *histogram) write(p *promWriter, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p.header(name, "histogram", help)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		p.line(name+"_bucket", `{le="`+strconv.FormatFloat(b, 'g', -1, 64)+`"}`, float64(cum))
	}
	p.line(name+"_bucket", `{le="+Inf"}`, float64(h.n))
	p.line(name+"_sum", "", h.sum)
	p.line(name+"_count", "", float64(h.n))
}

// promWriter writes text-format lines and keeps the first error.
type promWriter struct {
	w   io.Writer
	err error
}

func (p *promWriter) header(name, typ, help string) {
	p.printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) line(name, labels string, v float64) {
	p.printf("%s%s %s\n", name, labels, strconv.FormatFloat(v, 'g', -1, 64))
}

func (p *promWriter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
