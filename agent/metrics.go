package agent

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the agent's counters and histograms; Snapshot copies them for
// an exporter. They are safe for concurrent use.
type Metrics struct {
	records        atomic.Uint64 // events in the current boot's log: the next record number
	appendFailures atomic.Uint64
	quoteRequests  atomic.Uint64
	quotes         atomic.Uint64
	loadsInFlight  atomic.Int64 // admitted, not yet landed (load.go)

	// TPM work by class (tpmsched.go): commands (or command sequences)
	// run, the time each waited for its turn, and the time they held the
	// TPM (nanoseconds).
	tpmCommands [numTPMClasses]atomic.Uint64
	tpmWait     [numTPMClasses]histogram
	tpmBusy     [numTPMClasses]atomic.Int64

	// pipeWait is the time each kind of work waited for the pipeline
	// lock (pipeline.go).
	pipeWait [numPipeWork]histogram

	extend     histogram // journal append: write, fsync, extend
	loadTime   histogram // whole load pipeline
	quoteTime  histogram // sweep + snapshot + TPM quote
	quoteBatch histogram // callers per TPM quote

	mu            sync.Mutex
	loads         map[[2]string]uint64 // {outcome, verdict}
	findingCounts map[string]uint64    // "unmeasured", "unloaded", "transient", "events_lost"
	countedReqs   map[string]uint64    // "refused", "throttled": counted without a record each
}

func newMetrics() *Metrics {
	m := &Metrics{
		extend:        newHistogram(latencyBuckets),
		loadTime:      newHistogram(latencyBuckets),
		quoteTime:     newHistogram(latencyBuckets),
		quoteBatch:    newHistogram([]float64{1, 2, 4, 8, 16, 64, 256, 1024, 4096}),
		loads:         map[[2]string]uint64{},
		findingCounts: map[string]uint64{},
		countedReqs:   map[string]uint64{},
	}
	for c := range numTPMClasses {
		m.tpmWait[c] = newHistogram(latencyBuckets)
	}
	for w := range numPipeWork {
		m.pipeWait[w] = newHistogram(latencyBuckets)
	}
	return m
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

// counted counts a load request counted without a record of its own.
func (m *Metrics) counted(kind string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countedReqs[kind]++
}

// findings counts n findings of one kind.
func (m *Metrics) findings(kind string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.findingCounts[kind] += uint64(n)
}

// MetricsSnapshot is a consistent-enough copy of the agent's metrics for an
// exporter (agent/service turns it into Prometheus metrics). Each value is
// read atomically; the snapshot as a whole is not one instant.
type MetricsSnapshot struct {
	// Loads counts load requests by outcome and signature verdict.
	Loads []LoadCount
	// Findings counts observer findings by kind: "unmeasured", "transient",
	// "unloaded", "events_lost".
	Findings map[string]uint64
	// Records is the number of events in the current boot's log: the next
	// record number. It counts each event of a batch record (group
	// commit), so it is the number of records the log would have
	// without batches.
	Records uint64
	// AppendFailures counts appends that failed (write, fsync or extend).
	AppendFailures uint64
	// QuoteRequests counts quote requests; Quotes the TPM quotes made.
	QuoteRequests, Quotes uint64
	// LoadsInFlight is the loads admitted and not yet done: their
	// measurement queued, bpf() or the result record to come (at most
	// MaxLoadsInFlight).
	LoadsInFlight int64
	// Extend, Load and Quote are latencies in seconds; QuoteBatch the
	// requests one TPM quote served.
	Extend, Load, Quote, QuoteBatch Histogram
	// TPM is the TPM's work by class ("log", "quote", "enrol", "clock"):
	// how many turns each had, how long they waited for them and how long
	// they held the TPM.
	TPM []TPMClass
	// Pipeline is how long each kind of work ("load", "quote",
	// "observer") waited for the pipeline lock.
	Pipeline []PipelineWork
	// Counted counts load requests counted in "refusals counted" records
	// instead of records of their own: "refused" (measured and refused,
	// past the requester's rate of refusal records) and "throttled"
	// (turned away before they were measured).
	Counted map[string]uint64
}

// TPMClass is one class of TPM work in MetricsSnapshot.
type TPMClass struct {
	Class    string
	Commands uint64
	Wait     Histogram
	// Busy is the time the class's turns held the TPM.
	Busy time.Duration
}

// PipelineWork is one kind of work in MetricsSnapshot.Pipeline.
type PipelineWork struct {
	Work string
	Wait Histogram
}

// LoadCount is one series of MetricsSnapshot.Loads.
type LoadCount struct {
	Outcome, Verdict string
	Count            uint64
}

// Histogram is a histogram's state: cumulative counts per upper bound
// (Counts[i] observations ≤ Bounds[i]), the sum and the count of all
// observations.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
	Count  uint64
}

// Snapshot copies the metrics, in a fixed order.
func (m *Metrics) Snapshot() MetricsSnapshot {
	s := MetricsSnapshot{
		Records:        m.records.Load(),
		AppendFailures: m.appendFailures.Load(),
		QuoteRequests:  m.quoteRequests.Load(),
		Quotes:         m.quotes.Load(),
		LoadsInFlight:  m.loadsInFlight.Load(),
		Extend:         m.extend.snapshot(),
		Load:           m.loadTime.snapshot(),
		Quote:          m.quoteTime.snapshot(),
		QuoteBatch:     m.quoteBatch.snapshot(),
		Findings:       map[string]uint64{},
		Counted:        map[string]uint64{},
	}
	for c := range numTPMClasses {
		s.TPM = append(s.TPM, TPMClass{Class: c.String(), Commands: m.tpmCommands[c].Load(), Wait: m.tpmWait[c].snapshot(),
			Busy: time.Duration(m.tpmBusy[c].Load())})
	}
	for w := range numPipeWork {
		s.Pipeline = append(s.Pipeline, PipelineWork{Work: w.String(), Wait: m.pipeWait[w].snapshot()})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range slices.SortedFunc(maps.Keys(m.loads), func(a, b [2]string) int {
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		return cmp.Compare(a[1], b[1])
	}) {
		s.Loads = append(s.Loads, LoadCount{Outcome: k[0], Verdict: k[1], Count: m.loads[k]})
	}
	for _, k := range []string{"unmeasured", "transient", "unloaded", "events_lost"} {
		s.Findings[k] = m.findingCounts[k]
	}
	for _, k := range []string{"refused", "throttled"} {
		s.Counted[k] = m.countedReqs[k]
	}
	return s
}

// histogram counts observations under fixed upper bounds.
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

func (h *histogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Histogram{Bounds: slices.Clone(h.bounds), Counts: make([]uint64, len(h.bounds)), Sum: h.sum, Count: h.n}
	var cum uint64
	for i := range h.bounds {
		cum += h.counts[i]
		out.Counts[i] = cum
	}
	return out
}
